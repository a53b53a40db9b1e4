"""Stage registry: stage name -> function, plus the ports it needs.

A stage is ``fn(ctx, **ports)``: the runner passes exactly the ports it
declared, so a stage's signature says what it touches in the outside world.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.errors import UnknownNameError, choices

StageFn = Callable[..., None]


@dataclass(frozen=True)
class StageEntry:
    name: str
    fn: StageFn
    ports: tuple[str, ...] = ()


BUILTIN_STAGE_MODULES = tuple(f"tinkex_cookbook.pipeline.stages.{m}" for m in ("supervised", "replies", "rl", "dpo", "distillation"))
"""Imported on first lookup of a stage they define, so a run imports only its recipe's stages."""


class StageRegistry:
    def __init__(self, builtin_modules: Sequence[str] = ()) -> None:
        self._entries: dict[str, StageEntry] = {}
        self._pending = list(builtin_modules)

    def _load_until(self, name: str | None) -> None:
        """Import built-in stage modules until ``name`` is registered (all of them for ``None``)."""
        while self._pending and (name is None or name not in self._entries):
            importlib.import_module(self._pending.pop(0))

    def register(self, name: str, fn: StageFn, ports: tuple[str, ...] = (), replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"stage {name!r} is already registered")
        self._entries[name] = StageEntry(name, fn, tuple(ports))

    def get(self, name: str) -> StageEntry:
        self._load_until(name)
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown stage {name!r}; registered stages: {choices(self._entries)}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_until(None)
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load_until(name)
        return name in self._entries


STAGES = StageRegistry(BUILTIN_STAGE_MODULES)


def stage(name: str, ports: tuple[str, ...] = ()) -> Callable[[StageFn], StageFn]:
    """Decorator: register ``fn`` as stage ``name`` in the global registry."""

    def register(fn: StageFn) -> StageFn:
        STAGES.register(name, fn, ports)
        return fn

    return register


def register_stage(name: str, fn: StageFn, ports: tuple[str, ...] = (), replace: bool = False) -> Any:
    STAGES.register(name, fn, ports, replace)
    return fn
