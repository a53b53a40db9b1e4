"""Per-step telemetry cost: appending run files against rewriting them whole on every flush.

A run's folder sinks (``metrics.jsonl``, ``run.log``) and its checkpoint records
are driven here as a run drives them, on a local blob store: a ``train.step``
event per step and, every ``--save-every`` steps, a flush, a checkpoint record and
a ``train.checkpoint`` event. The same loop runs with today's sinks (each flush
appends only new lines) and with a copy of the old ones (each flush rewrote the
whole file, and each record rewrote ``checkpoints.jsonl``), side by side. Printed
per length: microseconds per step and megabytes written to the store, against the
size of the files produced. Appending keeps both flat per step; rewriting grows
with the run. The old way is skipped past ``--old-max`` steps (it is quadratic:
100,000 steps would take many minutes).

    python -m bench.telemetry [--steps 100 1000 10000 100000] [--save-every 20] [--old-max 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.pipeline.telemetry import Event, Telemetry, log_line, metric_row
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.run_folder import CHECKPOINTS, LOG, METRICS, RunFolder
from tinkex_cookbook.train.checkpoints import (
    CheckpointRecord,
    append_checkpoint,
    load_checkpoints,
    record_row,
)


class CountingStore(LocalBlobStore):
    """A local store that counts the bytes it is asked to write or append."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written = 0

    def write(self, key: str, data: bytes) -> None:
        self.written += len(data)
        super().write(key, data)

    def append(self, key: str, data: bytes) -> None:
        self.written += len(data)
        super().append(key, data)


# -- the old behaviour, copied here to measure against ----------------------------------------------------


class RewritingLinesSink:
    """The sink before appends: every line kept in memory, the whole file rewritten on each flush."""

    def __init__(self, store: BlobStore, key: str, line_for: Callable[[Event], str | None],
                 flush_seconds: float = 2.0) -> None:
        self._store, self._key, self._line_for, self._flush_seconds = store, key, line_for, flush_seconds
        self._lines: list[str] = []
        self._flushed_at = float("-inf")
        self._dirty = False

    def handle(self, event: Event) -> None:
        line = self._line_for(event)
        if line is not None:
            self._lines.append(line)
            self._dirty = True
        if event.name == "train.checkpoint" or time.monotonic() - self._flushed_at >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            self._store.write(self._key, "".join(line + "\n" for line in self._lines).encode())
            self._dirty = False
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        self.flush()


def rewrite_checkpoint(store: BlobStore, key: str, record: CheckpointRecord) -> None:
    """The record file before appends: loaded and rewritten whole for each new record."""
    try:
        records = load_checkpoints(store, key)
    except BlobNotFoundError:
        records = []
    rows = (record_row(r) for r in [*records, record])
    store.write(key, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())


def _metric_line(event: Event) -> str | None:
    return json.dumps(metric_row(event), sort_keys=True) if event.name in ("train.step", "train.eval") else None


def _log_line(event: Event) -> str | None:
    return log_line(event)  # the same line, no store needed


# -- the loop -----------------------------------------------------------------------------------------------


def drive(store: CountingStore, steps: int, save_every: int, old: bool) -> tuple[float, int, int]:
    """Seconds per step, bytes written to the store, and bytes of the files produced."""
    folder = RunFolder(store, "run")
    if old:
        sinks = [RewritingLinesSink(store, folder.key(METRICS), _metric_line),
                 RewritingLinesSink(store, folder.key(LOG), _log_line)]
        record: Callable[[BlobStore, str, CheckpointRecord], object] = rewrite_checkpoint
    else:
        sinks, record = folder.sinks(), append_checkpoint
    telemetry = Telemetry(sinks)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        telemetry.emit("train.step", step=step, total_steps=steps, epoch=0, batch=step - 1,
                       train_mean_nll=1.0 / step, learning_rate=1e-4, num_tokens=4096, step_seconds=0.1)
        if step % save_every == 0:
            telemetry.flush()
            name = f"{step:06d}"
            record(store, folder.key(CHECKPOINTS), CheckpointRecord(name, step, 0, f"local://run/{name}/state"))
            telemetry.emit("train.checkpoint", name=name, step=step, final=False)
    telemetry.close()
    seconds = time.perf_counter() - started
    produced = sum(len(store.read(folder.key(name))) for name in (METRICS, LOG, CHECKPOINTS))
    return seconds / steps, store.written, produced


def measure(steps: int, save_every: int, old: bool) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as root:
        return drive(CountingStore(Path(root)), steps, save_every, old)


def table(lengths: list[int], save_every: int, old_max: int) -> list[str]:
    lines = [f"telemetry per step, local blob store, a checkpoint every {save_every} steps",
             (f"{'steps':>8} | {'append us/step':>14} {'MB written':>10} {'MB files':>8} | "
              f"{'rewrite us/step':>15} {'MB written':>10}")]
    for steps in lengths:
        new = measure(steps, save_every, old=False)
        old = measure(steps, save_every, old=True) if steps <= old_max else None
        shown_old = (f"{old[0] * 1e6:>15.0f} {old[1] / 1e6:>10.1f}" if old else f"{'skipped':>15} {'-':>10}")
        lines.append(f"{steps:>8} | {new[0] * 1e6:>14.0f} {new[1] / 1e6:>10.2f} {new[2] / 1e6:>8.2f} | {shown_old}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--old-max", type=int, default=10_000)
    args = parser.parse_args(argv)
    print("\n".join(table(args.steps, args.save_every, args.old_max)), flush=True)


if __name__ == "__main__":
    main()
