"""Telemetry: events a run emits, and the sinks that record them.

Event names: ``workflow.start|stop|stopped|exception|warning`` (``stopped``: on request, checkpointed; ``warning``: a
``message`` for the console and ``run.log``, e.g. a damaged end of a run file cut off), ``stage.start|stop``,
``train.dataset`` (the data's format and split sizes), ``train.step``,
``train.epoch``, ``train.eval``, ``train.checkpoint``, and
``task.start|progress|stop`` for the long loops inside a stage (dataset
preparation, sampling, evaluation; see ``TaskProgress``). A sink is
anything with ``handle(event)`` and ``close()``; a sink that raises does not
stop the run's other sinks from seeing the event, but does fail the run. A
sink that buffers is also a ``BufferedSink`` (``flush()``): ``Telemetry.flush``
calls it before a checkpoint is recorded. A ``RunAwareSink`` (``configure``)
is told the run's spec and folder before the run starts.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, TextIO, runtime_checkable

from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.jsonio import dump
from tinkex_cookbook.line_files import Kind, parse_lines
from tinkex_cookbook.ports import BlobStore

if TYPE_CHECKING:
    from tinkex_cookbook.spec import Experiment

METRIC_EVENTS = frozenset({"train.step", "train.eval"})
SLOW_TASK_SECONDS = 1.0
"""A finished task gets a line in the console and the run log only if it took this long."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


def metric_row(event: Event) -> dict[str, Any]:
    return {"event": event.name, **event.data}


class Sink(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class BufferedSink(Protocol):
    """A sink holding events in memory between writes; ``flush`` writes them out."""

    def flush(self) -> None: ...


@runtime_checkable
class RunAwareSink(Protocol):
    """A sink that wants the run's spec (secrets scrubbed) and its folder's URI before the first event:
    W&B derives its run id from the folder, so a resumed run continues the same W&B run."""

    def configure(self, spec: Experiment, run_uri: str) -> None: ...


class Telemetry:
    """Fans each event out to every sink, in order.

    ``guard(force)`` runs before any sink sees an event and, forced, before a flush (just before a
    checkpoint is recorded): the run's lease check, so a run that lost its folder stops before writing.
    """

    def __init__(self, sinks: Iterable[Sink] = (), guard: Callable[[bool], None] | None = None) -> None:
        self.sinks = list(sinks)
        self._guard = guard

    def emit(self, name: str, /, **data: Any) -> None:
        if self._guard is not None:
            self._guard(False)
        event = Event(name, data)
        errors = []
        for sink in self.sinks:
            try:
                sink.handle(event)
            except Exception as exc:  # noqa: BLE001 - every sink sees the event first
                errors.append(exc)
        if errors:
            raise errors[0]

    def flush(self) -> None:
        """Write out what every sink buffers. Called just before a checkpoint is recorded: a resume from
        that checkpoint keeps the metric rows already written and recomputes only later steps, so a row
        still in memory when the process dies after the record would be lost for good."""
        if self._guard is not None:
            self._guard(True)
        errors = []
        for sink in self.sinks:
            if isinstance(sink, BufferedSink):
                try:
                    sink.flush()
                except Exception as exc:  # noqa: BLE001 - every sink flushes first
                    errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class TaskProgress:
    """Counts one long loop (rendering a dataset, waiting on samples) for progress displays.

    Emits ``task.start``, then ``task.progress`` at most every ``every`` seconds,
    then ``task.stop`` with the time taken: a loop over 100k rows costs a few
    events, not 100k. Use as a context manager; ``advance()`` after each item.
    """

    def __init__(self, telemetry: Telemetry, task: str, total: int, every: float = 0.2) -> None:
        self._telemetry, self.task, self.total, self._every = telemetry, task, total, every
        self.done = 0
        self._started = self._reported = time.monotonic()

    def __enter__(self) -> Self:
        self._telemetry.emit("task.start", task=self.task, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._reported >= self._every and self.done < self.total:
            self._reported = now
            self._telemetry.emit("task.progress", task=self.task, done=self.done, total=self.total)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is GeneratorExit:  # a ``track``ed loop abandoned by a failing stage, closed later by the
            return  # garbage collector, when the run's output streams may already be closed
        self._telemetry.emit("task.stop", task=self.task, done=self.done, total=self.total,
                             seconds=round(time.monotonic() - self._started, 3))


class MemorySink:
    """Keeps every event; the run result and tests read them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def names(self) -> list[str]:
        return [event.name for event in self.events]

    def metrics(self) -> list[dict[str, Any]]:
        """The rows ``metrics.jsonl`` holds, in the same shape."""
        return [metric_row(event) for event in self.events if event.name in METRIC_EVENTS]


class BlobLinesSink:
    """Text lines appended to one blob (``BlobStore.append``): a flush sends only the lines since the last,
    so its cost does not grow with the run's length.

    Flushed at most every ``flush_seconds``, before each checkpoint is recorded
    (``Telemetry.flush``: so the file is never behind a checkpoint), after it and
    at close. A crash loses only lines after the last flush, which a resumed run
    recomputes from its checkpoint.
    """

    def __init__(self, blob_store: BlobStore, key: str, flush_seconds: float = 2.0) -> None:
        self._store = blob_store
        self.key = key
        self._flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._flushed_at = float("-inf")
        self._detached = False

    @property
    def detached(self) -> bool:
        return self._detached

    def detach(self) -> None:
        """Write nothing more: the run folder belongs to another run now."""
        self._detached = True

    def line_for(self, event: Event) -> str | None:
        raise NotImplementedError

    def handle(self, event: Event) -> None:
        line = self.line_for(event)
        if line is not None:
            self._pending.append(line)
        if event.name == "train.checkpoint" or time.monotonic() - self._flushed_at >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._pending and not self._detached:
            self._store.append(self.key, _as_blob(self._pending))
            self._pending.clear()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        self.flush()


class JsonlMetricsSink(BlobLinesSink):
    """``train.step`` / ``train.eval`` rows, one JSON object per line, in ``metrics.jsonl``.

    On ``train.resume`` it keeps the rows already written up to the checkpoint's
    step and drops any after it; an attempt that starts from no checkpoint replaces
    the file at its first write. Either is one rewrite per attempt, and the file
    never holds a step twice. A damaged line before whole rows stops the resume
    (``line_files``); damaged lines at the end are dropped with the rewrite.

    Every line is strict JSON: a value that is NaN or infinite (a diverged loss) is
    written as ``null``, where ``json.dumps`` would write a bare ``NaN`` that strict
    parsers reject.
    """

    def __init__(self, blob_store: BlobStore, key: str, flush_seconds: float = 2.0) -> None:
        super().__init__(blob_store, key, flush_seconds)
        self._fresh = True
        """No ``train.resume`` yet: rows left by an earlier attempt belong to steps this one recomputes."""

    def line_for(self, event: Event) -> str | None:
        if event.name == "train.resume" and not self._detached:
            self._drop_rows_after(event.data["step"])
            self._fresh = False
        if event.name in METRIC_EVENTS:
            return dump(finite_or_null(metric_row(event)), sort_keys=True)
        return None

    def _drop_rows_after(self, step: int) -> None:
        try:
            data = self._store.read(self.key)
        except BlobNotFoundError:
            data = b""
        lines = parse_lines(data, Kind.ROWS, self._store.uri(self.key))
        if (error := lines.middle_error()) is not None:
            raise error
        kept = [raw.decode() for raw, row in zip(lines.raw, lines.items, strict=True) if _step_of(row) <= step]
        self._pending.clear()
        if len(kept) != data.count(b"\n"):
            self._store.write(self.key, _as_blob(kept))

    def flush(self) -> None:
        if self._fresh and self._pending and not self._detached:
            self._store.write(self.key, _as_blob(self._pending))
            self._pending.clear()
            self._fresh = False
        super().flush()


def _as_blob(lines: list[str]) -> bytes:
    """Lines as a blob of whole lines, each ending in a newline (what ``BlobStore.append`` takes)."""
    return "".join(line + "\n" for line in lines).encode()


def _step_of(row: dict[str, Any]) -> int:
    """A metric row's step; a row without a whole-number one counts as step 0, so it is kept."""
    step = row.get("step", 0)
    return step if isinstance(step, int) else 0


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN and infinity (in lists and objects too) replaced by ``None``: JSON has no
    such numbers, and ``null`` is what a strict reader (and JavaScript's ``JSON.stringify``) makes of them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


class LogFileSink(BlobLinesSink):
    """The console's lines, timestamped, appended to the run's log across attempts; a failed run's error
    message too. Every line passes through ``scrub`` (the settings' secret scrubber) before it is kept."""

    def __init__(self, blob_store: BlobStore, key: str, flush_seconds: float = 2.0,
                 scrub: Callable[[str], str] = str) -> None:
        super().__init__(blob_store, key, flush_seconds)
        self._scrub = scrub

    def line_for(self, event: Event) -> str | None:
        line = log_line(event)
        return self._scrub(line) if line is not None else None


def log_line(event: Event) -> str | None:
    """``run.log``'s line for ``event`` (before scrubbing): the console's, timestamped, plus a failure's message."""
    line = _console_line(event) if event.name != "workflow.start" else f"workflow.start {event.data}"
    if line and event.name == "workflow.exception" and event.data.get("message"):
        line += f"\nerror: {event.data['message']}"
    if not line:
        return None
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(event.time))} {line}"


class ConsoleSink:
    """One line per step, epoch, eval and checkpoint, for people watching a run."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def handle(self, event: Event) -> None:
        line = _console_line(event)
        if line:
            print(line, file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _console_line(event: Event) -> str | None:
    data = event.data
    if event.name == "train.step":
        shown = {k: v for k, v in data.items() if isinstance(v, int | float)}
        return f"step {data.get('step')}/{data.get('total_steps')} " + " ".join(
            f"{k}={v:.4g}" for k, v in sorted(shown.items()) if k not in ("step", "total_steps")
        )
    if event.name == "task.stop":
        if data.get("seconds", 0) < SLOW_TASK_SECONDS:
            return None
        return f"{data['task']}: {data['done']}/{data['total']} in {data['seconds']:.1f} s"
    if event.name == "workflow.warning":
        return f"warning: {data.get('message')}"
    if event.name == "workflow.exception":  # its message goes to run.log only, scrubbed; the CLI prints the error
        return f"{event.name} " + " ".join(f"{k}={v}" for k, v in sorted(data.items()) if k != "message")
    if event.name in ("train.dataset", "train.data", "train.epoch", "train.eval", "train.checkpoint", "train.resume",
                      "workflow.stop", "workflow.stopped"):
        return f"{event.name} " + " ".join(f"{k}={v}" for k, v in sorted(data.items()))
    return None
