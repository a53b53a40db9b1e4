"""RunOptions: the entry points' keywords reach a run as one value, unchanged."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.pipeline import MemorySink
from tinkex_cookbook.runtime import RunOptions, Settings
from tinkex_cookbook.runtime.options import RUN_OPTION_NAMES, RunFields

SINK = MemorySink()
OUT = io.StringIO()
option_fields = st.fixed_dictionaries({}, optional={
    "manifest": st.sampled_from([None, "test", "local", "manifests/test.yaml"]),
    "ports": st.sampled_from([None, {}, {"blob_store": "noop"}, {"blob_store": {"adapter": "local", "root": "r"}}]),
    "dry_run": st.booleans(),
    "verbose": st.booleans(),
    "settings": st.sampled_from([Settings(), Settings(manifest="test", tinker_api_key="tml-k")]),
    "sinks": st.sampled_from([[], [SINK], (SINK, SINK)]),
    "out": st.sampled_from([None, OUT]),
})


class Captured(Exception):
    """Stops a run at ``_run_spec`` and carries the options it was given."""

    def __init__(self, options: RunOptions) -> None:
        super().__init__("captured")
        self.options = options


def _stop(cls: type, spec: Any, options: RunOptions) -> Any:
    raise Captured(options)


@contextmanager
def capturing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runtime, "_run_spec", classmethod(_stop))
        yield


@pytest.fixture
def capture() -> Iterator[None]:
    with capturing():
        yield


def reached(call: Any) -> RunOptions:
    with pytest.raises(Captured) as caught:
        call()
    return caught.value.options


@given(fields=option_fields)
def test_keywords_round_trip_through_the_options(fields: dict[str, Any]) -> None:
    options = RunOptions.of(**fields)
    for name, value in fields.items():
        assert getattr(options, name) == (tuple(value) if name == "sinks" else value)
    assert RunOptions.of(**{f.name: getattr(options, f.name) for f in dataclasses.fields(options)}) == options
    assert RunOptions.of(options) == options


@given(fields=option_fields)
def test_every_entry_point_hands_its_keywords_to_the_run_as_one_value(fields: dict[str, Any]) -> None:
    with capturing():
        spec = Runtime.build_spec(SlBasic, {})
        expected = RunOptions.of(**fields)
        assert reached(lambda: Runtime.run(SlBasic, {}, **fields)) == expected
        assert reached(lambda: Runtime.train(SlBasic, {}, **fields)) == expected
        assert reached(lambda: Runtime.run_spec(spec, **fields)) == expected
        assert reached(lambda: Runtime.run_spec(spec, options=expected)) == expected


def test_keywords_beside_options_are_an_error_naming_both(capture: None) -> None:
    base = RunOptions(manifest="local", verbose=True, sinks=[SINK])
    for call in (lambda: Runtime.run(SlBasic, {}, options=base, manifest="test"),
                 lambda: Runtime.run_spec(Runtime.build_spec(SlBasic, {}), options=base, dry_run=True,
                                          verbose=False),
                 lambda: Runtime.eval(SlBasic, {}, options=base, manifest="test")):
        with pytest.raises(TypeError, match=r"options= and (dry_run=, )?(manifest=|verbose=) given together"):
            call()
    replaced = dataclasses.replace(base, manifest="test")
    assert reached(lambda: Runtime.run(SlBasic, {}, options=replaced)).manifest == "test"


def test_an_unknown_keyword_is_a_type_error_naming_the_options() -> None:
    with pytest.raises(TypeError, match=r"'manfest'.*'manifest'.*'verbose'"):
        Runtime.run(SlBasic, {}, manfest="test")  # type: ignore[call-arg]


def test_options_are_frozen_and_keep_their_own_sinks() -> None:
    sinks = [SINK]
    options = RunOptions(sinks=sinks)
    sinks.append(MemorySink())
    assert options.sinks == (SINK,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.manifest = "prod"  # type: ignore[misc]


def test_settings_are_read_from_the_environment_when_the_options_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_MANIFEST", "test")
    assert RunOptions().settings.manifest == "test"
    assert "tml-secret-1" not in repr(RunOptions(settings=Settings(tinker_api_key="tml-secret-1")))


def test_the_typed_keywords_list_every_option() -> None:
    assert tuple(RunFields.__annotations__) == RUN_OPTION_NAMES == (
        "manifest", "ports", "dry_run", "verbose", "quiet", "settings", "sinks", "out", "stop")


def test_a_run_with_options_runs(capsys: pytest.CaptureFixture[str]) -> None:
    options = RunOptions(manifest="test", dry_run=True)
    assert Runtime.run(SlBasic, {}, options=options).dry_run
    assert "save_final" in capsys.readouterr().out
