"""Crash after step k, resume with the same log path: the same metrics rows and final state as
an uninterrupted run, no step repeated or lost, continuing at exactly the next unfinished step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import CrashAfter, local_blobs, metric_rows
from tinkex_cookbook import Runtime, SlBasic, StageError

CFG = {"batch_size": 8, "save_every": 2, "eval_every": 3, "test_size": 16, "num_epochs": 2, "log_path": "run"}


def run_dir_rows(root: Path) -> list[dict]:
    return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("crash_at", [1, 2, 3, 5, 9, 14])
def test_resume_matches_an_uninterrupted_run(tmp_path: Path, crash_at: int) -> None:
    whole = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path / "a"))
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, CFG, manifest="test", ports={**local_blobs(tmp_path / "b"), "training_client": CrashAfter(crash_at)})
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path / "b"))
    assert run_dir_rows(tmp_path / "b") == run_dir_rows(tmp_path / "a")
    assert resumed.state["final_checkpoint"] == whole.state["final_checkpoint"]
    steps = [r["step"] for r in run_dir_rows(tmp_path / "b") if r["event"] == "train.step"]
    assert steps == list(range(1, whole.state["total_steps"] + 1))
    checkpoints = (tmp_path / "b" / "run" / "checkpoints.jsonl").read_text()
    assert checkpoints == (tmp_path / "a" / "run" / "checkpoints.jsonl").read_text()


def test_resume_continues_at_the_next_unfinished_step(tmp_path: Path) -> None:
    with pytest.raises(StageError):
        Runtime.run(SlBasic, CFG, manifest="test", ports={**local_blobs(tmp_path), "training_client": CrashAfter(7)})
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path))
    resume = next(e for e in resumed.events if e.name == "train.resume")
    first_step = next(e for e in resumed.events if e.name == "train.step")
    assert resume.data["step"] == 6 and first_step.data["step"] == 7


def test_a_finished_run_resumes_to_nothing(tmp_path: Path) -> None:
    Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path))
    before = (tmp_path / "run" / "checkpoints.jsonl").read_text()
    again = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path))
    assert not [e for e in again.events if e.name == "train.step"]
    assert (tmp_path / "run" / "checkpoints.jsonl").read_text() == before
    assert len(before.splitlines()) == 11
