"""Stages of supervised fine-tuning: each a few lines over ports and train/ functions.

Steps are pipelined as tinker-cookbook's submit-ahead loop does: step N's
forward_backward and optim_step are submitted before step N-1's results are
awaited (``pipeline_depth`` steps may be in flight), so a remote backend is
never idle while the loop logs. Evaluation drains what is in flight, and the
spec puts ``finish_steps`` before each checkpoint, so every metric and
checkpoint is of finished steps. Checkpoints and resume are the shared stages of
``common.py``; a streamed dataset's stages are in ``sl_stream.py``. Rows become
datums in one place, ``render_chunk``.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    NUM_BATCHES,
    RENDERER,
    TOTAL_STEPS,
    TRAINER,
    adam_params,
    emit_step,
)
from tinkex_cookbook.ports import APIFuture, DatasetStore, Datum, ForwardBackwardOutput, Row
from tinkex_cookbook.recipes.sl_basic import SlBasicConfig
from tinkex_cookbook.train.datum import loss_token_count, weighted_nll
from tinkex_cookbook.train.formats import RowFormat, resolve_format, rows_to_datums
from tinkex_cookbook.train.holdout import check_batch_size
from tinkex_cookbook.train.renderers import TrainOnWhat
from tinkex_cookbook.train.sl_data import Pulled, load_rows, pack_datums, render_pulled


@dataclass
class InFlight:
    """A submitted step whose results have not been read yet."""

    step: int
    epoch: int
    batch_index: int
    learning_rate: float
    batch: list[Datum]
    fwd_bwd: APIFuture[ForwardBackwardOutput]
    optim: APIFuture[Any]
    examples: int | None = None
    """Examples packed into the batch's sequences (``None``: one per sequence)."""


@dataclass
class Pipeline:
    """The steps submitted and not yet read, and when the last read one finished (for step timings)."""

    steps: deque[InFlight] = field(default_factory=deque)
    last_finished: float | None = None


TRAIN_ROWS: Key[list[Row]] = Key("train_rows")
TEST_ROWS: Key[list[Row]] = Key("test_rows")
TRAIN_INDICES: Key[list[int]] = Key("train_indices")
"""Each row's index in the dataset file, so a row that fails to render is named by it."""
TEST_INDICES: Key[list[int]] = Key("test_indices")
ROW_FORMATS: Key[dict[str, RowFormat]] = Key("row_formats")
"""Each dataset's row format (resolved from "auto"), by its label: a mixture's datasets may differ."""
TRAIN_SOURCES: Key[list[str]] = Key("train_sources")
"""Each row's dataset (a mixture has several), so counts and errors name it."""
TEST_SOURCES: Key[list[str]] = Key("test_sources")
TRAIN_DATUMS: Key[list[Datum]] = Key("train_datums")
TEST_DATUMS: Key[list[Datum]] = Key("test_datums")
EPOCH_ORDER: Key[list[int]] = Key("epoch_order")
TRAIN_EXAMPLES: Key[list[int]] = Key("train_examples")
"""With packing: how many examples each training sequence holds."""
BATCH: Key[list[Datum]] = Key("batch")
BATCH_EXAMPLES: Key[int] = Key("batch_examples")
"""With packing: the examples in the current batch's sequences."""
FWD_BWD: Key[APIFuture[ForwardBackwardOutput]] = Key("fwd_bwd")
IN_FLIGHT: Key[Pipeline] = Key("in_flight")


@stage("load_dataset", writes=(TRAIN_ROWS, TEST_ROWS, TRAIN_INDICES, TEST_INDICES, TRAIN_SOURCES, TEST_SOURCES,
                               ROW_FORMATS))
def load_dataset(ctx: Context[SlBasicConfig], dataset_store: DatasetStore) -> None:
    """Read every row in its format (before any session opens), shuffle once with the run's seed, hold out
    the test rows, remember each row's index and dataset (a mixture interleaves its datasets by weight:
    ``sl_data.load_rows``)."""
    cfg = ctx.config
    split = load_rows(dataset_store, cfg.parts(), cfg.seed, cfg.test_size, cfg.train_size, cfg.batch_size)
    check_batch_size(len(split.train), cfg.batch_size)
    formats = resolve_formats([*split.test, *split.train], row_format(cfg))
    for pulled, keys in ((split.train, (TRAIN_ROWS, TRAIN_INDICES, TRAIN_SOURCES)),
                         (split.test, (TEST_ROWS, TEST_INDICES, TEST_SOURCES))):
        ctx.put(keys[0], [p.row for p in pulled])
        ctx.put(keys[1], [p.index for p in pulled])
        ctx.put(keys[2], [p.source for p in pulled])
    ctx.put(ROW_FORMATS, formats)
    ctx.state["rows_by_source"] = split.counts()
    note = {"note": split.note} if split.note else {}
    ctx.emit("train.dataset", dataset=cfg.dataset, format=format_names(formats),
             rows=len(split.train) + len(split.test), train_rows=len(split.train), test_rows=len(split.test), **note)
    ctx.emit("train.data", rows_by_source=split.counts())


def row_format(cfg: SlBasicConfig) -> RowFormat:
    """The config's row format settings (``dataset_format`` may still be "auto")."""
    return RowFormat(cfg.dataset_format, cfg.messages_field, cfg.role_map, cfg.text_field)


def resolve_formats(pulled: Sequence[Pulled], settings: RowFormat) -> dict[str, RowFormat]:
    """Each dataset's format, detected from its first row in file order; every row given is checked in it, so
    the first bad row named is the first in the file."""
    by_source: dict[str, list[Pulled]] = {}
    for p in sorted(pulled, key=lambda p: p.index):
        by_source.setdefault(p.source, []).append(p)
    return {source: resolve_format([p.row for p in rows], settings, [p.index for p in rows])
            for source, rows in by_source.items()}


def format_names(formats: dict[str, RowFormat]) -> str:
    """``sharegpt``, or ``no_robots:messages,chats.jsonl:sharegpt`` for a mixture."""
    if len(formats) == 1:
        return next(iter(formats.values())).name
    return ",".join(f"{source}:{fmt.name}" for source, fmt in formats.items())


RENDER_CHUNK = 256
"""Rows rendered between two progress updates."""


def render_chunk(ctx: Context[SlBasicConfig], rows: list[Row], indices: list[int], source: str) -> list[Datum]:
    """A chunk of one dataset's rows as datums: the one place a supervised row becomes a training example
    (``indices`` are the rows' places in their dataset, for errors). A dataset first seen here (a streamed
    mixture's, absent from the held-out rows) has its format detected from this chunk."""
    cfg = ctx.config
    formats = ctx.need(ROW_FORMATS)
    if source not in formats:
        formats[source] = resolve_format(rows, row_format(cfg), indices)
    return rows_to_datums(rows, formats[source], ctx.need(RENDERER), cfg.max_length, TrainOnWhat(cfg.train_on_what),
                          cfg.loss_reduction, indices=indices)


@stage("build_dataset", reads=(RENDERER, TRAIN_ROWS, TEST_ROWS, TRAIN_INDICES, TEST_INDICES, ROW_FORMATS),
       optional=(TRAIN_SOURCES, TEST_SOURCES), writes=(TRAIN_DATUMS, TEST_DATUMS, TRAIN_EXAMPLES, NUM_BATCHES, TOTAL_STEPS))
def build_dataset(ctx: Context[SlBasicConfig]) -> None:
    cfg = ctx.config
    splits = {"train": (TRAIN_ROWS, TRAIN_INDICES, TRAIN_SOURCES, TRAIN_DATUMS),
              "test": (TEST_ROWS, TEST_INDICES, TEST_SOURCES, TEST_DATUMS)}
    for split, (rows_key, indices_key, sources_key, datums_key) in splits.items():
        rows, sources = ctx.need(rows_key), ctx.get(sources_key)
        pulled = [Pulled(row, index, source) for row, index, source in
                  zip(rows, ctx.need(indices_key), sources or [cfg.dataset] * len(rows), strict=True)]
        ctx.put(datums_key, _render(ctx, split, pulled))
    if cfg.packing and cfg.max_length is not None:
        _pack(ctx, cfg.max_length)
    train = ctx.need(TRAIN_DATUMS)
    if len(train) < cfg.batch_size:
        unit = "packed sequences" if cfg.packing else "training rows"
        raise DatasetError(f"{len(train)} {unit} is fewer than batch_size={cfg.batch_size}")
    ctx.put(NUM_BATCHES, len(train) // cfg.batch_size)
    ctx.put(TOTAL_STEPS, ctx.need(NUM_BATCHES) * cfg.num_epochs)


def _render(ctx: Context[SlBasicConfig], split: str, pulled: list[Pulled]) -> list[Datum]:
    datums: list[Datum] = []
    with ctx.task(f"render {split} rows", len(pulled)) as task:
        for start in range(0, len(pulled), RENDER_CHUNK):
            chunk = pulled[start : start + RENDER_CHUNK]
            datums += render_pulled(chunk, partial(render_chunk, ctx))
            task.advance(len(chunk))
    return datums


def _pack(ctx: Context[SlBasicConfig], max_length: int) -> None:
    """Training datums packed into sequences of up to ``max_length`` tokens, in the load order."""
    examples = ctx.need(TRAIN_DATUMS)
    packs = pack_datums(examples, max_length)
    ctx.put(TRAIN_DATUMS, [p.datum for p in packs])
    ctx.put(TRAIN_EXAMPLES, [p.examples for p in packs])
    ctx.state["packing"] = {"examples": len(examples), "sequences": len(packs)}


@stage("set_epoch", reads=(TRAIN_DATUMS, NUM_BATCHES), writes=(EPOCH_ORDER,))
def set_epoch(ctx: Context[SlBasicConfig]) -> None:
    """Shuffle the training datums with a seed that depends on the epoch, reproducibly."""
    epoch = ctx.state["epoch"]
    order = list(range(len(ctx.need(TRAIN_DATUMS))))
    random.Random(ctx.config.seed + epoch).shuffle(order)
    ctx.put(EPOCH_ORDER, order)
    ctx.emit("train.epoch", epoch=epoch, num_batches=ctx.need(NUM_BATCHES))


@stage("get_batch", reads=(EPOCH_ORDER, TRAIN_DATUMS), optional=(TRAIN_EXAMPLES,), writes=(BATCH, BATCH_EXAMPLES))
def get_batch(ctx: Context[SlBasicConfig]) -> None:
    size = ctx.config.batch_size
    start = ctx.state["batch"] * size
    indices = ctx.need(EPOCH_ORDER)[start : start + size]
    ctx.put(BATCH, [ctx.need(TRAIN_DATUMS)[i] for i in indices])
    packed = ctx.get(TRAIN_EXAMPLES)
    if packed is not None:
        ctx.put(BATCH_EXAMPLES, sum(packed[i] for i in indices))


@stage("forward_backward", reads=(TRAINER, BATCH), writes=(FWD_BWD,))
def forward_backward(ctx: Context[object]) -> None:
    batch = ctx.need(BATCH)
    ctx.put(FWD_BWD, ctx.need(TRAINER).forward_backward(batch, "cross_entropy"))


@stage("optim_step", reads=(TRAINER, BATCH, FWD_BWD), optional=(IN_FLIGHT, BATCH_EXAMPLES), writes=(IN_FLIGHT,))
def optim_step(ctx: Context[SlBasicConfig]) -> None:
    """Submit the optimizer step; its results are read later, by ``log_step_metrics``."""
    step, params = ctx.state["step"], adam_params(ctx)
    optim = ctx.need(TRAINER).optim_step(params)
    pipeline = ctx.get(IN_FLIGHT)
    if pipeline is None:
        pipeline = Pipeline()
        ctx.put(IN_FLIGHT, pipeline)
    if pipeline.last_finished is None:
        pipeline.last_finished = time.monotonic()
    pipeline.steps.append(InFlight(step + 1, ctx.state["epoch"], ctx.state["batch"], params.learning_rate,
                                   ctx.need(BATCH), ctx.need(FWD_BWD), optim, ctx.get(BATCH_EXAMPLES)))
    ctx.state["step"] = step + 1


def _finish(ctx: Context[object], pipeline: Pipeline, done: InFlight) -> None:
    result = done.fwd_bwd.result()
    optim = done.optim.result()  # the backend's optimizer-step metrics (grad_norm ...) join the row
    now = time.monotonic()
    seconds, pipeline.last_finished = now - (pipeline.last_finished or now), now
    nll_sum, weight_sum = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], done.batch)
    tokens = sum(d.model_input.length for d in done.batch)
    ctx.state["tokens_seen"] += tokens
    metrics = {
        "step": done.step, "total_steps": ctx.state["total_steps"], "epoch": done.epoch,
        "batch": done.batch_index, "learning_rate": done.learning_rate,
        "train_mean_nll": nll_sum / max(weight_sum, 1e-9), "num_sequences": len(done.batch),
        "num_tokens": tokens, "num_loss_tokens": loss_token_count(done.batch), "tokens_seen": ctx.state["tokens_seen"],
        "step_seconds": seconds, "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        **({} if done.examples is None else {"num_examples": done.examples}),
        **{k: float(v) for k, v in result.metrics.items()},
    }
    metrics |= {k: float(v) for k, v in optim.metrics.items() if k not in metrics}  # step, epoch ... stay ours
    emit_step(ctx, metrics)


def drain(ctx: Context[object], keep: int = 0) -> None:
    """Read results of submitted steps, oldest first, until at most ``keep`` remain in flight
    (the stage declares ``IN_FLIGHT`` as optional: before the first step nothing is in flight)."""
    pipeline = ctx.get(IN_FLIGHT)
    while pipeline is not None and len(pipeline.steps) > keep:
        _finish(ctx, pipeline, pipeline.steps.popleft())


@stage("log_step_metrics", optional=(IN_FLIGHT,))
def log_step_metrics(ctx: Context[SlBasicConfig]) -> None:
    drain(ctx, keep=ctx.config.pipeline_depth)


@stage("finish_steps", optional=(IN_FLIGHT,))
def finish_steps(ctx: Context[object]) -> None:
    """Read every submitted step's results, so the checkpoint that follows is of finished steps."""
    drain(ctx)


def held_out_nll(ctx: Context[object]) -> float | None:
    """Mean NLL of the held-out datums under the current weights (``None`` with no held-out rows)."""
    drain(ctx)
    data = ctx.need(TEST_DATUMS)
    if not data:
        return None
    with ctx.task("evaluate", len(data)) as task:
        result = ctx.need(TRAINER).forward(data, "cross_entropy").result()
        task.advance(len(data))
    nll_sum, weight_sum = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], data)
    return nll_sum / max(weight_sum, 1e-9)


@stage("evaluate_at_end", reads=(TRAINER, TEST_DATUMS), optional=(IN_FLIGHT,))
def evaluate_at_end(ctx: Context[object]) -> None:
    """``evaluate`` after the last step: the final NLL is a metrics row recorded before that step's
    checkpoint, like every other evaluation."""
    if ctx.state["step"] == ctx.state["total_steps"]:
        evaluate(ctx)


@stage("evaluate", reads=(TRAINER, TEST_DATUMS), optional=(IN_FLIGHT,))
def evaluate(ctx: Context[object]) -> None:
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
