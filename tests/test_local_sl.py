"""Supervised fine-tuning end to end on the `local` manifest: a real (tiny) model on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.faults import crash_on_optim_step, local_blobs, metric_rows
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.training.local_checkpoints import decode_checkpoint
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService

BASE = {
    "model_name": "tiny-llama3", "dataset": "chitchat", "batch_size": 4, "max_length": 96, "lora_rank": 4,
    "learning_rate": 1e-2, "test_size": 8, "train_size": 48, "eval_every": 4, "save_every": 3,
    "log_path": "run",
}


def rows(root: Path) -> list[dict]:
    return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())


def test_local_run_trains_and_leaves_an_inspectable_run_folder(tmp_path: Path) -> None:
    result = Runtime.run(SlBasic, {**BASE, "train_size": 96}, manifest="local", ports=local_blobs(tmp_path))
    losses = [m["train_mean_nll"] for m in result.metrics if m["event"] == "train.step"]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "spec.json", "manifest.json", "metrics.jsonl", "checkpoints.jsonl",
            "run.log", "loss.html"} <= names
    assert result.state["final_checkpoint"].startswith("local://")


class CrashingService(LocalTorchTrainingService):
    """Stops the run when optimizer step ``crash_at`` is submitted, as a killed process would."""

    def __init__(self, blob_store, crash_at: int) -> None:
        super().__init__(blob_store)
        self.crash_at = crash_at

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None):
        return crash_on_optim_step(super().create_lora_training_client(base_model, rank, seed), self.crash_at)


def test_resume_after_a_crash_gives_the_same_weights_and_metrics(tmp_path: Path) -> None:
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    whole = Runtime.run(SlBasic, BASE, manifest="local", ports=local_blobs(tmp_path / "a"))
    crashing = CrashingService(LocalBlobStore(tmp_path / "b"), crash_at=8)
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, BASE, manifest="local", ports={**local_blobs(tmp_path / "b"), "training_client": crashing})
    crashing.close()
    resumed = Runtime.run(SlBasic, BASE, manifest="local", ports=local_blobs(tmp_path / "b"))
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 6
    assert rows(tmp_path / "b") == rows(tmp_path / "a")
    key = whole.state["final_sampler_path"].removeprefix("local://")
    final_a = decode_checkpoint((tmp_path / "a" / key).read_bytes())
    final_b = decode_checkpoint((tmp_path / "b" / resumed.state["final_sampler_path"].removeprefix("local://"))
                                .read_bytes())
    weights_a, weights_b = final_a["lora"], final_b["lora"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_each_step_row_keeps_the_optimizer_steps_gradient_norm(tmp_path: Path) -> None:
    """The backend measures the gradient norm before clipping; the row is where a user sees it."""
    config = {**BASE, "train_size": 8, "test_size": 0, "eval_every": 0, "save_every": 0, "sample_prompts": 0}
    result = Runtime.run(SlBasic, config, manifest="local", ports=local_blobs(tmp_path))
    steps = rows(tmp_path)
    assert [row["step"] for row in steps if row["event"] == "train.step"] == [1, 2]
    for row in (m for m in result.metrics if m["event"] == "train.step"):
        assert row["grad_norm"] > 0 and row["optim_steps"] == row["step"]
    assert all(row["grad_norm"] > 0 for row in steps if row["event"] == "train.step")
