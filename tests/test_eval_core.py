"""Evaluation tasks: during training for every recipe (``evals=``), and on their own (``Runtime.eval(tasks=...)``
and ``tinkex-cookbook eval``), on the deterministic ``test`` manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tinkex_cookbook import ConfigError, Runtime
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.cli import app
from tinkex_cookbook.eval import EvalReport, EvalTask, pass_at_k, resolve_task, resolve_tasks
from tinkex_cookbook.recipes import get_recipe, parse_config
from tests.test_spec_data_flow import CONFIGS

EVALS = ["chitchat_nll", {"task": "arithmetic", "limit": 4, "max_tokens": 8}]


def _eval_rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in metrics if "chitchat_nll/nll" in row]


@pytest.mark.parametrize("recipe", sorted(CONFIGS))
def test_every_recipe_runs_evals_before_between_and_after_training(recipe: str) -> None:
    store = MemoryBlobStore()
    cfg = {"renderer_name": "role_colon", **CONFIGS[recipe][0], "evals": EVALS, "log_path": f"runs/{recipe}"}
    result = Runtime.run(recipe, cfg, manifest="test", ports={"blob_store": store})
    rows = _eval_rows(result.metrics)
    last_step = result.state["step"]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == last_step, rows
    assert {"arithmetic/reward", "arithmetic/accuracy", "chitchat_nll/perplexity"} <= set(rows[0])
    for row in rows:
        records = store.read(f"runs/{recipe}/evals/chitchat_nll/{row['step']:06d}.jsonl").decode().splitlines()
        assert len(records) == row["chitchat_nll/examples"] and "nll" in json.loads(records[0])
    saved = [json.loads(line) for line in store.read(f"runs/{recipe}/metrics.jsonl").decode().splitlines()]
    assert _eval_rows(saved) == rows
    assert "evals" in result.artifacts


def test_evals_run_every_eval_every_steps_and_each_step_once() -> None:
    cfg = {"renderer_name": "role_colon", "batch_size": 8, "eval_every": 2, "evals": ["chitchat_nll"]}
    result = Runtime.run("sl_basic", cfg, manifest="test")
    steps = [row["step"] for row in _eval_rows(result.metrics)]
    assert steps == [0, 2, 4, 6, 8]
    nlls = [row["chitchat_nll/nll"] for row in _eval_rows(result.metrics)]
    assert nlls == sorted(nlls, reverse=True)  # the noop model sharpens as it trains


def test_a_resumed_finished_run_does_not_evaluate_again() -> None:
    store = MemoryBlobStore()
    cfg = {"renderer_name": "role_colon", "batch_size": 8, "evals": ["chitchat_nll"], "log_path": "runs/r"}
    first = Runtime.run("sl_basic", cfg, manifest="test", ports={"blob_store": store})
    again = Runtime.run("sl_basic", cfg, manifest="test", ports={"blob_store": store})
    assert _eval_rows(first.metrics) and not _eval_rows(again.metrics)


@pytest.mark.parametrize(("evals", "message"), [
    (["chitchat_nl"], "chitchat_nll"),  # did you mean
    ([{"task": "arithmetic", "limt": 3}], "'limt'"),
    ([{"name": "mine", "evaluator": "generation"}], "'dataset' is required"),
    ([{"name": "mine", "evaluator": "nosuch", "dataset": "x"}], "nosuch"),
    (["chitchat_nll", "chitchat_nll"], "given twice"),
    ([{"evaluator": "nll"}], "needs 'task'"),
])
def test_a_bad_task_is_a_config_error_before_any_work(evals: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match="evals") as caught:
        parse_config(get_recipe("sl_basic").Config, {"evals": evals})
    assert message in str(caught.value)


def test_evals_from_the_command_line_are_comma_separated_names() -> None:
    config = parse_config(get_recipe("rl_basic").Config, ["evals=chitchat_nll,arithmetic"])
    assert config.model_dump()["evals"] == ["chitchat_nll", "arithmetic"]


def test_a_task_is_a_name_a_changed_copy_or_a_task_of_its_own() -> None:
    assert resolve_task("arithmetic").evaluator == "rl_reward"
    changed = resolve_task({"task": "arithmetic", "limit": 3, "name": "arith3"})
    assert changed.name == "arith3" and changed.config["limit"] == 3 and changed.config["env"] == "arithmetic"
    own = resolve_task({"name": "qa", "evaluator": "generation", "dataset": "x.jsonl", "grader": "numeric"})
    assert own == EvalTask(name="qa", evaluator="generation", config={"dataset": "x.jsonl", "grader": "numeric"})
    assert [t.name for t in resolve_tasks("chitchat_nll, arithmetic")] == ["chitchat_nll", "arithmetic"]


def test_standalone_eval_of_a_model_writes_an_evaluation_folder() -> None:
    store = MemoryBlobStore()
    report = Runtime.eval(tasks=["chitchat_nll", "preference_pairs"], model="tiny-llama3", manifest="test",
                          ports={"blob_store": store}, eval_dir="evals/mine")
    assert isinstance(report, EvalReport) and report.uri == "memory://evals/mine"
    assert report.labels == ["tiny-llama3"]
    keys = set(store.list("evals/mine/"))
    assert {"evals/mine/summary.json", "evals/mine/report.html", "evals/mine/eval.json", "evals/mine/summary.txt",
            "evals/mine/records/chitchat_nll/tiny-llama3.jsonl"} <= keys
    summary = json.loads(store.read("evals/mine/summary.json"))
    assert summary["chitchat_nll"]["tiny-llama3"]["nll"] == report.metric("chitchat_nll", "tiny-llama3")
    assert "chitchat_nll" in store.read("evals/mine/summary.txt").decode()


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_samples() -> None:
    tasks = [{"task": "arithmetic", "limit": 6, "temperature": 1.0, "num_samples": 4, "max_tokens": 6}]

    def measure(seed: int) -> tuple[dict[str, float], list[Any]]:
        report = Runtime.eval(tasks=tasks, model="tiny-llama3", manifest="test", seed=seed)
        result = report.result("arithmetic", "tiny-llama3")
        return result.metrics, [r["replies"] for r in result.records]

    assert measure(3) == measure(3)
    assert measure(3)[1] != measure(4)[1]


def test_a_run_is_evaluated_beside_its_base_model_and_its_folder_is_left_as_it_was(tmp_path: Path) -> None:
    ports = {"blob_store": {"adapter": "local", "root": str(tmp_path)}}
    cfg = {"renderer_name": "role_colon", "batch_size": 8, "save_every": 4, "log_path": "sl/run1"}
    Runtime.run("sl_basic", cfg, manifest="test", ports=ports)
    before = sorted(p.relative_to(tmp_path / "sl/run1") for p in (tmp_path / "sl/run1").rglob("*"))
    report = Runtime.eval(tasks=["chitchat_nll"], run=str(tmp_path / "sl/run1"), checkpoints=["000004", "final"],
                          manifest="test", ports=ports, eval_dir="evals/e1")
    assert report.labels == ["base", "000004", "final"]
    nll = [report.metric("chitchat_nll", label) for label in report.labels]
    assert nll[0] > nll[1] > nll[2]
    assert "-" in report.table().splitlines()[-1]  # the change column: training lowered the NLL
    page = (tmp_path / "evals/e1/report.html").read_text()
    assert all(label in page for label in ("base", "000004", "final"))
    after = sorted(p.relative_to(tmp_path / "sl/run1") for p in (tmp_path / "sl/run1").rglob("*"))
    assert before == after


def test_eval_needs_a_model_or_a_run_and_not_both() -> None:
    with pytest.raises(ConfigError, match="not both and not neither"):
        Runtime.eval(tasks=["chitchat_nll"], manifest="test")
    with pytest.raises(ConfigError, match="not both"):
        Runtime.eval("sl_basic", {}, tasks=["chitchat_nll"], manifest="test")  # type: ignore[call-overload]


def test_the_eval_command_prints_a_table_and_where_the_folder_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "--list-tasks"])
    assert listed.exit_code == 0 and "chitchat_nll" in listed.output
    result = runner.invoke(app, ["eval", "--model", "tiny-llama3", "--manifest", "test", "--tasks",
                                 '[{"task": "arithmetic", "limit": 2, "max_tokens": 4}]', "--quiet"])
    assert result.exit_code == 0, result.output
    assert "arithmetic" in result.output and "evaluation: memory://evals/" in result.output
    bad = runner.invoke(app, ["eval", "--model", "tiny-llama3", "--manifest", "test", "--tasks", "nosuch"])
    assert bad.exit_code == 2 and "unknown evaluation task 'nosuch'" in bad.output


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_a_probability_that_grows_with_k_and_with_correct_samples(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert value == (0.0 if c == 0 else value)
    if k < n:
        assert pass_at_k(n, c, k + 1) >= value - 1e-12
    if c < n:
        assert pass_at_k(n, c + 1, k) >= value - 1e-12
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)
