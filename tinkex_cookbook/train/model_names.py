"""A model name is a name, never a path: the check every place that turns one into a folder uses.

Names become folders under the models folder (``<name>`` or ``<org>--<model>``) and
in the caches, so a name holding ``..``, a leading ``/``, a backslash or a control
character would point outside them (``../outside/model`` loaded a folder next to
the models folder). A model whose folder is elsewhere is added to the catalog
instead (a manifest's ``models:`` entry with its ``weights`` folder), where the path
is written by whoever runs the cookbook, not by whoever sends a name.
"""

from __future__ import annotations

import re

from tinkex_cookbook.errors import ConfigError

SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+=-]*")
"""One part of a name between slashes: Hugging Face repo ids (``org/name``), catalog names and
Tinker's ``:variant`` suffix all fit; a part starting with ``.`` (``..``, ``.hidden``) does not."""

MAX_NAME = 200


def model_name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a model name, or ``None`` when it is fine."""
    if not isinstance(name, str) or not name:
        return "is not a non-empty string"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    for part in name.split("/"):
        if not SEGMENT.fullmatch(part):
            return (f"has the part {part!r}: each part between '/' must start with a letter, digit or '_' and "
                    "hold only letters, digits and _ . : + = - (a name is never a path: no '..', no leading '/')")
    return None


def check_model_name(name: object) -> str:
    """``name`` if it is a usable model name, else a ``ConfigError`` naming it and the fix."""
    wrong = model_name_problem(name)
    if wrong is not None:
        raise ConfigError(f"model name {name!r} {wrong}. To use a model folder elsewhere, add it to the catalog "
                          "(a manifest's models: entry with its weights folder) and use that entry's name")
    assert isinstance(name, str)
    return name
