"""Stages of supervised fine-tuning: each a few lines over ports and train/ functions."""

from __future__ import annotations

import random
import time
from typing import Any

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.pipeline.context import Context
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.ports import AdamParams, BlobStore, DatasetStore, TrainingService
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint
from tinkex_cookbook.train.datum import conversations_to_datums, weighted_nll
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer
from tinkex_cookbook.train.schedules import lr_multiplier

CHECKPOINTS = "checkpoints.jsonl"


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
    ctx.resources["train_rows"], ctx.resources["train_indices"] = rows[cfg.test_size :], order[cfg.test_size :]


@stage("init_session", ports=("training_client",))
def init_session(ctx: Context, training_client: TrainingService) -> None:
    cfg: Any = ctx.config
    ctx.resources["training_client"] = training_client.create_lora_training_client(
        cfg.model_name, rank=cfg.lora_rank, seed=cfg.seed
    )
    ctx.state["step"] = 0


@stage("init_tokenizer")
def init_tokenizer(ctx: Context) -> None:
    tokenizer = ctx.need("training_client").get_tokenizer()
    ctx.resources["renderer"] = get_renderer(ctx.config.renderer_name, tokenizer)  # type: ignore[attr-defined]


@stage("build_dataset")
def build_dataset(ctx: Context) -> None:
    cfg: Any = ctx.config
    renderer, mode = ctx.need("renderer"), TrainOnWhat(cfg.train_on_what)
    for split in ("train", "test"):
        ctx.resources[f"{split}_datums"] = conversations_to_datums(
            ctx.need(f"{split}_rows"), renderer, cfg.max_length, mode, cfg.loss_reduction,
            indices=ctx.need(f"{split}_indices"),
        )
    train = ctx.resources["train_datums"]
    if len(train) < cfg.batch_size:
        raise DatasetError(f"{len(train)} training rows is fewer than batch_size={cfg.batch_size}")
    ctx.state["num_batches"] = len(train) // cfg.batch_size
    ctx.state["total_steps"] = ctx.state["num_batches"] * cfg.num_epochs


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
    ctx.resources["batch_started"] = time.monotonic()


@stage("forward_backward")
def forward_backward(ctx: Context) -> None:
    batch = ctx.need("batch")
    ctx.resources["fwd_bwd"] = ctx.need("training_client").forward_backward(batch, "cross_entropy")


@stage("optim_step")
def optim_step(ctx: Context) -> None:
    cfg: Any = ctx.config
    lr = cfg.learning_rate * lr_multiplier(cfg.lr_schedule, ctx.state["step"], ctx.state["total_steps"])
    params = AdamParams(learning_rate=lr, beta1=cfg.adam_beta1, beta2=cfg.adam_beta2, eps=cfg.adam_eps)
    optim = ctx.need("training_client").optim_step(params)
    ctx.resources["fwd_bwd_result"] = ctx.need("fwd_bwd").result()
    optim.result()
    ctx.resources["learning_rate"] = lr
    ctx.state["step"] += 1


@stage("log_step_metrics")
def log_step_metrics(ctx: Context) -> None:
    batch, result = ctx.need("batch"), ctx.need("fwd_bwd_result")
    logprobs = [output["logprobs"] for output in result.loss_fn_outputs]
    nll_sum, weight_sum = weighted_nll(logprobs, batch)
    metrics = {
        "step": ctx.state["step"],
        "total_steps": ctx.state["total_steps"],
        "epoch": ctx.state["epoch"],
        "batch": ctx.state["batch"],
        "learning_rate": ctx.need("learning_rate"),
        "train_mean_nll": nll_sum / max(weight_sum, 1e-9),
        "num_sequences": len(batch),
        "num_tokens": sum(d.model_input.length for d in batch),
        "num_loss_tokens": weight_sum,
        "step_seconds": time.monotonic() - ctx.need("batch_started"),
        **{k: float(v) for k, v in result.metrics.items()},
    }
    ctx.state["last_metrics"] = metrics
    ctx.emit("train.step", **metrics)


@stage("evaluate")
def evaluate(ctx: Context) -> None:
    data = ctx.need("test_datums")
    result = ctx.need("training_client").forward(data, "cross_entropy").result()
    nll_sum, weight_sum = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], data)
    metrics = {"step": ctx.state["step"], "test_mean_nll": nll_sum / max(weight_sum, 1e-9)}
    ctx.state["last_eval"] = metrics
    ctx.emit("train.eval", **metrics)


def _save(ctx: Context, blob_store: BlobStore, name: str, final: bool) -> CheckpointRecord:
    client = ctx.need("training_client")
    state_path = client.save_state(name).result().path
    sampler_path = client.save_weights_for_sampler(name).result().path if final else None
    record = CheckpointRecord(
        name, ctx.state["step"], ctx.state.get("epoch", 0), state_path, sampler_path, final
    )
    append_checkpoint(blob_store, ctx.artifact_key(CHECKPOINTS), record)
    ctx.emit("train.checkpoint", name=name, step=record.step, path=state_path, final=final)
    return record


@stage("checkpoint", ports=("blob_store",))
def checkpoint(ctx: Context, blob_store: BlobStore) -> None:
    _save(ctx, blob_store, f"{ctx.state['step']:06d}", final=False)


@stage("save_final", ports=("blob_store",))
def save_final(ctx: Context, blob_store: BlobStore) -> None:
    record = _save(ctx, blob_store, "final", final=True)
    ctx.state["final_checkpoint"] = record.state_path
    ctx.state["final_sampler_path"] = record.sampler_path
