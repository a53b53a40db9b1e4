"""Experiment specs: exact JSON round-trips (hypothesis) and replay through run_spec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tinkex_cookbook import Experiment, LoopSpec, Runtime, SlBasic, StageSpec

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
stages = st.builds(
    StageSpec, name=names, options=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    every=st.none() | st.integers(1, 50), every_key=st.sampled_from(["step", "batch"]),
)


def loops(children: st.SearchStrategy) -> st.SearchStrategy:
    counted = st.builds(LoopSpec, name=names, var=names, count=st.integers(0, 9), body=st.lists(children, max_size=3))
    keyed = st.builds(LoopSpec, name=names, var=names, count_key=names, body=st.lists(children, max_size=3))
    return counted | keyed


nodes = st.recursive(stages, loops, max_leaves=10)
experiments = st.builds(
    Experiment, name=names, recipe=names,
    config=st.dictionaries(st.text(max_size=8), json_values, max_size=4), stages=st.lists(nodes, max_size=4),
)


@given(experiments)
@settings(max_examples=200, deadline=None)
def test_json_round_trip_is_exact(spec: Experiment) -> None:
    text = spec.to_json()
    again = Experiment.from_json(text)
    assert again == spec
    assert again.to_json() == text


def test_loop_needs_exactly_one_count() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        LoopSpec(name="l", var="i", body=[])
    with pytest.raises(ValidationError, match="exactly one"):
        LoopSpec(name="l", var="i", count=1, count_key="n", body=[])


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Experiment.model_validate({"name": "x", "recipe": "r", "config": {}, "stages": [], "extra": 1})
    with pytest.raises(ValidationError):
        StageSpec.model_validate({"name": "x", "when": "always"})


def test_stage_names_are_flattened_in_order() -> None:
    spec = Experiment(name="x", recipe="r", config={}, stages=[
        StageSpec(name="a"),
        LoopSpec(name="l", var="i", count=2, body=[StageSpec(name="b"), StageSpec(name="a")]),
        StageSpec(name="c"),
    ])
    assert spec.stage_names() == ["a", "b", "c"]


def test_saved_spec_replays_to_the_same_run() -> None:
    cfg = {"batch_size": 8, "save_every": 3, "log_path": "replay"}
    spec = Runtime.build_spec(SlBasic, cfg)
    first = Runtime.run(SlBasic, cfg, manifest="test")
    replay = Runtime.run_spec(Experiment.from_json(spec.to_json()), manifest="test")
    assert replay.completed_stages == first.completed_stages
    assert [m.get("train_mean_nll") for m in replay.metrics] == [m.get("train_mean_nll") for m in first.metrics]


def test_config_forms_build_the_same_spec() -> None:
    from tinkex_cookbook import SlBasicConfig

    as_dict = Runtime.build_spec(SlBasic, {"batch_size": 4, "log_path": "p"})
    as_model = Runtime.build_spec(SlBasic, SlBasicConfig(batch_size=4, log_path="p"))
    as_cli = Runtime.build_spec(SlBasic, ["batch_size=4", "log_path=p"])
    assert as_dict == as_model == as_cli
