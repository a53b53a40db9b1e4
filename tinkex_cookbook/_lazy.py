"""Attributes of a package imported on first access (PEP 562), so importing the package is cheap.

``tinkex-cookbook --help`` and a run on the ``test`` manifest should not pay for
every recipe, renderer and adapter the package ships; each name is imported
from its module the first time someone reads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` (a module path) and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
