"""Pieces the step-loop recipes (RL, DPO, distillation) share: samplers, checkpoints, resume.

Each saves its training state every ``save_every`` steps with the sampler paths
its resume needs in the record's ``extra``; a run started again with the same
``log_path`` loads the last record and continues at the next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tinkex_cookbook.pipeline.context import Context
from tinkex_cookbook.pipeline.registry import register_stage
from tinkex_cookbook.ports import AdamParams, BlobStore, SamplingClient, TrainingService
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint, load_checkpoints
from tinkex_cookbook.train.schedules import lr_multiplier

CHECKPOINTS = "checkpoints.jsonl"


def adam_params(ctx: Context) -> AdamParams:
    """This step's Adam parameters: the config's peak learning rate scaled by its schedule."""
    cfg: Any = ctx.config
    lr = cfg.learning_rate * lr_multiplier(cfg.lr_schedule, ctx.state["step"], ctx.state["total_steps"],
                                           cfg.warmup_steps)
    return AdamParams(learning_rate=lr, beta1=cfg.adam_beta1, beta2=cfg.adam_beta2, eps=cfg.adam_eps)


def advance_step(ctx: Context, tokens: int, started: float) -> dict[str, float]:
    """Count a finished step and its tokens; return its token and timing metrics."""
    ctx.state["step"] += 1
    ctx.state["tokens_seen"] += tokens
    seconds = time.monotonic() - started
    return {"num_tokens": float(tokens), "tokens_seen": float(ctx.state["tokens_seen"]), "step_seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else 0.0}


def save_sampler(ctx: Context, service: TrainingService, name: str) -> tuple[str, SamplingClient]:
    """The training client's current weights, saved under ``name`` and opened for sampling."""
    path = ctx.need("training_client").save_weights_for_sampler(name).result().path
    return path, service.create_sampling_client(model_path=path)


def last_checkpoint(ctx: Context, blob_store: BlobStore) -> CheckpointRecord | None:
    """Load the run's last checkpoint into the training client and the step counters, if there is one."""
    records = load_checkpoints(blob_store, ctx.artifact_key(CHECKPOINTS))
    if not records:
        return None
    last = records[-1]
    ctx.need("training_client").load_state(last.state_path).result()
    ctx.state.update(step=last.step, start_step=last.step, tokens_seen=last.tokens_seen)
    if last.final:
        ctx.state["start_step"] = ctx.state["num_steps"]
        ctx.state["final_checkpoint"], ctx.state["final_sampler_path"] = last.state_path, last.sampler_path
    ctx.emit("train.resume", step=last.step, checkpoint=last.name, path=last.state_path)
    return last


def save_checkpoint(
    ctx: Context, blob_store: BlobStore, name: str, final: bool, extra: dict[str, str],
    sampler_path: str | None = None,
) -> CheckpointRecord:
    state_path = ctx.need("training_client").save_state(name).result().path
    record = CheckpointRecord(name, ctx.state["step"], 0, state_path, sampler_path, final,
                              ctx.state.get("tokens_seen", 0), extra)
    ctx.telemetry.flush()  # metric rows first: once recorded, a resume starts after this step
    append_checkpoint(blob_store, ctx.artifact_key(CHECKPOINTS), record)
    ctx.emit("train.checkpoint", name=name, step=record.step, path=state_path, final=final)
    return record


def finish(ctx: Context, record: CheckpointRecord) -> None:
    ctx.state["final_checkpoint"], ctx.state["final_sampler_path"] = record.state_path, record.sampler_path


def log_step(ctx: Context) -> None:
    """Emit the step's metrics (``step_metrics``) as a ``train.step`` row."""
    metrics: dict[str, Any] = {"step": ctx.state["step"], "total_steps": ctx.state["total_steps"],
                               **ctx.need("step_metrics")}
    ctx.state["last_metrics"] = metrics
    ctx.emit("train.step", **metrics)


def register_checkpoint_stages(
    prefix: str, extra: Callable[[Context], dict[str, str]], final_sampler: Callable[[Context], str],
) -> None:
    """``<prefix>_checkpoint`` (every ``save_every`` steps) and ``<prefix>_save_final`` (skipped when a
    resumed run had already finished), recording ``extra(ctx)`` for the resume."""

    def checkpoint(ctx: Context, blob_store: BlobStore) -> None:
        save_checkpoint(ctx, blob_store, f"{ctx.state['step']:06d}", False, extra(ctx))

    def save_final(ctx: Context, blob_store: BlobStore) -> None:
        if "final_checkpoint" not in ctx.state:
            finish(ctx, save_checkpoint(ctx, blob_store, "final", True, extra(ctx), final_sampler(ctx)))

    register_stage(f"{prefix}_checkpoint", checkpoint, ("blob_store",))
    register_stage(f"{prefix}_save_final", save_final, ("blob_store",))
