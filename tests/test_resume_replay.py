"""Resuming and replaying as a user does it: with the run folder the CLI printed, after Ctrl-C, into a new folder.

A ``log_path`` copied from a run's output (relative to the working directory, absolute, a
``file://`` URI) names that run's folder, not a new one below the blob store's root.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.faults import CrashAfter, SignalAt, SignalOnStep, local_blobs
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore
from tinkex_cookbook.cli import app
from tinkex_cookbook.errors import ConfigError, RunStoppedError
from tinkex_cookbook.pipeline.stopping import StopRequest
from tinkex_cookbook.run_folder import folder_key

CFG = {"batch_size": 8, "save_every": 2, "test_size": 16, "num_epochs": 2}

segment = st.text(st.characters(whitelist_categories=("Ll", "Nd"), whitelist_characters="-_"), min_size=1, max_size=8)
keys = st.lists(segment, min_size=1, max_size=4).map("/".join)


# -- where a printed location leads -------------------------------------------------------------------------


@given(key=keys)
def test_a_location_the_local_store_prints_is_its_key(key: str) -> None:
    store = LocalBlobStore(Path("/srv/runs"))
    assert store.key_for(store.uri(key)) == key
    assert store.key_for("file://" + store.uri(key)) == key
    assert folder_key(store, store.uri(key)) == key


@given(key=keys)
def test_a_location_the_memory_store_prints_is_its_key(key: str) -> None:
    store = MemoryBlobStore()
    assert folder_key(store, store.uri(key)) == key


def test_a_path_relative_to_the_working_directory_leads_into_the_root(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalBlobStore("runs")
    assert folder_key(store, "runs/sl_basic/t") == "sl_basic/t"
    assert folder_key(store, "./runs/sl_basic/t/") == "sl_basic/t"
    assert folder_key(store, "sl_basic/t") == "sl_basic/t"  # not a path into the root: a key
    with pytest.raises(ConfigError, match="root itself"):
        folder_key(store, "runs")


def test_inside_the_root_a_relative_log_path_is_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs" / "sl_basic").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs" / "sl_basic")
    assert folder_key(LocalBlobStore(tmp_path / "runs"), "sl_basic/t") == "sl_basic/t"


def test_an_absolute_path_outside_the_root_says_where_the_root_is(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match=f"outside the blob store's root {tmp_path / 'runs'}.*'sl_basic/my-run'"):
        folder_key(store, str(tmp_path / "elsewhere" / "run"))


def test_a_printed_file_is_not_taken_for_its_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("sl_basic/t/spec.json", b"{}")
    with pytest.raises(ConfigError, match=f"is a file, not a run folder: its run folder is '{tmp_path}/sl_basic/t'"):
        folder_key(store, store.uri("sl_basic/t/spec.json"))


def test_a_uri_of_another_store_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a location in this blob store"):
        folder_key(LocalBlobStore("/srv/runs"), "s3://bucket/runs/x")
    store = S3BlobStore("bucket", "cookbook/")  # no request is made: key_for only reads the location
    assert store.key_for(store.uri("sl_basic/t")) == "sl_basic/t"
    assert store.key_for("sl_basic/t") is None
    with pytest.raises(ConfigError, match="outside this blob store"):
        store.key_for("s3://other/cookbook/sl_basic/t")


# -- a run resumed with the printed folder ------------------------------------------------------------------


def _crash_then_resume(root: Path, log_path: str) -> list[str]:
    """Crash a run at step 5 in ``root/first``; resume it with ``log_path``; the top-level folders of ``root``."""
    cfg = {**CFG, "log_path": "first"}
    with pytest.raises(StageError):
        Runtime.run(SlBasic, cfg, manifest="test", ports={**local_blobs(root), "training_client": CrashAfter(5)})
    resumed = Runtime.run(SlBasic, {**cfg, "log_path": log_path}, manifest="test", ports=local_blobs(root))
    assert next(e for e in resumed.events if e.name == "train.resume").data["step"] == 4
    assert resumed.artifacts["run"] == str(root / "first")
    return sorted(p.name for p in root.iterdir())


def test_the_printed_absolute_path_resumes_the_same_folder(tmp_path: Path) -> None:
    assert _crash_then_resume(tmp_path / "runs", str(tmp_path / "runs" / "first")) == ["first"]


def test_the_printed_relative_path_resumes_the_same_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _crash_then_resume(tmp_path / "runs", "runs/first") == ["first"]


def test_a_file_uri_resumes_the_same_folder(tmp_path: Path) -> None:
    assert _crash_then_resume(tmp_path / "runs", (tmp_path / "runs" / "first").as_uri()) == ["first"]


# -- Ctrl-C and SIGTERM: stop at a step boundary, checkpointed ----------------------------------------------

STOP_CONFIGS: dict[str, dict[str, Any]] = {
    "sl_basic": {**CFG, "save_every": 20, "eval_every": 3},
    "rl_basic": {"env": "digits", "num_steps": 5, "batch_size": 2, "group_size": 2, "max_tokens": 4,
                 "off_policy_steps": 1, "save_every": 20},
    "math_rl": {"num_steps": 4, "batch_size": 2, "group_size": 2, "max_tokens": 4, "save_every": 20},
    "dpo": {"batch_size": 4, "save_every": 20, "eval_every": 2},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 4, "batch_size": 2, "group_size": 2,
                     "max_tokens": 4, "save_every": 20, "eval_size": 0},
}
"""Configs that checkpoint only when stopped. Distillation evaluates nothing: its evaluation before the loop
runs again at a resumed run's first step, a row an uninterrupted run does not have (a crash resume too)."""


def _run(recipe: str, root: Path, training_client: Any = None, sinks: Sequence[Any] = (), **cfg: Any) -> Any:
    ports = {**local_blobs(root), **({"training_client": training_client} if training_client else {})}
    return Runtime.run(recipe, {"renderer_name": "role_colon", **STOP_CONFIGS[recipe], "log_path": "run", **cfg},
                       manifest="test", ports=ports, sinks=sinks)


def _rows(folder: Path) -> list[dict[str, Any]]:
    """A run folder's ``metrics.jsonl`` without wall-clock fields (step and sampling times, throughputs)."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k and "per_second" not in k}
            for line in lines]


def _records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "run" / "checkpoints.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", sorted(STOP_CONFIGS))
def test_ctrl_c_checkpoints_the_step_reached_and_the_resume_matches_an_uninterrupted_run(
        tmp_path: Path, recipe: str) -> None:
    whole = _run(recipe, tmp_path / "whole")
    with pytest.raises(RunStoppedError) as stopped:
        _run(recipe, tmp_path / "b", sinks=[SignalOnStep(2)])  # Ctrl-C while step 2 is logged
    [record] = _records(tmp_path / "b")  # save_every=20: the stop's checkpoint is the only one
    step = record["step"]
    assert 2 <= step < whole.state["total_steps"] and not record["final"]
    assert f"stopped after step {step} (SIGINT): step {step} is checkpointed" in str(stopped.value)
    assert stopped.value.log_path == "run" and stopped.value.signal_name == "SIGINT"
    assert str(tmp_path / "b" / "run") in str(stopped.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
    resumed = _run(recipe, tmp_path / "b")
    assert next(e for e in resumed.events if e.name == "train.step").data["step"] == step + 1
    assert _rows(tmp_path / "b" / "run") == _rows(tmp_path / "whole" / "run")
    assert resumed.state["final_checkpoint"] == whole.state["final_checkpoint"]
    assert f"workflow.stopped reason=SIGINT step={step}" in (tmp_path / "b" / "run" / "run.log").read_text()


def test_sigterm_stops_the_same_way_and_a_periodic_checkpoint_is_not_saved_twice(tmp_path: Path) -> None:
    with pytest.raises(RunStoppedError, match="SIGTERM"):
        _run("sl_basic", tmp_path, SignalAt(4, signal.SIGTERM), save_every=2)
    assert [r["step"] for r in _records(tmp_path)] == [2, 4]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stop_asked_for_by_another_thread_needs_no_signal(tmp_path: Path) -> None:
    stop = StopRequest()
    stop.request("asked by the caller")
    with pytest.raises(RunStoppedError, match=r"after step 0 \(asked by the caller\): no step had finished"):
        Runtime.run(SlBasic, {**CFG, "log_path": "run"}, manifest="test", ports=local_blobs(tmp_path), stop=stop)
    assert not (tmp_path / "run" / "checkpoints.jsonl").exists()


def test_a_second_ctrl_c_quits_at_once_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt) as caught:
        _run("sl_basic", tmp_path, SignalAt(2, again=True))
    assert any(str(tmp_path / "run") in note and "log_path=run" in note for note in caught.value.__notes__)
    assert not (tmp_path / "run" / "checkpoints.jsonl").exists()  # interrupted while saving the stop's checkpoint


def test_an_evaluation_in_flight_is_left_behind(tmp_path: Path) -> None:
    with pytest.raises(RunStoppedError):
        _run("sl_basic", tmp_path, SignalAt(3), evals=["chitchat_nll"], eval_every=1)
    assert not [t for t in threading.enumerate() if t.name == "evals" and not t.daemon]


def test_the_plan_says_what_a_stop_runs() -> None:
    out = io.StringIO()
    Runtime.run(SlBasic, CFG, manifest="test", dry_run=True, out=out)
    assert "on stop: finish_steps, checkpoint" in out.getvalue()


# -- the command line: the printed resume command, replaying into a new folder ------------------------------

REPO = Path(__file__).resolve().parent.parent
CLI_CFG = ["batch_size=8", "save_every=20", "learning_rate=1e-4"]


def _cli(cwd: Path, *args: str, signal_at: int | None = None, again: bool = False) -> subprocess.CompletedProcess[str]:
    """``tinkex-cookbook ARGS`` in its own process, in ``cwd``, with runs under ``cwd/runs``; its noop backend
    sends it SIGINT when optimizer step ``signal_at`` is submitted (``again``: once more while it checkpoints)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TINKEX_PORTS__BLOB_STORE__ADAPTER": "local",
           "TINKEX_LOG_DIR": str(cwd / "runs"), "TINKEX_PORTS__TRAINING_CLIENT__ADAPTER": "signal_at"}
    for name in ("TINKEX_SIGNAL_AT", "TINKEX_SIGNAL_AGAIN", "TINKEX_MANIFEST"):
        env.pop(name, None)
    if signal_at is not None:
        env |= {"TINKEX_SIGNAL_AT": str(signal_at), **({"TINKEX_SIGNAL_AGAIN": "1"} if again else {})}
    return subprocess.run([sys.executable, "-m", "tests.stop_child", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_printed_resume_command_continues_at_the_next_step(tmp_path: Path) -> None:
    stopped = _cli(tmp_path, "run", "sl_basic", "--manifest", "test", "-q", *CLI_CFG, signal_at=3)
    assert stopped.returncode == 130, stopped.stderr
    resume = next(line for line in stopped.stderr.splitlines() if line.startswith("resume: "))
    command = shlex.split(resume.removeprefix("resume: "))
    [folder] = (tmp_path / "runs" / "sl_basic").iterdir()
    assert command == ["tinkex-cookbook", "run", "sl_basic", "--manifest", "test", *CLI_CFG,
                       f"log_path=sl_basic/{folder.name}"]
    assert [json.loads(line)["step"] for line in (folder / "checkpoints.jsonl").read_text().splitlines()] == [3]
    resumed = _cli(tmp_path, *command[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert "train.resume" in (folder / "run.log").read_text()
    Runtime.run(SlBasic, {**dict(o.split("=") for o in CLI_CFG), "log_path": "run"}, manifest="test",
                ports=local_blobs(tmp_path / "whole"))
    assert _rows(folder) == _rows(tmp_path / "whole" / "run")


def test_a_second_ctrl_c_in_the_command_line_quits_naming_the_folder(tmp_path: Path) -> None:
    quit_ = _cli(tmp_path, "run", "sl_basic", "--manifest", "test", "-q", *CLI_CFG, signal_at=3, again=True)
    [folder] = (tmp_path / "runs" / "sl_basic").iterdir()
    assert quit_.returncode == 130
    assert f"interrupted: run folder: {folder}; rerun with log_path=sl_basic/{folder.name}" in quit_.stderr


def _manifest(tmp_path: Path) -> str:
    manifest = tmp_path / "disk.yaml"
    manifest.write_text(f"extends: test\nports:\n  blob_store: {{adapter: local, root: {tmp_path / 'runs'}}}\n")
    return str(manifest)


def test_run_spec_with_a_log_path_replays_into_a_new_folder_and_a_finished_run_says_so(tmp_path: Path) -> None:
    runner, manifest, runs = CliRunner(), _manifest(tmp_path), tmp_path / "runs"
    assert runner.invoke(app, ["run", "sl_basic", "-m", manifest, "log_path=first", *CLI_CFG]).exit_code == 0
    spec = runs / "first" / "spec.json"
    again = runner.invoke(app, ["run-spec", str(spec), "-m", manifest])
    assert again.exit_code == 0 and "holds a finished run (step 8): no step ran" in again.stdout
    assert f"run-spec {spec} --manifest {manifest} --log-path NEW_FOLDER" in again.stdout
    rerun = runner.invoke(app, ["run", "sl_basic", "-m", manifest, f"log_path={runs / 'first'}", *CLI_CFG])
    assert "holds a finished run" in rerun.stdout
    replay = runner.invoke(app, ["run-spec", str(spec), "-m", manifest, "--log-path", "second"])
    assert replay.exit_code == 0, replay.output
    assert json.loads((runs / "second" / "spec.json").read_text())["config"]["log_path"] == "second"
    assert _rows(runs / "second") == _rows(runs / "first")
    assert len((runs / "first" / "checkpoints.jsonl").read_text().splitlines()) == 1  # the first is untouched


def test_a_printed_spec_names_no_folder_and_each_replay_gets_its_own(tmp_path: Path) -> None:
    runner, manifest, runs = CliRunner(), _manifest(tmp_path), tmp_path / "runs"
    printed = runner.invoke(app, ["spec", "sl_basic", *CLI_CFG])
    assert json.loads(printed.stdout)["config"]["log_path"] is None
    spec = tmp_path / "spec.json"
    spec.write_text(printed.stdout)
    for _ in range(2):
        assert runner.invoke(app, ["run-spec", str(spec), "-m", manifest]).exit_code == 0
    folders = sorted((runs / "sl_basic").iterdir())
    assert len(folders) == 2
    for folder in folders:  # the spec each run saved names its own folder: replaying it resumes that run
        assert json.loads((folder / "spec.json").read_text())["config"]["log_path"] == f"sl_basic/{folder.name}"


# -- replaying on the manifest the run ran on ---------------------------------------------------------------


def _finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str, Path]:
    """A finished run in ``runs/first`` on a YAML manifest; no Tinker key and ``$TINKEX_MANIFEST`` naming the
    default manifest (which needs the key), so only the recorded manifest replays it."""
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    runner, manifest = CliRunner(), _manifest(tmp_path)
    assert runner.invoke(app, ["run", "sl_basic", "-m", manifest, "log_path=first", *CLI_CFG]).exit_code == 0
    monkeypatch.setenv("TINKEX_MANIFEST", "default")
    return runner, manifest, tmp_path / "runs" / "first" / "spec.json"


def test_run_spec_replays_on_the_manifest_recorded_beside_the_spec(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runner, manifest, spec = _finished_run(tmp_path, monkeypatch)
    again = runner.invoke(app, ["run-spec", str(spec)])
    assert again.exit_code == 0, again.output
    assert again.stderr.splitlines() == [f"manifest: {manifest} (recorded beside {spec}; --manifest overrides)"]
    assert f"run-spec {spec} --manifest {manifest} --log-path NEW_FOLDER" in again.stdout
    plan = runner.invoke(app, ["run-spec", str(spec), "--dry-run"])
    assert plan.exit_code == 0 and "manifest disk from test < " in plan.stdout and "recorded beside" in plan.stderr


def test_an_explicit_manifest_wins_over_the_recorded_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, _, spec = _finished_run(tmp_path, monkeypatch)
    plan = runner.invoke(app, ["run-spec", str(spec), "-m", "test", "--dry-run"])
    assert plan.exit_code == 0 and "manifest test from test" in plan.stdout and plan.stderr == ""
    refused = runner.invoke(app, ["run-spec", str(spec), "-m", "default"])
    assert refused.exit_code == 2 and "needs the environment variable TINKER_API_KEY" in refused.stderr


def test_a_spec_with_no_recorded_manifest_uses_the_usual_default(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_MANIFEST", "test")
    spec = tmp_path / "spec.json"
    spec.write_text(Runtime.build_spec(SlBasic, {}).to_json())
    plan = CliRunner().invoke(app, ["run-spec", str(spec), "--dry-run"])
    assert plan.exit_code == 0 and "manifest test from test" in plan.stdout and plan.stderr == ""


def test_a_recorded_manifest_that_is_gone_is_named_not_swapped_for_another(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runner, manifest, spec = _finished_run(tmp_path, monkeypatch)
    Path(manifest).unlink()
    gone = runner.invoke(app, ["run-spec", str(spec)])
    assert gone.exit_code == 2
    assert f"records manifest {manifest!r}, which is neither a shipped manifest nor a file here" in gone.stderr


def test_the_resume_command_of_a_stopped_run_spec_names_its_manifest(tmp_path: Path) -> None:
    Runtime.run(SlBasic, {**dict(o.split("=") for o in CLI_CFG), "log_path": "first"}, manifest="test",
                ports=local_blobs(tmp_path / "runs"))
    spec = "runs/first/spec.json"
    stopped = _cli(tmp_path, "run-spec", spec, "--log-path", "second", signal_at=3)
    assert stopped.returncode == 130, stopped.stderr
    assert f"manifest: test (recorded beside {spec}; --manifest overrides)" in stopped.stderr
    resume = next(line for line in stopped.stderr.splitlines() if line.startswith("resume: "))
    command = shlex.split(resume.removeprefix("resume: "))
    assert command == ["tinkex-cookbook", "run-spec", spec, "--manifest", "test", "--log-path", "second"]
    assert _cli(tmp_path, *command[1:]).returncode == 0
    assert _rows(tmp_path / "runs" / "second") == _rows(tmp_path / "runs" / "first")
