"""Stages of supervised fine-tuning: each a few lines over ports and train/ functions.

Steps are pipelined as tinker-cookbook's submit-ahead loop does: step N's
forward_backward and optim_step are submitted before step N-1's results are
awaited (``pipeline_depth`` steps may be in flight), so a remote backend is
never idle while the loop logs. Evaluation, checkpoints and the final save
first drain what is in flight, so every metric and checkpoint is of finished steps.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.pipeline.context import Context
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import adam_params
from tinkex_cookbook.ports import APIFuture, BlobStore, DatasetStore, Datum, TrainingService
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint, load_checkpoints
from tinkex_cookbook.train.datum import conversations_to_datums, weighted_nll
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer

CHECKPOINTS = "checkpoints.jsonl"


@dataclass
class InFlight:
    """A submitted step whose results have not been read yet."""

    step: int
    epoch: int
    batch_index: int
    learning_rate: float
    batch: list[Datum]
    fwd_bwd: APIFuture[Any]
    optim: APIFuture[Any]


@stage("load_dataset", ports=("dataset_store",))
def load_dataset(ctx: Context, dataset_store: DatasetStore) -> None:
    """Shuffle once with the run's seed, hold out ``test_size`` rows, remember each row's index."""
    cfg: Any = ctx.config
    dataset = dataset_store.load_dataset(cfg.dataset, cfg.dataset_split)
    if len(dataset) <= cfg.test_size:
        raise DatasetError(
            f"dataset {cfg.dataset!r} has {len(dataset)} rows, not more than test_size={cfg.test_size}"
        )
    order = list(range(len(dataset)))
    random.Random(cfg.seed).shuffle(order)
    rows = dataset.select(order).to_list()
    ctx.resources["test_rows"], ctx.resources["test_indices"] = rows[: cfg.test_size], order[: cfg.test_size]
    end = cfg.test_size + cfg.train_size if cfg.train_size else len(rows)
    ctx.resources["train_rows"], ctx.resources["train_indices"] = rows[cfg.test_size : end], order[cfg.test_size : end]


@stage("init_session", ports=("training_client",))
def init_session(ctx: Context, training_client: TrainingService) -> None:
    cfg: Any = ctx.config
    ctx.resources["training_client"] = training_client.create_lora_training_client(
        cfg.model_name, rank=cfg.lora_rank, seed=cfg.seed
    )
    ctx.resources["inflight"] = deque()
    ctx.state.update(step=0, tokens_seen=0)


@stage("init_tokenizer")
def init_tokenizer(ctx: Context) -> None:
    tokenizer = ctx.need("training_client").get_tokenizer()
    ctx.resources["renderer"] = get_renderer(ctx.config.renderer_name, tokenizer)  # type: ignore[attr-defined]


RENDER_CHUNK = 256
"""Rows rendered between two progress updates."""


@stage("build_dataset")
def build_dataset(ctx: Context) -> None:
    cfg: Any = ctx.config
    renderer, mode = ctx.need("renderer"), TrainOnWhat(cfg.train_on_what)
    for split in ("train", "test"):
        rows, indices = ctx.need(f"{split}_rows"), ctx.need(f"{split}_indices")
        datums: list[Datum] = []
        with ctx.task(f"render {split} rows", len(rows)) as task:
            for start in range(0, len(rows), RENDER_CHUNK):
                chunk = rows[start : start + RENDER_CHUNK]
                datums += conversations_to_datums(
                    chunk, renderer, cfg.max_length, mode, cfg.loss_reduction,
                    indices=indices[start : start + RENDER_CHUNK],
                )
                task.advance(len(chunk))
        ctx.resources[f"{split}_datums"] = datums
    train = ctx.resources["train_datums"]
    if len(train) < cfg.batch_size:
        raise DatasetError(f"{len(train)} training rows is fewer than batch_size={cfg.batch_size}")
    ctx.state["num_batches"] = len(train) // cfg.batch_size
    ctx.state["total_steps"] = ctx.state["num_batches"] * cfg.num_epochs


@stage("resume", ports=("blob_store",))
def resume(ctx: Context, blob_store: BlobStore) -> None:
    """Continue from the run's last checkpoint, at exactly the next unfinished step."""
    records = load_checkpoints(blob_store, ctx.artifact_key(CHECKPOINTS))
    if not records:
        return
    last = records[-1]
    ctx.need("training_client").load_state(last.state_path).result()
    num_batches = ctx.state["num_batches"]
    # the epoch too: resumed after the last step, no epoch loop runs to set it for the final record
    ctx.state.update(step=last.step, tokens_seen=last.tokens_seen, epoch=last.epoch)
    ctx.state["start_epoch"], ctx.state["start_batch"] = divmod(last.step, num_batches)
    if last.final:
        ctx.state["start_epoch"] = ctx.config.num_epochs  # type: ignore[attr-defined]
        ctx.state["final_checkpoint"], ctx.state["final_sampler_path"] = last.state_path, last.sampler_path
    ctx.emit("train.resume", step=last.step, checkpoint=last.name, path=last.state_path)


@stage("set_epoch")
def set_epoch(ctx: Context) -> None:
    """Shuffle the training datums with a seed that depends on the epoch, reproducibly."""
    epoch = ctx.state["epoch"]
    order = list(range(len(ctx.need("train_datums"))))
    random.Random(ctx.config.seed + epoch).shuffle(order)  # type: ignore[attr-defined]
    ctx.resources["epoch_order"] = order
    ctx.emit("train.epoch", epoch=epoch, num_batches=ctx.state["num_batches"])


@stage("get_batch")
def get_batch(ctx: Context) -> None:
    size = ctx.config.batch_size  # type: ignore[attr-defined]
    start = ctx.state["batch"] * size
    indices = ctx.need("epoch_order")[start : start + size]
    ctx.resources["batch"] = [ctx.need("train_datums")[i] for i in indices]


@stage("forward_backward")
def forward_backward(ctx: Context) -> None:
    ctx.resources["fwd_bwd"] = ctx.need("training_client").forward_backward(ctx.need("batch"), "cross_entropy")


@stage("optim_step")
def optim_step(ctx: Context) -> None:
    """Submit the optimizer step; its results are read later, by ``log_step_metrics``."""
    step, params = ctx.state["step"], adam_params(ctx)
    optim = ctx.need("training_client").optim_step(params)
    ctx.resources.setdefault("last_finished", time.monotonic())
    ctx.need("inflight").append(
        InFlight(step + 1, ctx.state["epoch"], ctx.state["batch"], params.learning_rate, ctx.need("batch"), ctx.need("fwd_bwd"), optim)
    )
    ctx.state["step"] = step + 1


def _finish(ctx: Context, done: InFlight) -> None:
    result = done.fwd_bwd.result()
    done.optim.result()
    now = time.monotonic()
    seconds, ctx.resources["last_finished"] = now - ctx.resources["last_finished"], now
    nll_sum, weight_sum = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], done.batch)
    tokens = sum(d.model_input.length for d in done.batch)
    ctx.state["tokens_seen"] += tokens
    metrics = {
        "step": done.step, "total_steps": ctx.state["total_steps"], "epoch": done.epoch,
        "batch": done.batch_index, "learning_rate": done.learning_rate,
        "train_mean_nll": nll_sum / max(weight_sum, 1e-9), "num_sequences": len(done.batch),
        "num_tokens": tokens, "num_loss_tokens": weight_sum, "tokens_seen": ctx.state["tokens_seen"],
        "step_seconds": seconds, "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        **{k: float(v) for k, v in result.metrics.items()},
    }
    ctx.state["last_metrics"] = metrics
    ctx.emit("train.step", **metrics)


def drain(ctx: Context, keep: int = 0) -> None:
    """Read results of submitted steps, oldest first, until at most ``keep`` remain in flight."""
    inflight = ctx.need("inflight")
    while len(inflight) > keep:
        _finish(ctx, inflight.popleft())


@stage("log_step_metrics")
def log_step_metrics(ctx: Context) -> None:
    drain(ctx, keep=ctx.config.pipeline_depth)  # type: ignore[attr-defined]


def held_out_nll(ctx: Context) -> float | None:
    """Mean NLL of the held-out datums under the current weights (``None`` with no held-out rows)."""
    drain(ctx)
    data = ctx.need("test_datums")
    if not data:
        return None
    with ctx.task("evaluate", len(data)) as task:
        result = ctx.need("training_client").forward(data, "cross_entropy").result()
        task.advance(len(data))
    nll_sum, weight_sum = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], data)
    return nll_sum / max(weight_sum, 1e-9)


@stage("evaluate_at_end")
def evaluate_at_end(ctx: Context) -> None:
    """``evaluate`` after the last step: the final NLL is a metrics row recorded before that step's
    checkpoint, like every other evaluation."""
    if ctx.state["step"] == ctx.state["total_steps"]:
        evaluate(ctx)


@stage("evaluate")
def evaluate(ctx: Context) -> None:
    """The held-out NLL as a ``train.eval`` row; once per step (a step due by ``eval_every`` that
    ``evaluate_at_end`` already measured is not measured again)."""
    if ctx.state.get("last_eval", {}).get("step") == ctx.state["step"]:
        return
    nll = held_out_nll(ctx)
    if nll is None:
        return
    metrics = {"step": ctx.state["step"], "test_mean_nll": nll}
    ctx.state["last_eval"] = metrics
    ctx.emit("train.eval", **metrics)


def _save(ctx: Context, blob_store: BlobStore, name: str, final: bool) -> CheckpointRecord:
    drain(ctx)
    client = ctx.need("training_client")
    state_path = client.save_state(name).result().path
    sampler_path = client.save_weights_for_sampler(name).result().path if final else None
    record = CheckpointRecord(
        name, ctx.state["step"], ctx.state.get("epoch", 0), state_path, sampler_path, final,
        ctx.state["tokens_seen"],
    )
    ctx.telemetry.flush()  # metric rows first: once recorded, a resume starts after this step
    append_checkpoint(blob_store, ctx.artifact_key(CHECKPOINTS), record)
    ctx.emit("train.checkpoint", name=name, step=record.step, path=state_path, final=final)
    return record


@stage("checkpoint", ports=("blob_store",))
def checkpoint(ctx: Context, blob_store: BlobStore) -> None:
    _save(ctx, blob_store, f"{ctx.state['step']:06d}", final=False)


@stage("save_final", ports=("blob_store",))
def save_final(ctx: Context, blob_store: BlobStore) -> None:
    """Save final weights, unless a resumed run had already finished and saved them."""
    if "final_checkpoint" in ctx.state:
        return
    record = _save(ctx, blob_store, "final", final=True)
    ctx.state["final_checkpoint"] = record.state_path
    ctx.state["final_sampler_path"] = record.sampler_path
