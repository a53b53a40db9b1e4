"""Stage registry: stage name -> function, the ports it takes and the data it reads and writes.

A stage is ``fn(ctx, **ports)``. The ports are read once, from the signature:
every parameter after ``ctx`` must be a port name, and the runner passes exactly
those. ``reads`` are keys an earlier stage of the spec must write (checked before
the run starts); ``optional`` are keys a stage uses when present (written later in
its own loop, or only on some paths); ``writes`` are the keys it may write.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tinkex_cookbook.errors import SpecError, UnknownNameError, choices
from tinkex_cookbook.pipeline.context import Access, Key
from tinkex_cookbook.ports import PORT_PROTOCOLS

StageFn = Callable[..., None]
F = TypeVar("F", bound=StageFn)


@dataclass(frozen=True)
class StageEntry:
    name: str
    fn: StageFn
    ports: tuple[str, ...] = ()
    reads: tuple[Key[Any], ...] = ()
    optional: tuple[Key[Any], ...] = ()
    writes: tuple[Key[Any], ...] = ()

    def access(self) -> Access:
        return Access(self.name, frozenset(self.reads), frozenset(self.optional), frozenset(self.writes))


def signature_ports(name: str, fn: StageFn) -> tuple[str, ...]:
    """The port names ``fn`` takes after ``ctx``; anything else is a registration error."""
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise SpecError(f"stage {name!r}: its function takes no 'ctx' parameter; a stage is fn(ctx, **ports)")
    ports = tuple(p.name for p in params[1:])
    unknown = [p for p in ports if p not in PORT_PROTOCOLS]
    if unknown:
        raise SpecError(
            f"stage {name!r}: parameter {unknown[0]!r} is not a port; parameters after 'ctx' name the ports "
            f"the stage uses: {choices(PORT_PROTOCOLS)}"
        )
    return ports


BUILTIN_STAGE_MODULES = tuple(
    f"tinkex_cookbook.pipeline.stages.{m}" for m in ("common", "supervised", "replies", "rl", "dpo", "distillation")
)
"""Imported on first lookup of a stage they define, so a run imports only its recipe's stages."""


class StageRegistry:
    def __init__(self, builtin_modules: Sequence[str] = ()) -> None:
        self._entries: dict[str, StageEntry] = {}
        self._pending = list(builtin_modules)

    def _load_until(self, name: str | None) -> None:
        """Import built-in stage modules until ``name`` is registered (all of them for ``None``)."""
        while self._pending and (name is None or name not in self._entries):
            importlib.import_module(self._pending.pop(0))

    def register(
        self, name: str, fn: StageFn, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (),
        writes: Iterable[Key[Any]] = (), replace: bool = False,
    ) -> StageEntry:
        if name in self._entries and not replace:
            raise ValueError(f"stage {name!r} is already registered")
        entry = StageEntry(name, fn, signature_ports(name, fn), tuple(reads), tuple(optional), tuple(writes))
        self._entries[name] = entry
        return entry

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

    def writers(self, key: Key[Any]) -> list[str]:
        """Every registered stage that declares it writes ``key``."""
        self._load_until(None)
        return sorted(name for name, entry in self._entries.items() if key in entry.writes)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load_until(name)
        return name in self._entries


STAGES = StageRegistry(BUILTIN_STAGE_MODULES)


def stage(
    name: str, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (), writes: Iterable[Key[Any]] = (),
) -> Callable[[F], F]:
    """Decorator: register ``fn`` as stage ``name`` in the global registry, with the data it reads and writes."""

    def register(fn: F) -> F:
        STAGES.register(name, fn, reads=reads, optional=optional, writes=writes)
        return fn

    return register


def register_stage(
    name: str, fn: F, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (),
    writes: Iterable[Key[Any]] = (), replace: bool = False,
) -> F:
    STAGES.register(name, fn, reads=reads, optional=optional, writes=writes, replace=replace)
    return fn
