"""Stages of supervised fine-tuning on a streamed dataset: nothing is read or rendered ahead of its batch.

``open_stream`` holds out the stream's first ``test_size`` rows and opens the rest as a
``BatchStream`` (``train/sl_data.py``); ``build_stream`` renders the held-out rows and sets the
run's length to ``max_steps``; ``get_stream_batch`` renders each batch when it is taken and
records the stream's position in ``CHECKPOINT_EXTRA``, so a resumed run skips the rows its
checkpoint had consumed (read again, not rendered) and continues with the next batch. The rest
of the step (``forward_backward``, ``optim_step`` ...) is the held-whole recipe's.
"""

from __future__ import annotations

import json
from functools import partial

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    CHECKPOINT_EXTRA,
    NUM_BATCHES,
    RENDERER,
    RESUMED,
    TOTAL_STEPS,
)
from tinkex_cookbook.pipeline.stages.supervised import (
    BATCH,
    BATCH_EXAMPLES,
    ROW_FORMATS,
    TEST_DATUMS,
    TEST_INDICES,
    TEST_ROWS,
    TEST_SOURCES,
    _render,
    format_names,
    render_chunk,
    resolve_formats,
    row_format,
)
from tinkex_cookbook.ports import DatasetStore
from tinkex_cookbook.recipes.sl_basic import SlBasicConfig
from tinkex_cookbook.train.holdout import DEFAULT_TEST_SIZE
from tinkex_cookbook.train.sl_data import BatchStream, Pulled, open_stream

BATCH_STREAM: Key[BatchStream] = Key("batch_stream")

POSITION_KEYS = ("stream_pass", "stream_row")
"""Where a checkpoint records the stream's position (``CHECKPOINT_EXTRA``)."""


@stage("open_stream", writes=(TEST_ROWS, TEST_INDICES, TEST_SOURCES, BATCH_STREAM, ROW_FORMATS))
def open_stream_stage(ctx: Context[SlBasicConfig], dataset_store: DatasetStore) -> None:
    """Hold out the stream's first rows and detect each dataset's row format from them, before any session
    opens (a dataset with no held-out row has its format detected from its first batch)."""
    cfg = ctx.config
    held_out, rows = open_stream(dataset_store, cfg.parts(), cfg.seed, cfg.test_size, cfg.shuffle_buffer,
                                 cfg.batch_size)
    formats = resolve_formats(held_out, row_format(cfg))
    ctx.put(ROW_FORMATS, formats)
    ctx.put(TEST_ROWS, [p.row for p in held_out])
    ctx.put(TEST_INDICES, [p.index for p in held_out])
    ctx.put(TEST_SOURCES, [p.source for p in held_out])
    ctx.put(BATCH_STREAM, BatchStream(rows, cfg.max_length if cfg.packing else None))
    counts = {"test": {label: sum(1 for p in held_out if p.source == label) for label in rows.labels}}
    ctx.state["rows_by_source"] = {**counts, "train": {}}
    ctx.emit("train.data", streaming=True, rows_by_source=counts)
    small = cfg.test_size is None and len(held_out) < DEFAULT_TEST_SIZE
    note = {"note": f"held out {len(held_out)} rows (10% of a short stream), not the default {DEFAULT_TEST_SIZE}; "
                    "set test_size= to choose"} if small else {}
    ctx.emit("train.dataset", dataset=cfg.dataset, format=format_names(formats) if formats else "detected per batch",
             streaming=True, test_rows=len(held_out), **note)


@stage("build_stream", reads=(RENDERER, TEST_ROWS, TEST_INDICES, TEST_SOURCES, ROW_FORMATS),
       writes=(TEST_DATUMS, NUM_BATCHES, TOTAL_STEPS))
def build_stream(ctx: Context[SlBasicConfig]) -> None:
    """Render the held-out rows; the run is ``max_steps`` batches long."""
    pulled = [Pulled(row, index, source) for row, index, source in
              zip(ctx.need(TEST_ROWS), ctx.need(TEST_INDICES), ctx.need(TEST_SOURCES), strict=True)]
    ctx.put(TEST_DATUMS, _render(ctx, "test", pulled))
    steps = ctx.config.max_steps or 0
    ctx.put(NUM_BATCHES, steps)
    ctx.put(TOTAL_STEPS, steps)


@stage("get_stream_batch", reads=(BATCH_STREAM, RENDERER, ROW_FORMATS), optional=(RESUMED,),
       writes=(BATCH, BATCH_EXAMPLES, CHECKPOINT_EXTRA))
def get_stream_batch(ctx: Context[SlBasicConfig]) -> None:
    """The next batch, rendered now; a resumed run first skips to where its checkpoint left the stream."""
    stream = ctx.need(BATCH_STREAM)
    if not stream.started:
        _seek(ctx, stream)
    before = stream.rows.pass_number
    batch, examples = stream.next_batch(ctx.config.batch_size, partial(render_chunk, ctx))
    ctx.put(BATCH, batch)
    if stream.pack_length is not None:
        ctx.put(BATCH_EXAMPLES, examples)
    ctx.state["epoch"] = stream.rows.pass_number
    ctx.state["rows_by_source"]["train"] = dict(stream.counts)
    pass_number, row = stream.position
    ctx.put(CHECKPOINT_EXTRA, {"stream_pass": str(pass_number), "stream_row": str(row),
                               "rows_by_source": json.dumps(dict(stream.counts))})
    if stream.rows.pass_number != before:
        ctx.emit("train.epoch", epoch=stream.rows.pass_number, streaming=True,
                 rows_by_source=dict(stream.counts))


def _seek(ctx: Context[SlBasicConfig], stream: BatchStream) -> None:
    resumed = ctx.get(RESUMED)
    if resumed is None or resumed.step == 0:
        return
    extra = resumed.extra or {}
    if not all(key in extra for key in POSITION_KEYS):
        raise DatasetError(f"checkpoint {resumed.name!r} records no stream position, so a streamed run cannot "
                           "resume from it. Fix: start a new run (another log_path)")
    stream.seek(int(extra["stream_pass"]), int(extra["stream_row"]))
    stream.counts.update(json.loads(extra.get("rows_by_source", "{}")))
