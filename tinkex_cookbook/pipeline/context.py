"""The run context a stage receives: config, state, live resources, telemetry.

``state`` holds JSON-safe progress (epoch, step, metrics): it is what a run
reports and what a resume restores. ``resources`` holds live objects that
stages hand to each other (clients, datasets, futures). Ports are not here:
a stage declares the ports it needs and the runner passes them as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from tinkex_cookbook.errors import SpecError
from tinkex_cookbook.pipeline.telemetry import TaskProgress, Telemetry
from tinkex_cookbook.spec import StageSpec

T = TypeVar("T")


class PortLookup(Protocol):
    """Gives the adapter bound to a port, building it on first use."""

    def __getitem__(self, port: str) -> object: ...


@dataclass
class Context:
    config: BaseModel
    ports: PortLookup
    telemetry: Telemetry
    run_prefix: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    stage: StageSpec | None = None

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

    def need(self, key: str) -> Any:
        """A resource an earlier stage must have produced; a clear error if it did not."""
        if key not in self.resources:
            current = self.stage.name if self.stage else "?"
            raise SpecError(
                f"stage {current!r} needs {key!r}, which no earlier stage produced; "
                f"available: {sorted(self.resources)}"
            )
        return self.resources[key]

    def artifact_key(self, name: str) -> str:
        return f"{self.run_prefix}/{name}" if self.run_prefix else name

    def options(self) -> Mapping[str, Any]:
        return self.stage.options if self.stage else {}
