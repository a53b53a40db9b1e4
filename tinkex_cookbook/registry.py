"""One lazy name -> object registry, for recipes, adapters, renderers, models and stages.

A name comes from one of three places, the first that has it winning:

- ``register(name, obj)``: code in this process (a user's ``register_recipe``, or a built-in
  module registering itself while it is imported);
- the built-ins a registry declares as ``name -> "module:attribute"``: imported on first lookup,
  so a run imports only the recipes, renderers and stages it uses (a bare ``"module"`` is imported
  and must register the name itself, as decorator-registered stages do);
- the entry points of the registry's group (``tinkex_cookbook.recipes``, ...) that installed
  distributions declare: a pip-installed plugin. They are read on a miss or when listing, and a
  plugin module is imported only when one of its names is looked up. A built-in name wins over a
  plugin's, so installing a plugin never changes what a shipped name means.

Lookups of unknown names fail with the registered names and the closest one; a plugin that fails
to import fails with a ``PluginError`` naming its distribution and entry point.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, reduce
from typing import Any, Generic, TypeVar

from tinkex_cookbook.errors import (
    CookbookError,
    NameTakenError,
    PluginError,
    UnknownNameError,
    choices,
    did_you_mean,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Declared:
    """A name whose object is imported on first lookup: ``module:attribute``, from a built-in
    declaration (``distribution`` None) or from an installed distribution's entry point."""

    target: str
    distribution: str | None = None
    entry_point: str = ""

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def load(self) -> Any:
        """The attribute, or for a bare ``module`` target just the import (the module registers its names)."""
        module, _, attribute = self.target.partition(":")
        imported = importlib.import_module(module)
        return reduce(getattr, attribute.split("."), imported) if attribute else None


@cache
def installed_entry_points(group: str, path: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """``(name, "module:attribute", distribution)`` of each entry point of ``group`` installed on ``path``
    (``sys.path``, which keys the cache: the per-port adapter registries share one read of it)."""
    from importlib.metadata import entry_points  # ~0.1 s to import: only when plugins are looked for

    return tuple((point.name, point.value, point.dist.name if point.dist else "an unknown distribution")
                 for point in entry_points(group=group))


def check_entry_name(kind: str, entry: str, named: str) -> None:
    """A plugin's entry point must point at the object of its own name: ``name = pkg:thing`` where
    ``thing.name == name``, so the name users type is the name the object answers to."""
    if named != entry:
        raise ValueError(f"the entry point is named {entry!r} but the {kind}'s name is {named!r}")


class Registry(Generic[T]):
    """Names -> objects of one kind; built-ins and plugins imported on first lookup.

    ``adapt(name, loaded)`` turns what a declaration points at into a ``T`` (and checks it); a
    plugin whose object it refuses (a ``TypeError`` or ``ValueError``) gets a ``PluginError``.
    """

    def __init__(
        self,
        kind: str,
        *,
        builtins: Mapping[str, str] | None = None,
        group: str | None = None,
        prefix: str = "",
        where: str = "",
        hint: str = "",
        adapt: Callable[[str, Any], T] | None = None,
        unknown: type[CookbookError] = UnknownNameError,
    ) -> None:
        self.kind, self.group, self.where = kind, group, where
        self._prefix, self._hint, self._adapt, self._unknown = prefix, hint, adapt, unknown
        self._objects: dict[str, T] = {}
        self._declared = {name: Declared(target) for name, target in (builtins or {}).items()}
        self._scanned = group is None

    def register(self, name: str, obj: T, replace: bool = False) -> T:
        """Make ``name`` mean ``obj``; reusing a name needs ``replace=True``."""
        if not replace and self._taken(name, obj):
            raise NameTakenError(
                f"{self.kind} {name!r}{self.where} is already registered; pass replace=True to replace it"
            )
        self._objects[name] = obj
        return obj

    def _taken(self, name: str, obj: T) -> bool:
        if name in self._objects:
            return self._objects[name] is not obj
        # A declared module registering its own names while (or after) it is imported takes nothing.
        return name in self._declared and self._declared[name].module not in sys.modules

    def get(self, name: str) -> T:
        """The object for ``name``, imported if it was only declared."""
        if name in self._objects:
            return self._objects[name]
        if name not in self._declared:
            self._scan()
        if name not in self._declared:
            raise self._unknown(self.describe_unknown(name))
        return self._load(name, self._declared[name])

    def _load(self, name: str, declared: Declared) -> T:
        try:
            loaded = declared.load()
            if name in self._objects:  # the module registered it while being imported
                return self._objects[name]
            if ":" not in declared.target:
                raise LookupError(f"module {declared.module!r} was imported but registered no "
                                  f"{self.kind} {name!r}")
            obj = self._adapt(name, loaded) if self._adapt else loaded
        except Exception as exc:
            if declared.distribution is None:
                raise
            raise PluginError(self._plugin_failure(name, declared, exc)) from exc
        self._objects[name] = obj
        return obj

    def _plugin_failure(self, name: str, declared: Declared, exc: Exception) -> str:
        return (
            f"{self.kind} {name!r}{self.where} comes from the plugin distribution {declared.distribution!r} "
            f"(entry point {declared.entry_point!r} = {declared.target!r} in group {self.group!r}), which "
            f"failed to load: {type(exc).__name__}: {exc}. Fix the plugin or uninstall it "
            f"(pip uninstall {declared.distribution})"
        )

    def _scan(self) -> None:
        """Declare the names installed distributions add through entry points (once per registry)."""
        if self._scanned:
            return
        self._scanned = True
        for entry_point, target, distribution in installed_entry_points(str(self.group), tuple(sys.path)):
            name = entry_point.removeprefix(self._prefix)
            if entry_point.startswith(self._prefix) and name not in self._declared and name not in self._objects:
                self._declared[name] = Declared(target, distribution, entry_point)

    def names(self) -> list[str]:
        """Every name: registered, built-in and from plugins; nothing is imported."""
        self._scan()
        return sorted({*self._objects, *self._declared})

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._objects and name not in self._declared:
            self._scan()
        return name in self._objects or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def values(self) -> list[T]:
        """Every object, in name order: imports every built-in and plugin of this kind."""
        return [self.get(name) for name in self.names()]

    def plugin(self, name: str) -> str | None:
        """The distribution whose entry point adds ``name``, or None for a built-in or registered name."""
        self._scan()
        declared = self._declared.get(name)
        return declared.distribution if declared is not None else None

    def describe_unknown(self, name: str) -> str:
        """Why ``name`` is unknown: the valid names, and the closest one when it looks like a typo."""
        valid = self.names()
        hint = did_you_mean(name, valid) or self._hint
        return f"unknown {self.kind} {name!r}{self.where}; valid {self.kind}s: {choices(valid)}" + (
            f" ({hint})" if hint else "")

    def copy(self) -> Registry[T]:
        """An independent registry with the same names (a test changes it and throws it away)."""
        twin: Registry[T] = Registry(self.kind, group=self.group, prefix=self._prefix, where=self.where,
                                     hint=self._hint, adapt=self._adapt, unknown=self._unknown)
        twin._objects, twin._declared, twin._scanned = dict(self._objects), dict(self._declared), self._scanned
        return twin
