"""Hostile saved JSON files a run or a command reads back: ``config.json``, ``spec.json``, ``manifest.json``,
``summary.json``, ``run.lock``, a ``run-spec FILE``, a ``sample`` prompts file and a model folder's
``tokenizer_config.json``. Each way of breaking JSON (deep nesting, a 5000-digit integer, bytes that are not
UTF-8, a lone surrogate, NaN, not JSON at all) gives a typed error naming the file, or for the run browsers
a note saying which file cannot be read: never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.cli import app
from tinkex_cookbook.errors import ConfigError, DatasetError, RunFolderInUseError, SpecError, StageError
from tinkex_cookbook.run_folder import RunFolder
from tinkex_cookbook.runtime.lease import Holder, RunLease, current_pid_space
from tinkex_cookbook.spec import Experiment

HOSTILE = {
    # name: (file bytes, words the error or note holds)
    "deep nesting": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ["too deeply"]),
    "5000-digit integer": (b'{"a": ' + b"9" * 5000 + b"}", ["cannot be read"]),
    "not UTF-8": (b'{"a": "caf\xe9"}', ["not UTF-8"]),
    "not JSON": (b'{"a": 1', ["not JSON"]),
    "a list": (b"[1, 2]", ["list"]),
}
"""Ways a saved file is broken that no JSON object reader can take."""
VALUES = {
    "lone surrogate": (b'{"name": "\\ud800"}', ["'name'", "lone surrogate"]),
    "NaN": (b'{"name": "x", "config": {"lr": NaN}}', ["'config.lr'", "NaN"]),
}
"""Valid for ``json.loads`` but unusable by a run: what a spec is also checked for."""
CFG = {"batch_size": 8, "save_every": 2, "eval_every": 0, "test_size": 16, "log_path": "run"}
runner = CliRunner()


def one_line_error(result: Any, *words: str) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert err.startswith("error: ") and "Traceback" not in result.output + err, err
    for word in words:
        assert word in err, (word, err)
    return err


def run_folder(root: Path, **files: bytes) -> Path:
    folder = root / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"event": "train.step", "step": 1, "train_mean_nll": 1.5}\n')
    for name, data in files.items():
        (folder / name.replace("_", ".")).write_bytes(data)
    return folder


# --- run browsing: runs list / runs show ------------------------------------------------------------


@pytest.mark.parametrize("name", ["spec_json", "config_json", "manifest_json", "summary_json"])
@pytest.mark.parametrize("case", HOSTILE)
def test_runs_list_and_show_name_an_unreadable_file_and_go_on(tmp_path: Path, name: str, case: str) -> None:
    data, words = HOSTILE[case]
    folder = run_folder(tmp_path, **{name: data})
    listed = runner.invoke(app, ["runs", "list", "--root", str(tmp_path / "runs")])
    assert listed.exit_code == 0 and "r1" in listed.stdout, listed.output
    shown = runner.invoke(app, ["runs", "show", str(folder)])
    assert shown.exit_code == 0, shown.output
    note = next(line for line in shown.stdout.splitlines() if line.startswith("unreadable: "))
    for word in [name.replace("_", "."), *words]:
        assert word in note, (word, note)


# --- resuming a folder: config.json, summary.json ---------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE)
def test_a_saved_config_that_cannot_be_read_is_named_before_a_resume(tmp_path: Path, case: str) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("run/checkpoints.jsonl", b'{"name": "000002", "step": 2}\n')
    store.write("run/config.json", HOSTILE[case][0])
    with pytest.raises(ConfigError) as caught:
        RunFolder(store, "run").refuse_changed_config(json.dumps({"batch_size": 8}))
    message = str(caught.value)
    for word in [str(tmp_path / "run" / "config.json"), "cannot be read", "pick a new log_path", *HOSTILE[case][1]]:
        assert word in message, (word, message)


@pytest.mark.parametrize("case", ["deep nesting", "not UTF-8", "a list"])
def test_a_required_run_file_that_cannot_be_read_is_a_config_error_naming_it(tmp_path: Path, case: str) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("run/config.json", HOSTILE[case][0])
    folder = RunFolder(store, "run")
    assert folder.read_json("config.json") == {}  # browsing goes on
    with pytest.raises(ConfigError, match=r"config\.json.*Fix: restore the file"):
        folder.load_json("config.json")  # evaluating a run with its saved config does not
    assert folder.load_json("missing.json") == {}


def test_a_damaged_summary_is_named_when_a_finished_run_is_resumed(tmp_path: Path) -> None:
    ports = {"blob_store": {"adapter": "local", "root": str(tmp_path)}}
    Runtime.run(SlBasic, CFG, manifest="test", ports=ports)
    (tmp_path / "run" / "summary.json").write_bytes(b"[" * 100_000)
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, CFG, manifest="test", ports=ports)
    assert isinstance(caught.value.__cause__, ConfigError)
    assert str(tmp_path / "run" / "summary.json") in str(caught.value) and "too deeply" in str(caught.value)


# --- the lease: run.lock ----------------------------------------------------------------------------


def holder_fields(**changed: Any) -> dict[str, Any]:
    now = time.time()
    return {"owner": "someone-else", "host": socket.gethostname(), "pid": os.getppid(), "started": now - 5,
            "heartbeat": now - 1, "pid_space": current_pid_space(), **changed}


@pytest.mark.parametrize(
    "data",
    [
        HOSTILE["deep nesting"][0], HOSTILE["5000-digit integer"][0], HOSTILE["not UTF-8"][0],
        json.dumps(holder_fields(heartbeat=10**400)).encode(),  # float() overflows
        json.dumps(holder_fields(pid=10**400)).encode(),
        json.dumps(holder_fields(heartbeat=float("nan"))).encode(),  # never stale
        json.dumps(holder_fields(started=float("inf"))).encode(),  # fromtimestamp overflows
        json.dumps(holder_fields(host="\ud800")).encode(),  # cannot be printed in the message
    ],
    ids=["deep", "5000 digits", "not UTF-8", "huge heartbeat", "huge pid", "NaN heartbeat", "infinite start",
         "surrogate host"],
)
def test_an_unreadable_lock_is_named_as_one_not_a_traceback(tmp_path: Path, data: bytes) -> None:
    assert Holder.parse(data) is None
    store = LocalBlobStore(tmp_path)
    store.write("run/run.lock", data)
    with pytest.raises(RunFolderInUseError) as caught:
        RunLease(store, "run").acquire()
    message = str(caught.value)
    assert "its lock is unreadable" in message and str(tmp_path / "run" / "run.lock") in message
    message.encode("utf-8")  # printable
    listed = runner.invoke(app, ["runs", "list", "--root", str(tmp_path)])
    assert listed.exit_code == 0, listed.output


# --- run-spec FILE and the manifest.json beside it --------------------------------------------------


@pytest.mark.parametrize("case", [*HOSTILE, *VALUES])
def test_run_spec_of_a_broken_spec_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    data, words = {**HOSTILE, **VALUES}[case]
    spec = tmp_path / "spec.json"
    spec.write_bytes(data)
    with pytest.raises(SpecError):
        Experiment.read(data, str(spec))
    one_line_error(runner.invoke(app, ["run-spec", str(spec), "--manifest", "test", "--dry-run"]), str(spec), *words)


def test_run_spec_names_what_the_schema_rejects(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "x", "recipe": "sl_basic", "config": {}, "stages": [], "stagse": []}))
    one_line_error(runner.invoke(app, ["run-spec", str(spec), "--manifest", "test", "--dry-run"]),
                   str(spec), "is not an experiment spec", "'stagse'")


def test_run_spec_beside_a_broken_manifest_names_it(tmp_path: Path) -> None:
    spec = runner.invoke(app, ["spec", "sl_basic", "log_path=run"]).stdout
    (tmp_path / "spec.json").write_text(spec)
    (tmp_path / "manifest.json").write_bytes(HOSTILE["deep nesting"][0])
    one_line_error(runner.invoke(app, ["run-spec", str(tmp_path / "spec.json"), "--dry-run"]),
                   str(tmp_path / "manifest.json"), "too deeply", "--manifest")
    replay = runner.invoke(app, ["run-spec", str(tmp_path / "spec.json"), "--manifest", "test", "--dry-run"])
    assert replay.exit_code == 0, replay.output  # --manifest: the recorded one is not read


# --- sample's prompts file and a model folder's tokenizer_config.json -------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [(HOSTILE["deep nesting"][0], ["line 2", "too deeply"]), (b'{"prompt": "a\\ud800"}', ["line 2", "'prompt'"]),
     (b'{"prompt": "caf\xe9"}', ["line 2", "not UTF-8"])],
)
def test_a_broken_prompts_file_names_the_file_and_line(tmp_path: Path, line: bytes, words: list[str]) -> None:
    from tinkex_cookbook.cli_models import _read_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"prompt": "hi"}\n' + line + b"\n")
    with pytest.raises(DatasetError) as caught:
        _read_prompts(path)
    for word in [str(path), *words]:
        assert word in str(caught.value), (word, str(caught.value))


@pytest.mark.parametrize("case", ["deep nesting", "not UTF-8", "a list"])
def test_a_broken_tokenizer_config_is_named(tmp_path: Path, case: str) -> None:
    from tinkex_cookbook.runtime.targets import folder_renderer

    (tmp_path / "tokenizer_config.json").write_bytes(HOSTILE[case][0])
    with pytest.raises(ConfigError, match=r"tokenizer_config\.json"):
        folder_renderer(tmp_path)
