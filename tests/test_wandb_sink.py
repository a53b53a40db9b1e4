"""W&B sink: an offline run holds exactly what metrics.jsonl holds, a crashed-then-resumed run logs each
step once to one W&B run, and without the extra the sink fails with a ConfigError naming the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.faults import TIMING, CrashAfter, local_blobs
from tinkex_cookbook import ConfigError, Runtime, SlBasic, StageError
from tinkex_cookbook.pipeline.wandb_sink import (
    StepGate,
    WandbSink,
    numeric_fields,
    read_run_file,
    run_id_for,
    wait_until_written,
)

wandb = pytest.importorskip("wandb")

CFG = {"batch_size": 8, "save_every": 4, "eval_every": 3, "test_size": 16, "num_epochs": 2, "log_path": "run"}
QUIET = {"console": "off", "x_disable_stats": True, "x_disable_meta": True, "disable_git": True,
         "x_save_requirements": False}
"""No output capture, system-metrics process, machine scan or git calls: a test run stays fast and local."""
REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-never-printed-0123456789"


@pytest.fixture(scope="module", autouse=True)
def wandb_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep W&B's cache, config and service logs under the test's temp dir; stop its service after."""
    home = tmp_path_factory.mktemp("wandb-home")
    wandb.teardown()  # W&B reads its environment once per process, at its first run
    with pytest.MonkeyPatch.context() as patch:
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            patch.setenv(var, str(home / var.lower()))
        for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_ENTITY"):
            patch.delenv(var, raising=False)
        patch.setenv("WANDB_API_KEY", FAKE_KEY)
        yield
        wandb.teardown()


@pytest.fixture
def fresh_wandb() -> Iterator[None]:
    """For a test that changes W&B's environment: W&B rereads it only in a new session."""
    wandb.teardown()
    yield
    wandb.teardown()


def sink_for(root: Path, **options: Any) -> WandbSink:
    """A sink configured the way the runtime configures it: the run's spec and its log path."""
    sink = WandbSink("cookbook-tests", **{"mode": "offline", "dir": root / "wandb", "settings": QUIET, **options})
    sink.configure(Runtime.build_spec(SlBasic, CFG), str(root / "blobs" / "run"))
    return sink


def run_files(root: Path) -> list[Path]:
    """Each attempt's ``.wandb`` file, oldest first (folder names start with the attempt's start time)."""
    return sorted((root / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)


def by_step(rows: Iterable[dict[str, Any]], drop: Iterable[str] = ()) -> dict[int, dict[str, Any]]:
    """Rows merged per step the way W&B keeps them: one row per step, later fields joining it."""
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = int(row.get("step", row.get("_step")))
        merged.setdefault(step, {}).update(
            {k: v for k, v in row.items() if not k.startswith("_") and k not in ("event", "step", *drop)}
        )
    return merged


def jsonl_rows(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "blobs" / "run" / "metrics.jsonl").read_text().splitlines()]


def test_an_offline_run_holds_what_metrics_jsonl_holds(tmp_path: Path) -> None:
    result = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path / "blobs"), sinks=[sink_for(tmp_path)])
    [run_file] = run_files(tmp_path)
    logged = read_run_file(run_file)
    assert by_step(logged.history) == by_step(jsonl_rows(tmp_path))
    assert sorted(by_step(logged.history)) == list(range(0, result.state["total_steps"] + 1))  # step 0: the base model's eval
    assert logged.run_id == run_id_for(str(tmp_path / "blobs" / "run"))
    assert (logged.name, logged.job_type) == (result.experiment.name, "sl_basic")
    assert logged.config == result.experiment.config
    assert logged.summary["checkpoint"] == "final"
    assert logged.summary["final_checkpoint"] == result.state["final_checkpoint"]
    assert logged.exit_code == 0


def test_a_crashed_then_resumed_run_logs_each_step_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """W&B's console output stays on here: it must show no warning and never the API key."""
    loud = {k: v for k, v in QUIET.items() if k != "console"}
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, CFG, manifest="test",
                    ports={**local_blobs(tmp_path / "blobs"), "training_client": CrashAfter(7)},
                    sinks=[sink_for(tmp_path, settings=loud)])
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path / "blobs"),
                          sinks=[sink_for(tmp_path, settings=loud)])
    first, second = (read_run_file(path) for path in run_files(tmp_path))
    resume_step = next(e.data["step"] for e in resumed.events if e.name == "train.resume")
    first_steps = sorted(by_step(first.history))
    assert first_steps[-1] > resume_step, "the crash must come after steps the resumed run recomputes"
    assert (first.exit_code, first.summary["error"], first.summary["failed_stage"]) == (1, "StageError", "optim_step")
    assert (second.exit_code, second.run_id, second.summary["resumed_from_step"]) == (0, first.run_id, resume_step)
    second_steps = sorted(by_step(second.history))
    assert second_steps[0] == first_steps[-1] + 1
    assert first_steps + second_steps == list(range(0, resumed.state["total_steps"] + 1))
    assert by_step([*first.history, *second.history], drop=TIMING) == by_step(jsonl_rows(tmp_path), drop=TIMING)
    out, err = capfd.readouterr()
    assert "wandb: Tracking run" in err, "W&B's console lines were on"
    assert "WARNING" not in out + err and FAKE_KEY not in out + err


@pytest.mark.long
@pytest.mark.parametrize("crash_at", [1, 3, 5, 9, 14])
def test_resume_after_any_crash_logs_each_step_once(tmp_path: Path, crash_at: int) -> None:
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, CFG, manifest="test", sinks=[sink_for(tmp_path)],
                    ports={**local_blobs(tmp_path / "blobs"), "training_client": CrashAfter(crash_at)})
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path / "blobs"), sinks=[sink_for(tmp_path)])
    histories = [read_run_file(path).history for path in run_files(tmp_path)]
    steps = [step for history in histories for step in sorted(by_step(history))]
    assert steps == list(range(0, resumed.state["total_steps"] + 1))
    merged = [row for history in histories for row in history]
    assert by_step(merged, drop=TIMING) == by_step(jsonl_rows(tmp_path), drop=TIMING)


@pytest.mark.parametrize(("mode", "run_dirs"), [("offline", 1), ("disabled", 0)])
def test_wandb_mode_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_wandb: None, mode: str, run_dirs: int
) -> None:
    monkeypatch.setenv("WANDB_MODE", mode)
    sink = WandbSink("cookbook-tests", dir=tmp_path / "wandb", settings=QUIET)
    sink.configure(Runtime.build_spec(SlBasic, CFG), str(tmp_path / "blobs" / "run"))
    Runtime.run(SlBasic, {**CFG, "num_epochs": 1}, manifest="test", ports=local_blobs(tmp_path / "blobs"), sinks=[sink])
    assert len(list((tmp_path / "wandb").glob("wandb/*run-*"))) == run_dirs


def test_the_sink_leaves_the_callers_own_run_alone(tmp_path: Path) -> None:
    own = wandb.init(project="mine", mode="offline", dir=str(tmp_path), settings=wandb.Settings(**QUIET, silent=True))
    try:
        Runtime.run(SlBasic, {**CFG, "num_epochs": 1}, manifest="test", ports=local_blobs(tmp_path / "blobs"),
                    sinks=[sink_for(tmp_path, quiet=True)])
        assert wandb.run is own
        own.log({"mine": 1.0}, step=1)
    finally:
        own.finish()
    assert [row["mine"] for row in wait_until_written(next(tmp_path.glob("wandb/*/run-*.wandb"))).history] == [1.0]


@pytest.mark.parametrize(
    ("options", "named"),
    [({"project": ""}, "project=''"), ({"project": "a/b"}, "project='a/b'"),
     ({"mode": "cloud"}, "mode='cloud'"), ({"settings": {"no_such_setting": 1}}, "'no_such_setting'"),
     ({"settings": {"console": "loud"}}, "'console'")],
)
def test_bad_arguments_are_config_errors_naming_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match="WandbSink") as caught:
        WandbSink(**{"project": "cookbook-tests", **options})
    assert named in str(caught.value)


def test_without_wandb_the_sink_is_a_config_error_and_nothing_imports_it(tmp_path: Path) -> None:
    """A fresh interpreter whose import system refuses ``wandb``, as if the extra were not installed."""
    script = textwrap.dedent("""
        import sys

        class NoWandb:
            def find_spec(self, name, path=None, target=None):
                if name == "wandb" or name.startswith("wandb."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoWandb())
        import tinkex_cookbook, tinkex_cookbook.cli, tinkex_cookbook.runtime
        from tinkex_cookbook.pipeline.wandb_sink import WandbSink
        assert "wandb" not in sys.modules
        try:
            WandbSink("cookbook-tests", mode="offline")
        except tinkex_cookbook.ConfigError as exc:
            print(exc)
        else:
            raise SystemExit("no ConfigError")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], check=False, capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'tinkex-cookbook[wandb]'" in done.stdout


def test_read_run_file_joins_records_split_across_blocks_and_stops_at_a_torn_tail(tmp_path: Path) -> None:
    run = wandb.init(project="reader", mode="offline", dir=str(tmp_path), reinit="create_new",
                     config={"note": "n" * 70_000}, settings=wandb.Settings(**QUIET, silent=True))
    for step in range(1, 4):
        run.log({"loss": 1 / step, "text": str(step) * 40_000}, step=step)
    run.finish()
    path = next(tmp_path.glob("wandb/*/run-*.wandb"))
    whole = wait_until_written(path)
    assert whole.config == {"note": "n" * 70_000}
    assert [(row["_step"], row["loss"], row["text"]) for row in whole.history] == [
        (step, 1 / step, str(step) * 40_000) for step in range(1, 4)
    ]
    torn = tmp_path / "torn.wandb"
    torn.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert [row["_step"] for row in read_run_file(torn).history] in ([], [1], [1, 2])
    foreign = tmp_path / "foreign.wandb"
    foreign.write_bytes(b"not a run file")
    assert read_run_file(foreign).history == []


@settings(max_examples=200, deadline=None)
@given(logged_through=st.integers(-1, 20), steps=st.lists(st.integers(0, 30), max_size=40))
def test_the_step_gate_passes_only_steps_w_and_b_keeps(logged_through: int, steps: list[int]) -> None:
    gate = StepGate(logged_through)
    admitted, highest = [], logged_through
    for step in steps:
        keep = gate.admit(step)
        assert keep == (step > logged_through and step >= highest)
        if keep:
            admitted.append(step)
            highest = step
    assert admitted == sorted(admitted) and all(step > logged_through for step in admitted)


def test_only_numbers_are_sent_and_the_step_is_not_a_metric() -> None:
    np = pytest.importorskip("numpy")
    fields = numeric_fields({"step": 3, "loss": np.float32(0.5), "count": np.int64(2), "lr": 1e-4,
                             "final": True, "name": "000004", "path": None})
    assert fields == {"loss": 0.5, "count": 2, "lr": 1e-4}
    assert type(fields["loss"]) is float and type(fields["count"]) is int
