"""Stage registry: stage name -> function, plus the ports it needs.

A stage is ``fn(ctx, **ports)``: the runner passes exactly the ports it
declared, so a stage's signature says what it touches in the outside world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.errors import UnknownNameError, choices

StageFn = Callable[..., None]


@dataclass(frozen=True)
class StageEntry:
    name: str
    fn: StageFn
    ports: tuple[str, ...] = ()


class StageRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, StageEntry] = {}

    def register(self, name: str, fn: StageFn, ports: tuple[str, ...] = (), replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"stage {name!r} is already registered")
        self._entries[name] = StageEntry(name, fn, tuple(ports))

    def get(self, name: str) -> StageEntry:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown stage {name!r}; registered stages: {choices(self._entries)}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


STAGES = StageRegistry()


def stage(name: str, ports: tuple[str, ...] = ()) -> Callable[[StageFn], StageFn]:
    """Decorator: register ``fn`` as stage ``name`` in the global registry."""

    def register(fn: StageFn) -> StageFn:
        STAGES.register(name, fn, ports)
        return fn

    return register


def register_stage(name: str, fn: StageFn, ports: tuple[str, ...] = (), replace: bool = False) -> Any:
    STAGES.register(name, fn, ports, replace)
    return fn
