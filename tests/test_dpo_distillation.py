"""DPO and distillation end to end: every metric on `test`, learning and resume on `local`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.faults import crashing_local_service, local_blobs, metric_rows
from tinkex_cookbook import Distillation, Dpo, Runtime, StageError
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.train.dpo import dpo_loss

DPO_METRICS = {"dpo_loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "num_pairs", "learning_rate",
               "num_tokens", "tokens_seen", "step_seconds", "tokens_per_second"}
DISTILL_METRICS = {"teacher_kl", "entropy", "num_datums", "ac_tokens_per_turn", "learning_rate", "num_tokens",
                   "tokens_seen", "step_seconds", "tokens_per_second"}


def steps(result: Any, event: str = "train.step") -> list[dict[str, Any]]:
    return [m for m in result.metrics if m["event"] == event]


@given(st.lists(st.tuples(st.floats(-3, 0), st.floats(-3, 0), st.floats(-3, 0), st.floats(-3, 0)), min_size=1,
                max_size=6), st.floats(0.01, 1.0))
def test_dpo_gradient_matches_finite_differences(pairs: list[tuple[float, ...]], beta: float) -> None:
    """One token per side: the analytic gradient of the loss equals a central difference."""
    policy = [np.array([v], np.float64) for pc, pr, _, _ in pairs for v in (pc, pr)]
    reference = [np.array([v], np.float64) for _, _, rc, rr in pairs for v in (rc, rr)]
    weights = [np.ones(1)] * len(policy)
    _, grads, _ = dpo_loss(policy, reference, weights, beta)
    for i in range(len(policy)):
        bumped = [p.copy() for p in policy]
        bumped[i] += 1e-4
        up = dpo_loss(bumped, reference, weights, beta)[0]
        bumped[i] -= 2e-4
        down = dpo_loss(bumped, reference, weights, beta)[0]
        assert grads[i][0] == pytest.approx((up - down) / 2e-4, abs=1e-5)


def test_dpo_runs_on_test_and_emits_every_metric() -> None:
    cfg = {"renderer_name": "role_colon", "batch_size": 4, "test_size": 8, "eval_every": 2, "save_every": 2,
           "log_path": "dpo"}
    result = Runtime.run(Dpo, cfg, manifest="test", ports={"dataset_store": {"adapter": "local", "root": "."}})
    rows = steps(result)
    assert rows and all(DPO_METRICS <= r.keys() for r in rows)
    assert rows[0]["accuracy"] == 0.0 and rows[0]["dpo_loss"] == pytest.approx(np.log(2))  # policy == reference
    assert all({"test_accuracy", "test_dpo_loss"} <= e.keys() for e in steps(result, "train.eval"))
    assert result.state["final_checkpoint"].startswith("noop://")


def test_distillation_runs_on_test_in_both_modes() -> None:
    base = {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon", "num_steps": 3,
            "batch_size": 2, "group_size": 2, "max_tokens": 8, "eval_every": 2, "save_every": 2, "log_path": "d"}
    on = Runtime.run(Distillation, base, manifest="test")
    assert all(DISTILL_METRICS <= r.keys() for r in steps(on))
    assert [e["step"] for e in steps(on, "train.eval")] == [0, 2, 3]  # and after the last step
    off = Runtime.run(Distillation, {**base, "mode": "off_policy"}, manifest="test")
    assert all("train_mean_nll" in r for r in steps(off))


def eval_steps(root: Path, folder: str) -> list[int]:
    lines = (root / folder / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in metric_rows(lines) if r["event"] == "train.eval"]


@pytest.mark.parametrize(("num_steps", "eval_every", "measured"), [(3, 5, [0, 3]), (4, 2, [0, 2, 4]), (3, 0, [0, 3])])
def test_distillation_measures_the_kl_after_the_last_step_once(
    tmp_path: Path, num_steps: int, eval_every: int, measured: list[int]
) -> None:
    cfg = {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon", "num_steps": num_steps,
           "batch_size": 2, "max_tokens": 4, "eval_every": eval_every, "save_every": 2, "log_path": "d"}
    Runtime.run(Distillation, cfg, manifest="test", ports=local_blobs(tmp_path))
    assert eval_steps(tmp_path, "d") == measured
    again = Runtime.run(Distillation, cfg, manifest="test", ports=local_blobs(tmp_path))  # a finished run
    assert not [e for e in again.events if e.name in ("train.step", "train.eval")]
    assert eval_steps(tmp_path, "d") == measured


@pytest.mark.parametrize("eval_every", [2, 3, 0])
def test_dpo_evaluates_after_the_last_step_once(tmp_path: Path, eval_every: int) -> None:
    cfg = {"renderer_name": "role_colon", "batch_size": 8, "test_size": 8, "eval_every": eval_every,
           "save_every": 2, "dataset_split": "test", "log_path": "dpo"}
    store = {"dataset_store": {"adapter": "local", "root": "."}, **local_blobs(tmp_path)}
    result = Runtime.run(Dpo, cfg, manifest="test", ports=store)
    total = result.state["total_steps"]
    measured = sorted({*(range(eval_every, total + 1, eval_every) if eval_every else []), total})
    assert eval_steps(tmp_path, "dpo") == measured and measured[-1] == total
    again = Runtime.run(Dpo, cfg, manifest="test", ports=store)  # a finished run
    assert not [e for e in again.events if e.name in ("train.step", "train.eval")]
    assert eval_steps(tmp_path, "dpo") == measured


def test_distillation_config_names_the_teacher_fields() -> None:
    with pytest.raises(ConfigError, match="teacher_model"):
        Runtime.run(Distillation, {}, manifest="test")
    with pytest.raises(ConfigError, match="off_policy"):
        Runtime.run(Distillation, {"teacher": "llm"}, manifest="test")


pytest.importorskip("torch")


def local(root: Path) -> dict[str, Any]:
    return {"blob_store": {"adapter": "local", "root": str(root)},
            "training_client": {"adapter": "local_torch", "threads": 1}}


DPO_LOCAL = {"model_name": "tiny-bytes", "batch_size": 8, "test_size": 16, "eval_every": 0, "lora_rank": 8,
             "learning_rate": 2e-2, "log_path": "dpo"}


def test_dpo_accuracy_on_training_pairs_rises_above_half(tmp_path: Path) -> None:
    result = Runtime.run(Dpo, {**DPO_LOCAL, "num_epochs": 1, "save_every": 0}, manifest="local", ports=local(tmp_path))
    accuracy = [r["accuracy"] for r in steps(result)]
    assert accuracy[0] == 0.0
    assert np.mean(accuracy[-5:]) > 0.5, accuracy


def test_dpo_resumes_after_a_crash_with_the_same_metrics(tmp_path: Path) -> None:
    cfg = {**DPO_LOCAL, "save_every": 3, "dataset_split": "test", "test_size": 8}  # 32 pairs: 4 steps
    Runtime.run(Dpo, cfg, manifest="local", ports=local(tmp_path / "a"))
    service = crashing_local_service(tmp_path / "b", crash_at=4)
    with pytest.raises(StageError, match="killed"):
        Runtime.run(Dpo, cfg, manifest="local", ports={**local(tmp_path / "b"), "training_client": service})
    service.close()
    resumed = Runtime.run(Dpo, cfg, manifest="local", ports=local(tmp_path / "b"))
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 3
    def read(root: Path) -> list[dict[str, Any]]:
        return metric_rows((root / "dpo" / "metrics.jsonl").read_text().splitlines())

    assert read(tmp_path / "b") == read(tmp_path / "a")


def test_distillation_reduces_the_student_teacher_kl(tmp_path: Path) -> None:
    """The teacher: tiny-bytes after a short SL run on chitchat; the student: a fresh tiny-bytes."""
    from tinkex_cookbook import SlBasic

    teacher = Runtime.run(SlBasic, {
        "model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 8, "max_length": 128, "lora_rank": 8,
        "learning_rate": 2e-2, "train_size": 80, "test_size": 0, "save_every": 0, "eval_every": 0,
        "log_path": "teacher"}, manifest="local", ports=local(tmp_path))
    result = Runtime.run(Distillation, {
        "model_name": "tiny-bytes", "teacher_path": teacher.state["final_sampler_path"], "num_steps": 8,
        "batch_size": 4, "group_size": 2, "max_tokens": 16, "learning_rate": 2e-2, "lora_rank": 8, "eval_every": 4,
        "save_every": 4, "log_path": "student"}, manifest="local", ports=local(tmp_path))
    kls = [e["eval_teacher_kl"] for e in steps(result, "train.eval")]
    assert len(kls) == 3 and kls[-1] < kls[0] * 0.6, kls


def test_distillation_resumes_after_a_crash_with_the_same_metrics(tmp_path: Path) -> None:
    cfg = {"model_name": "tiny-bytes", "teacher_model": "tiny-bytes", "num_steps": 4, "batch_size": 2,
           "group_size": 2, "max_tokens": 6, "learning_rate": 2e-2, "lora_rank": 4, "eval_every": 2,
           "save_every": 2, "log_path": "student"}
    Runtime.run(Distillation, cfg, manifest="local", ports=local(tmp_path / "a"))
    service = crashing_local_service(tmp_path / "b", crash_at=3)
    with pytest.raises(StageError, match="killed"):
        Runtime.run(Distillation, cfg, manifest="local", ports={**local(tmp_path / "b"), "training_client": service})
    service.close()
    resumed = Runtime.run(Distillation, cfg, manifest="local", ports=local(tmp_path / "b"))
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 2
    def read(root: Path) -> list[dict[str, Any]]:
        lines = (root / "student" / "metrics.jsonl").read_text().splitlines()
        return [r for r in metric_rows(lines) if r["event"] == "train.step"]

    assert read(tmp_path / "b") == read(tmp_path / "a")
