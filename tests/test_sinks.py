"""Sinks beside W&B, and the sink config keys: TensorBoard event files and a trackio store hold what
metrics.jsonl holds (a crashed-then-resumed run's steps once each), the keys are saved in config.json and
spec.json and a ``run-spec`` replay sends to the same places, and they never change the spec's stages or
block a resume. All offline: W&B in offline mode, trackio in a store under the test's temp dir."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.faults import TIMING, CrashAfter, local_blobs
from tinkex_cookbook import ConfigError, Experiment, Runtime, StageError
from tinkex_cookbook.cli import app
from tinkex_cookbook.pipeline.tensorboard_sink import logdir_for
from tinkex_cookbook.recipes.sink_keys import SINK_KEYS

CFG = {"batch_size": 8, "save_every": 4, "eval_every": 3, "test_size": 16, "num_epochs": 2, "log_path": "run"}
REPO = Path(__file__).resolve().parents[1]


def jsonl_rows(root: Path, log_path: str = "run") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / log_path / "metrics.jsonl").read_text().splitlines()]


def by_step(rows: Iterable[dict[str, Any]], drop: Iterable[str] = (), name: Callable[[str], str] = str,
            ) -> dict[int, dict[str, float]]:
    """The numeric fields of metric rows, merged per step: what a metrics viewer charts (TensorBoard under
    ``name=tag``)."""
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        merged.setdefault(int(row["step"]), {}).update(
            {name(k): float(v) for k, v in row.items()
             if k not in ("event", "step", *drop) and isinstance(v, int | float) and not isinstance(v, bool)})
    return merged


def flat(rows: dict[int, dict[str, float]]) -> dict[tuple[int, str], float]:
    """``{(step, name): value}``: what ``pytest.approx`` compares (it takes no nested dicts)."""
    return {(step, name): value for step, row in rows.items() for name, value in row.items()}


def tag(key: str) -> str:
    """The tag TensorBoard keeps for a field: characters other than word characters, ``-``, ``/``, ``.``
    become ``_`` (``loss:sum`` -> ``loss_sum``)."""
    return re.sub(r"[^-/\w.]", "_", key)


# -- TensorBoard ---------------------------------------------------------------------------------------------

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import (  # after the skip
    Event,  # pyright: ignore[reportAttributeAccessIssue]  # generated, no stub
    SessionLog,  # pyright: ignore[reportAttributeAccessIssue]
)
from tensorboardX.record_writer import masked_crc32c


def event_files(logdir: Path) -> list[Path]:
    """The folder's event files in name order: the order the attempts ran."""
    return sorted(logdir.glob("events.out.tfevents.*"))


def read_events(logdir_or_file: Path) -> list[Any]:
    """Every event of one event file, or of every file in a folder (``event_files``' order).

    An event file is a sequence of records: a little-endian u64 length, its masked CRC-32C, the
    serialized ``Event``, and that payload's masked CRC-32C. tensorboardX writes them and ships no
    reader; ``tensorboard``'s own reader is not a dependency.
    """
    events = []
    for path in event_files(logdir_or_file) if logdir_or_file.is_dir() else [logdir_or_file]:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header)
            body = data[pos + 12 : pos + 12 + length]
            assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(body)
            events.append(Event.FromString(body))
            pos += 16 + length
    return events


def shown_scalars(events: Iterable[Any]) -> dict[int, dict[str, float]]:
    """The scalars TensorBoard shows, per step: a ``SessionLog.START`` at step S hides every earlier
    event at step S or later (TensorBoard's purge of a restarted run's orphaned steps)."""
    rows: dict[int, dict[str, float]] = {}
    for event in events:
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            rows = {step: row for step, row in rows.items() if step < event.step}
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                rows.setdefault(event.step, {})[value.tag] = value.simple_value
    return rows


def texts(events: Iterable[Any]) -> dict[str, str]:
    return {value.tag: value.tensor.string_val[0].decode() for event in events for value in event.summary.value
            if value.tag.endswith("/text_summary")}


def tags(events: Iterable[Any]) -> set[str]:
    return {value.tag for event in events for value in event.summary.value}


def test_tensorboard_scalars_read_back_as_metrics_jsonl_holds_them(tmp_path: Path) -> None:
    result = Runtime.run("sl_basic", {**CFG, "tensorboard": True, "evals": ["chitchat_nll"]}, manifest="test",
                         ports=local_blobs(tmp_path))
    logdir = tmp_path / "run" / "tensorboard"
    assert result.artifacts["tensorboard"] == str(logdir)
    events = read_events(logdir)
    assert flat(shown_scalars(events)) == pytest.approx(flat(by_step(jsonl_rows(tmp_path), name=tag)), rel=1e-6)
    assert "chitchat_nll/nll" in shown_scalars(events)[0], "an eval's <task>/<metric> fields are its tags"
    config = texts(events)["config/text_summary"]
    assert json.loads(config.removeprefix("```json\n").removesuffix("\n```")) == result.experiment.config
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= tags(events)


def test_a_crashed_then_resumed_run_shows_each_step_once_in_tensorboard(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="killed"):
        Runtime.run("sl_basic", {**CFG, "tensorboard": True}, manifest="test",
                    ports={**local_blobs(tmp_path), "training_client": CrashAfter(7)})
    resumed = Runtime.run("sl_basic", {**CFG, "tensorboard": True}, manifest="test", ports=local_blobs(tmp_path))
    logdir = tmp_path / "run" / "tensorboard"
    first, second = event_files(logdir)
    resume_step = next(e.data["step"] for e in resumed.events if e.name == "train.resume")
    crashed = shown_scalars(read_events(first))
    assert max(crashed) > resume_step, "the crash must come after steps the resumed run recomputes"
    assert min(shown_scalars(read_events(second))) == resume_step + 1
    shown = shown_scalars(read_events(logdir))
    assert sorted(shown) == list(range(resumed.state["total_steps"] + 1))
    assert flat(shown) == pytest.approx(flat(by_step(jsonl_rows(tmp_path), name=tag)), rel=1e-6)


def test_tensorboard_dir_holds_one_folder_per_run_and_a_remote_store_writes_here(tmp_path: Path) -> None:
    """``tensorboard_dir`` with the test manifest's in-memory blob store: the folder is given, not derived."""
    result = Runtime.run("sl_basic", {**CFG, "num_epochs": 1, "tensorboard_dir": str(tmp_path / "tb"),
                                      "log_path": "exp/one"}, manifest="test")
    assert result.artifacts["tensorboard"] == str(tmp_path / "tb" / "exp" / "one")
    assert sorted(shown_scalars(read_events(tmp_path / "tb" / "exp" / "one"))) == sorted(by_step(result.metrics, name=tag))
    assert logdir_for("s3://bucket/prefix/exp/one", "exp/one") == Path("runs/exp/one/tensorboard")
    assert logdir_for(str(tmp_path / "exp" / "one"), "exp/one") == tmp_path / "exp" / "one" / "tensorboard"


def test_a_failed_run_records_a_failed_session(tmp_path: Path) -> None:
    from tensorboardX.proto.api_pb2 import Status  # pyright: ignore[reportAttributeAccessIssue]  # generated
    from tensorboardX.proto.plugin_hparams_pb2 import (
        HParamsPluginData,  # pyright: ignore[reportAttributeAccessIssue]  # generated, no stub
    )

    with pytest.raises(StageError, match="killed"):
        Runtime.run("sl_basic", {**CFG, "tensorboard": True}, manifest="test",
                    ports={**local_blobs(tmp_path), "training_client": CrashAfter(3)})
    [end] = [value for event in read_events(tmp_path / "run" / "tensorboard") for value in event.summary.value
             if value.tag == "_hparams_/session_end_info"]
    content = HParamsPluginData.FromString(end.metadata.plugin_data.content)
    assert content.session_end_info.status == Status.Value("STATUS_FAILURE")


# -- trackio -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trackio_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """trackio's storage, in a folder of this module's: trackio reads ``TRACKIO_DIR`` once, when imported."""
    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio (extra [trackio]) is not installed")
    folder = tmp_path_factory.mktemp("trackio")
    assert "trackio" not in sys.modules, "trackio was imported before its folder was set"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACKIO_DIR", str(folder))
        import trackio.utils
        from trackio.sqlite_storage import SQLiteStorage

        assert Path(trackio.utils.TRACKIO_DIR) == folder
        yield SQLiteStorage


def test_trackio_holds_what_metrics_jsonl_holds(tmp_path: Path, trackio_store: Any,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    result = Runtime.run("sl_basic", {**CFG, "trackio_project": "cookbook-tests"}, manifest="test",
                         ports=local_blobs(tmp_path))
    logged = trackio_store.get_logs("cookbook-tests", "run")
    assert flat(by_step(logged)) == pytest.approx(flat(by_step(jsonl_rows(tmp_path))))
    config = trackio_store.get_run_config("cookbook-tests", "run")
    assert {k: v for k, v in config.items() if not k.startswith("_")} == result.experiment.config
    out, _ = capfd.readouterr()
    assert "Trackio" not in out, "trackio's lines go to stderr, not into the command's output"


def test_a_crashed_then_resumed_run_logs_each_step_once_to_trackio(tmp_path: Path, trackio_store: Any) -> None:
    cfg = {**CFG, "trackio_project": "cookbook-resume", "log_path": "resumed"}
    with pytest.raises(StageError, match="killed"):
        Runtime.run("sl_basic", cfg, manifest="test", ports={**local_blobs(tmp_path), "training_client": CrashAfter(7)})
    resumed = Runtime.run("sl_basic", cfg, manifest="test", ports=local_blobs(tmp_path), quiet=True)
    logged = trackio_store.get_logs("cookbook-resume", "resumed")
    values = [(row["step"], name) for row in logged for name in row if name not in ("step", "timestamp")]
    assert len(values) == len(set(values)), "a metric logged twice at one step"  # a step's eval is a row of its own
    assert sorted({row["step"] for row in logged}) == list(range(resumed.state["total_steps"] + 1))
    assert flat(by_step(logged, drop=TIMING)) == pytest.approx(flat(by_step(jsonl_rows(tmp_path, "resumed"), drop=TIMING)))
    assert trackio_store.get_runs("cookbook-resume") == ["resumed"]


# -- the config keys -----------------------------------------------------------------------------------------


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """W&B offline, writing under the test's temp dir, with no system-metrics process or git calls; W&B
    reads its environment once per session, so the session is torn down before and after."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    settings = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_CONSOLE": "off",
                "WANDB_DISABLE_GIT": "true", "WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_META": "true",
                "WANDB__SAVE_REQUIREMENTS": "false", "WANDB_API_KEY": "sk-never-printed-0123456789"}
    for var, value in settings.items():
        monkeypatch.setenv(var, value)
    yield tmp_path / "wandb"
    wandb.teardown()


def test_run_spec_replays_the_sinks_the_spec_names(tmp_path: Path, offline_wandb: Path) -> None:
    """``--wandb-project`` is saved as the config key, and a replay of the saved spec logs to W&B again."""
    from tinkex_cookbook.pipeline.wandb_sink import read_run_file

    manifest = tmp_path / "disk.yaml"
    manifest.write_text(f"extends: test\nports:\n  blob_store: {{adapter: local, root: {tmp_path / 'runs'}}}\n")
    code = CliRunner().invoke(app, ["run", "sl_basic", "-m", str(manifest), "--wandb-project", "cookbook-tests",
                                    "--wandb-name", "first", "log_path=first", "tensorboard=true", "-q"])
    assert code.exit_code == 0, code.output
    saved = Experiment.from_json((tmp_path / "runs" / "first" / "spec.json").read_bytes())
    assert {k: saved.config[k] for k in ("wandb_project", "wandb_name", "tensorboard")} == {
        "wandb_project": "cookbook-tests", "wandb_name": "first", "tensorboard": True}
    assert json.loads((tmp_path / "runs" / "first" / "config.json").read_text())["wandb_project"] == "cookbook-tests"
    replayed = saved.model_copy(update={"config": {**saved.config, "log_path": "replayed"}})
    (tmp_path / "replay.json").write_text(replayed.to_json())
    code = CliRunner().invoke(app, ["run-spec", str(tmp_path / "replay.json"), "-m", str(manifest)])
    assert code.exit_code == 0, code.output
    assert "tensorboard: " in code.output
    runs = [read_run_file(path) for path in sorted(offline_wandb.glob("offline-run-*/run-*.wandb"))]
    assert [(run.name, run.config["log_path"]) for run in runs] == [("first", "first"), ("first", "replayed")]
    assert all(run.config["wandb_project"] == "cookbook-tests" and run.exit_code == 0 for run in runs)
    assert event_files(tmp_path / "runs" / "replayed" / "tensorboard")


@pytest.mark.parametrize("flag_value", ["other", "same"])
def test_a_flag_and_an_override_of_the_same_key_must_agree(flag_value: str) -> None:
    result = CliRunner().invoke(app, ["run", "sl_basic", "-m", "test", "--dry-run", "--wandb-project", flag_value,
                                      "wandb_project=same"])
    if flag_value == "same":
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        assert "--wandb-project 'other' and the override wandb_project='same' disagree" in result.stderr


SINK_VALUES = st.fixed_dictionaries({}, optional={
    "wandb_project": st.sampled_from(["p", "my-project"]), "wandb_name": st.text(min_size=1, max_size=8),
    "tensorboard": st.booleans(), "tensorboard_dir": st.sampled_from(["tb", "/tmp/tb"]),
    "trackio_project": st.sampled_from(["p", "q"])})


RECIPE_CONFIGS = {"sl_basic": {}, "rl_basic": {}, "math_rl": {}, "dpo": {},
                  "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B"}}


@settings(max_examples=20, deadline=None)
@given(recipe=st.sampled_from(sorted(RECIPE_CONFIGS)), keys=SINK_VALUES)
def test_sink_keys_never_change_the_stages(recipe: str, keys: dict[str, Any]) -> None:
    plain = Runtime.build_spec(recipe, {**RECIPE_CONFIGS[recipe], "log_path": "x"})
    with_keys = Runtime.build_spec(recipe, {**RECIPE_CONFIGS[recipe], "log_path": "x", **keys})
    assert with_keys.stages == plain.stages
    assert {k: v for k, v in with_keys.config.items() if k not in SINK_KEYS} == {
        k: v for k, v in plain.config.items() if k not in SINK_KEYS}


def test_a_resume_may_change_the_sink_keys_but_not_the_rest(tmp_path: Path) -> None:
    cfg = {**CFG, "num_epochs": 1}
    Runtime.run("sl_basic", cfg, manifest="test", ports=local_blobs(tmp_path))
    Runtime.run("sl_basic", {**cfg, "tensorboard": True, "trackio_project": None}, manifest="test",
                ports=local_blobs(tmp_path))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["tensorboard"] is True
    with pytest.raises(ConfigError, match="learning_rate: saved 1e-05, now 0.001"):
        Runtime.run("sl_basic", {**cfg, "learning_rate": 1e-3}, manifest="test", ports=local_blobs(tmp_path))


@pytest.mark.parametrize(("keys", "named"), [
    ({"wandb_project": "a/b"}, "'wandb_project' = 'a/b'"), ({"wandb_project": ""}, "'wandb_project' = ''"),
    ({"tensorboard_dir": ""}, "'tensorboard_dir'"), ({"tensorboard": "maybe"}, "'tensorboard' = 'maybe'")])
def test_bad_sink_keys_are_config_errors_naming_them(keys: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match="config key") as caught:
        Runtime.build_spec("sl_basic", keys)
    assert named in str(caught.value)


def test_without_the_extras_the_keys_fail_before_any_work_and_nothing_imports_them(tmp_path: Path) -> None:
    """A fresh interpreter whose import system refuses tensorboardX and trackio, as if the extras were not
    installed: a dry run with the keys set is a ConfigError that says which extra to install."""
    script = textwrap.dedent("""
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorboardX", "trackio"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Refuse())
        import tinkex_cookbook, tinkex_cookbook.cli, tinkex_cookbook.runtime
        from tinkex_cookbook import Runtime
        for keys in ({"tensorboard": True}, {"trackio_project": "p"}):
            try:
                Runtime.run("sl_basic", keys, manifest="test", dry_run=True)
            except tinkex_cookbook.ConfigError as exc:
                print(exc)
            else:
                raise SystemExit(f"no ConfigError for {keys}")
        assert "tensorboardX" not in sys.modules and "trackio" not in sys.modules
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], check=False, capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'tinkex-cookbook[tensorboard]'" in done.stdout
    assert "pip install 'tinkex-cookbook[trackio]'" in done.stdout


def test_recipes_describe_lists_the_sink_keys_after_the_recipes_own() -> None:
    from tinkex_cookbook.recipes import describe_recipe

    fields = [line.split()[0] for line in describe_recipe("sl_basic").split("\n\n")[1].splitlines()[1:]]
    assert fields[-len(SINK_KEYS):] == ["wandb_project", "wandb_name", "tensorboard", "tensorboard_dir",
                                        "trackio_project"]
    assert fields[0] == "evals"


def test_a_callers_sink_replaces_the_one_the_key_would_build(tmp_path: Path) -> None:
    from tinkex_cookbook.pipeline.tensorboard_sink import TensorBoardSink

    own = TensorBoardSink(tmp_path / "mine")
    result = Runtime.run("sl_basic", {**CFG, "num_epochs": 1, "tensorboard": True}, manifest="test",
                         ports=local_blobs(tmp_path / "blobs"), sinks=[own])
    assert event_files(tmp_path / "mine") and not (tmp_path / "blobs" / "run" / "tensorboard").exists()
    assert result.artifacts["tensorboard"] == str(tmp_path / "mine")
