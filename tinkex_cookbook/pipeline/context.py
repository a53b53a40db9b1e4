"""The run context a stage receives: config, state, declared data, telemetry.

``state`` holds JSON-safe progress (epoch, step, metrics): it is what a run
reports and what a resume restores. Data that stages hand to each other
(clients, datasets, futures, and the state values a loop counts to) travels
under typed ``Key``s that each stage declares (``@stage(reads=..., writes=...)``):
the runner checks a spec's data flow before any work, and while a stage runs
the context refuses a key it did not declare, so declarations cannot drift.
Ports are not here: the runner passes them as the stage's arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from tinkex_cookbook.errors import SpecError
from tinkex_cookbook.pipeline.stopping import StopRequest
from tinkex_cookbook.pipeline.telemetry import TaskProgress, Telemetry
from tinkex_cookbook.spec import StageSpec

T = TypeVar("T")
ConfigT_co = TypeVar("ConfigT_co", covariant=True)
"""A recipe's config type: a stage typed ``Context[SlBasicConfig]`` reads its fields, checked."""


@dataclass(frozen=True)
class Key(Generic[T]):
    """The name and value type of one piece of data stages hand to each other.

    A ``state`` key lives in ``ctx.state`` (JSON-safe, reported, e.g. a loop's count);
    any other in the run's live resources (clients, datasets, futures).
    """

    name: str
    state: bool = False

    def __repr__(self) -> str:
        return f"{'state' if self.state else 'resource'} {self.name!r}"


@dataclass(frozen=True)
class Access:
    """What the running stage declared: keys it must find, keys it may find, keys it writes."""

    stage: str
    reads: frozenset[Key[Any]] = frozenset()
    optional: frozenset[Key[Any]] = frozenset()
    writes: frozenset[Key[Any]] = frozenset()


class PortLookup(Protocol):
    """Gives the adapter bound to a port, building it on first use."""

    def __getitem__(self, port: str) -> object: ...


@dataclass
class Context(Generic[ConfigT_co]):
    config: ConfigT_co
    ports: PortLookup
    telemetry: Telemetry
    run_prefix: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    stage: StageSpec | None = None
    access: Access | None = None
    """Set by the runner while a stage runs; ``None`` (no checks) outside a run."""
    stop: StopRequest = field(default_factory=StopRequest)
    """Set (Ctrl-C, SIGTERM, another thread) to stop the run at its next step boundary, checkpointed."""

    def emit(self, name: str, /, **data: Any) -> None:
        self.telemetry.emit(name, **data)

    def task(self, name: str, total: int) -> TaskProgress:
        """Progress of a long loop inside this stage: ``with ctx.task("sample", n) as t: ... t.advance()``."""
        return TaskProgress(self.telemetry, name, total)

    def track(self, items: Sequence[T], name: str) -> Iterator[T]:
        """Yield ``items`` while progress displays count them under ``name``."""
        with self.task(name, len(items)) as task:
            for item in items:
                yield item
                task.advance()

    def need(self, key: Key[T]) -> T:
        """Data an earlier stage must have written; a clear error if it did not."""
        self._check(key, "reads", required=True)
        store = self._store(key)
        if key.name not in store:
            raise SpecError(
                f"stage {self._current()!r} needs {key!r}, which no earlier stage wrote; "
                f"written so far: {sorted(store)}"
            )
        return cast(T, store[key.name])

    def get(self, key: Key[T]) -> T | None:
        """Data that may be absent (declared in ``reads`` or ``optional``)."""
        self._check(key, "reads")
        return cast("T | None", self._store(key).get(key.name))

    def put(self, key: Key[T], value: T) -> None:
        self._check(key, "writes")
        self._store(key)[key.name] = value

    def discard(self, key: Key[Any]) -> None:
        """Remove ``key`` (a write: the stage declares it)."""
        self._check(key, "writes")
        self._store(key).pop(key.name, None)

    def artifact_key(self, name: str) -> str:
        return f"{self.run_prefix}/{name}" if self.run_prefix else name

    def options(self) -> Mapping[str, Any]:
        return self.stage.options if self.stage else {}

    def _store(self, key: Key[Any]) -> dict[str, Any]:
        return self.state if key.state else self.resources

    def _current(self) -> str:
        return self.stage.name if self.stage else "?"

    def _check(self, key: Key[Any], how: Literal["reads", "writes"], required: bool = False) -> None:
        access = self.access
        if access is None:
            return
        allowed = access.writes if how == "writes" else (  # a stage may read back what it wrote
            access.reads | access.writes if required else access.reads | access.optional | access.writes)
        if key not in allowed:
            kind = "reads=" if how == "reads" and required else f"{how}=" if how == "writes" else "reads= or optional="
            raise SpecError(
                f"stage {access.stage!r} {'writes' if how == 'writes' else 'reads'} {key!r} but does not declare "
                f"it; add it to {kind} in the stage's @stage(...)"
            )
