"""The RL recipes end to end: every metric on `test`, learning and exact resume on `local`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faults import crashing_local_service, local_blobs, metric_rows
from tinkex_cookbook import MathRl, RlBasic, Runtime, StageError
from tinkex_cookbook.errors import ConfigError

STEP_METRICS = {
    "step", "total_steps", "reward_mean", "reward_std", "num_trajectories", "ac_tokens_per_turn", "entropy",
    "groups_skipped", "num_datums", "learning_rate", "kl_sample_train", "num_tokens", "tokens_seen",
    "step_seconds", "sample_seconds", "tokens_per_second",
}
SMALL = {"num_steps": 3, "batch_size": 2, "group_size": 4, "max_tokens": 8, "save_every": 2, "log_path": "rl"}


def steps(result: Any) -> list[dict[str, Any]]:
    return [m for m in result.metrics if m["event"] == "train.step"]


@pytest.mark.parametrize(("env", "extra"), [
    ("digits", {"env/digit_share"}),
    ("arithmetic", {"env/correct", "env/format"}),
])
def test_rl_spec_runs_on_test_and_emits_every_metric(env: str, extra: set[str]) -> None:
    result = Runtime.run(RlBasic, {**SMALL, "env": env, "renderer_name": "role_colon"}, manifest="test")
    rows = steps(result)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(STEP_METRICS | extra <= row.keys() for row in rows)
    assert result.state["final_checkpoint"].startswith("noop://")
    assert [e.data["step"] for e in result.events if e.name == "train.checkpoint"] == [2, 3]


def test_math_rl_grades_the_shipped_word_problems(tmp_path: Path) -> None:
    cfg = {**SMALL, "renderer_name": "role_colon", "kl_penalty_coef": 0.05, "loss_fn": "ppo"}
    result = Runtime.run(MathRl, cfg, manifest="test", ports={"dataset_store": {"adapter": "local",
                                                                                "root": str(tmp_path)}})
    rows = steps(result)
    assert len(rows) == 3 and all({"env/correct", "env/format", "kl_policy_base"} <= r.keys() for r in rows)
    assert all(-0.1 - 1e-9 <= r["reward_mean"] <= 1.0 for r in rows)


@pytest.mark.parametrize(("eval_every", "measured"), [(10, [0, 3]), (3, [0, 3]), (2, [0, 2, 3]), (0, [0, 3])])
def test_rl_measures_rewards_after_the_last_step_once(tmp_path: Path, eval_every: int, measured: list[int]) -> None:
    cfg = {**SMALL, "renderer_name": "role_colon", "eval_every": eval_every, "transcript_every": 0}

    def evals() -> list[dict[str, Any]]:
        lines = (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()
        return [r for r in metric_rows(lines) if r["event"] == "train.eval"]

    Runtime.run(RlBasic, cfg, manifest="test", ports=local_blobs(tmp_path))
    assert [r["step"] for r in evals()] == measured and all("test_reward_mean" in r for r in evals())
    again = Runtime.run(RlBasic, cfg, manifest="test", ports=local_blobs(tmp_path))  # a finished run
    assert not [e for e in again.events if e.name in ("train.step", "train.eval")]
    assert [r["step"] for r in evals()] == measured


def test_problems_env_says_in_run_log_what_it_read(tmp_path: Path) -> None:
    cfg = {**SMALL, "num_steps": 1, "renderer_name": "role_colon", "transcript_every": 0}
    result = Runtime.run(MathRl, cfg, manifest="test", ports=local_blobs(tmp_path))
    event = next(e.data for e in result.events if e.name == "train.dataset")
    assert event["dataset"] == "math_word_problems" and event["rows"] > 0
    assert (event["question_field"], event["answer_field"]) == ("question", "answer")
    line = next(x for x in (tmp_path / "rl" / "run.log").read_text().splitlines() if "train.dataset" in x)
    assert "dataset=math_word_problems" in line and f"rows={event['rows']}" in line and "answer_field=answer" in line


def test_bad_rl_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="grader"):
        Runtime.run(RlBasic, {"grader": "vibes"}, manifest="test")
    with pytest.raises(ConfigError, match="env"):
        Runtime.run(RlBasic, {"env": "chess"}, manifest="test")


pytest.importorskip("torch")

# one torch thread per worker: off-policy runs sample and train at once on a 2-core machine
ONE_THREAD = {"training_client": {"adapter": "local_torch", "threads": 1}}
LOCAL = {"model_name": "tiny-bytes", "env": "digits", "batch_size": 4, "group_size": 8, "max_tokens": 8,
         "learning_rate": 2e-2, "lora_rank": 8, "log_path": "rl"}


def blob(root: Path) -> dict[str, Any]:
    return {"blob_store": {"adapter": "local", "root": str(root)}, **ONE_THREAD}


def test_mean_reward_rises_on_the_dense_toy_env(tmp_path: Path) -> None:
    result = Runtime.run(RlBasic, {**LOCAL, "num_steps": 10, "save_every": 0}, manifest="local", ports=blob(tmp_path))
    rewards = [r["reward_mean"] for r in steps(result)]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.3, rewards


@pytest.mark.parametrize("off_policy", [0, 1])
def test_resume_after_a_crash_continues_with_the_same_numbers(tmp_path: Path, off_policy: int) -> None:
    cfg = {**LOCAL, "num_steps": 5, "save_every": 2, "off_policy_steps": off_policy}
    Runtime.run(RlBasic, cfg, manifest="local", ports=blob(tmp_path / "a"))
    crashing = crashing_local_service(tmp_path / "b", crash_at=4)
    with pytest.raises(StageError, match="killed"):
        Runtime.run(RlBasic, cfg, manifest="local", ports={**blob(tmp_path / "b"), "training_client": crashing})
    crashing.close()
    resumed = Runtime.run(RlBasic, cfg, manifest="local", ports=blob(tmp_path / "b"))
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 2

    def rows(root: Path) -> list[dict[str, Any]]:
        lines = (root / "rl" / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in r.items() if k not in ("sample_seconds",)} for r in metric_rows(lines)]

    assert rows(tmp_path / "b") == rows(tmp_path / "a")
