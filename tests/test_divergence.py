"""A step whose loss or gradient norm is NaN or infinite stops every recipe with ``TrainingDivergedError``, before
that step is checkpointed, and ``metrics.jsonl`` stays strict JSON (the value recorded as ``null``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faults import Diverging, local_blobs
from tinkex_cookbook import Distillation, Dpo, RlBasic, Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.errors import StageError, TrainingDivergedError
from tinkex_cookbook.pipeline.telemetry import Event, JsonlMetricsSink, finite_or_null
from tinkex_cookbook.ports import ResolvedFuture

REPO = Path(__file__).resolve().parents[1]
AT = 3
"""The optimizer step that diverges."""
RECIPES: dict[str, tuple[Any, dict[str, Any]]] = {
    "sl": (SlBasic, {"num_epochs": 2}),
    "sl, pipelined": (SlBasic, {"num_epochs": 2, "pipeline_depth": 2}),
    "rl": (RlBasic, {"num_steps": 5, "batch_size": 2, "group_size": 2, "max_tokens": 8,
                     "remove_constant_reward_groups": False}),  # every step trains
    "dpo": (Dpo, {"renderer_name": "role_colon", "batch_size": 4, "test_size": 8}),
    "distillation": (Distillation, {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon",
                                    "num_steps": 5, "batch_size": 2, "group_size": 2, "max_tokens": 8}),
}


def strict_rows(path: Path) -> list[dict[str, Any]]:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("recipe", RECIPES, ids=list(RECIPES))
def test_a_diverged_step_stops_the_run_unsaved_and_metrics_stay_json(
    tmp_path: Path, recipe: str, value: float
) -> None:
    cls, cfg = RECIPES[recipe]
    cfg = {**cfg, "save_every": 1, "eval_every": 0, "log_path": "run", "learning_rate": 1e-3}
    with pytest.raises(StageError) as raised:
        Runtime.run(cls, cfg, manifest="test", ports={**local_blobs(tmp_path), "training_client": Diverging(AT, value)})
    cause = raised.value.__cause__
    assert isinstance(cause, TrainingDivergedError)
    message = str(cause)
    assert message.startswith(f"training diverged at step {AT} at learning_rate 0.001: grad_norm is {value}. ")
    assert f"its last checkpoint is step {AT - 1}" in message and "Run folder: run" in message
    assert "learning_rate=0.0001 log_path=NEW" in message
    records = strict_rows(tmp_path / "run" / "checkpoints.jsonl")
    assert [r["step"] for r in records] == list(range(1, AT)) and not any(r["final"] for r in records)
    steps = [r for r in strict_rows(tmp_path / "run" / "metrics.jsonl") if r["event"] == "train.step"]
    assert [r["step"] for r in steps] == list(range(1, AT + 1))
    assert steps[-1]["grad_norm"] is None and all(isinstance(r["grad_norm"], float) for r in steps[:-1])


def test_a_non_finite_loss_stops_the_run_too(tmp_path: Path) -> None:
    """The loss, not only the gradient norm: here the backend's ``loss:sum`` of step 2."""

    class InfiniteLoss(NoopTrainingService):
        def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
            client = super().create_lora_training_client(base_model, rank, seed)
            real = client.forward_backward

            def forward_backward(data: Any, loss_fn: str, loss_fn_config: Any = None) -> Any:
                output = real(data, loss_fn, loss_fn_config).result()
                if client.state.optim_steps == 1:
                    output = dataclasses.replace(output, metrics={"loss:sum": math.inf})
                return ResolvedFuture(output)

            client.forward_backward = forward_backward
            return client

    with pytest.raises(StageError, match=r"TrainingDivergedError: training diverged at step 2 .*loss:sum is inf"):
        Runtime.run(SlBasic, {"save_every": 1, "log_path": "run"}, manifest="test",
                    ports={**local_blobs(tmp_path), "training_client": InfiniteLoss()})
    assert [r["step"] for r in strict_rows(tmp_path / "run" / "checkpoints.jsonl")] == [1]


def test_the_metrics_sink_writes_non_finite_values_as_null() -> None:
    store = MemoryBlobStore()
    sink = JsonlMetricsSink(store, "m.jsonl")
    sink.handle(Event("train.eval", {"step": 1, "a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}}))
    sink.close()
    assert store.read("m.jsonl") == b'{"a": null, "b": [null, 1.5], "c": {"d": null}, "event": "train.eval", "step": 1}\n'
    assert finite_or_null((1, "x", 2.5, True)) == [1, "x", 2.5, True]


def test_the_cli_prints_the_error_and_the_command_that_reruns_with_a_lower_rate(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TINKEX_", "TINKER_"))},
           "PYTHONPATH": str(REPO), "TINKEX_PORTS__BLOB_STORE__ADAPTER": "local",
           "TINKEX_PORTS__BLOB_STORE__ROOT": str(tmp_path), "TINKEX_PORTS__TRAINING_CLIENT__ADAPTER": "diverging"}
    args = ["run", "sl_basic", "--manifest", "test", "learning_rate=0.01", "save_every=1", "log_path=lr"]
    done = subprocess.run([sys.executable, "-W", "error", "-m", "tests.diverge_child", *args, "-q"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    error, retry = done.stderr.splitlines()[-2:]
    assert error.startswith("error: stage '") and (
        "failed: TrainingDivergedError: training diverged at step 2 at learning_rate 0.01: grad_norm is nan." in error)
    assert retry == ("retry: tinkex-cookbook run sl_basic --manifest test save_every=1 learning_rate=0.001 "
                     "log_path=NEW_FOLDER")
    assert [r["step"] for r in strict_rows(tmp_path / "lr" / "checkpoints.jsonl")] == [1]


def test_the_suggested_rate_of_an_absurd_one_is_a_usual_one() -> None:
    from tinkex_cookbook.pipeline.divergence import divergence_error

    error = divergence_error(2, {"grad_norm": math.nan}, 1e30, None, "runs/x")
    assert "learning_rate=0.001 log_path=NEW_FOLDER" in str(error)
