"""A run's ``local://`` checkpoints are read from the root its folder was found under, whatever the cwd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.ports.training import CheckpointFile
from tinkex_cookbook.runs import Run
from tinkex_cookbook.runtime.targets import Target, run_root
from tinkex_cookbook.train.checkpoints import CheckpointRecord, check_picked


def write_run(root: Path, log_path: str, keys_under: str) -> Run:
    folder = root / log_path
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    record = {"name": "final", "final": True, "step": 1, "sampler_path": None,
              "state_path": f"local://{keys_under}/checkpoints/m/final/state.safetensors"}
    (folder / "checkpoints.jsonl").write_text(json.dumps(record) + "\n")
    return Run.load(folder)


@pytest.mark.parametrize("log_path", ["r1", "sl/run1", "a/b/c"])
def test_the_root_is_the_run_folder_with_its_key_cut_off(tmp_path: Path, log_path: str) -> None:
    run = write_run(tmp_path / "store", log_path, log_path)
    assert run_root(run) == tmp_path / "store"
    ref, ports = Target("tiny-llama3", "llama3", run=run).deployment("local")
    assert ref == "local" and ports == {"blob_store": {"adapter": "local", "root": str(tmp_path / "store")}}


def test_keys_that_do_not_name_the_folder_leave_the_deployment_as_it_was(tmp_path: Path) -> None:
    run = write_run(tmp_path / "store", "moved", "r1")
    assert run_root(run) is None
    assert Target("tiny-llama3", "llama3", run=run).deployment("local") == ("local", None)


class MissingFiles:
    """A file backend whose every checkpoint file is gone."""

    def checkpoint_file(self, path: str) -> CheckpointFile | None:
        raise BlobNotFoundError(f"no checkpoint at {path!r}")


@pytest.mark.parametrize(("index", "tail"), [
    (0, "(it is the run's first checkpoint, so there is none before it to pick instead)"),
    (1, "(no checkpoint before it has intact files, so there is none to pick instead)"),
])
def test_a_picked_checkpoint_with_no_intact_one_before_it_says_so_in_a_sentence(index: int, tail: str) -> None:
    records = [CheckpointRecord(name, step, 0, state_path=f"local://r/{name}", sha256={f"local://r/{name}": "ab"})
               for step, name in enumerate(["000001", "final"], start=1)]
    with pytest.raises(BlobNotFoundError) as caught:
        check_picked(records, index, [f"local://r/{records[index].name}"], MissingFiles(), "checkpoints.jsonl")
    assert str(caught.value).endswith(f"Fix: restore the file from a copy {tail}"), caught.value
