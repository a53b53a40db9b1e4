"""The error tree as documented: the docstring of ``tinkex_cookbook.errors`` matches the classes.

``test_errors.py`` checks a hand-written table; this file reads the tree drawn in
the module docstring, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import builtins
import inspect
import pickle
import re

import pytest

from tinkex_cookbook import errors
from tinkex_cookbook.errors import CookbookError

BRANCH = re.compile(r"^(?P<indent>[ │]*)[├└]── (?P<name>\w+)(?: \((?P<stdlib>\w+)\))?")


def documented_tree() -> dict[str, tuple[str, str | None]]:
    """``{class name: (documented parent, documented stdlib base or None)}`` from the docstring."""
    tree: dict[str, tuple[str, str | None]] = {}
    parents = ["CookbookError"]
    for line in (errors.__doc__ or "").splitlines():
        match = BRANCH.match(line.removeprefix("    "))
        if not match:
            continue
        depth = len(match["indent"]) // 4
        del parents[depth + 1 :]
        tree[match["name"]] = (parents[depth], match["stdlib"])
        parents.append(match["name"])
    return tree


TREE = documented_tree()
ERROR_CLASSES = sorted(
    (obj for obj in vars(errors).values() if inspect.isclass(obj) and issubclass(obj, CookbookError)),
    key=lambda cls: cls.__name__,
)


def test_the_docstring_tree_parses() -> None:
    assert TREE["UnknownAdapterError"] == ("ManifestError", "LookupError")
    assert TREE["BlobNotFoundError"] == ("BlobStoreError", "KeyError")
    assert TREE["StageError"] == ("CookbookError", "RuntimeError")


def test_docstring_lists_exactly_the_error_classes() -> None:
    assert {cls.__name__ for cls in ERROR_CLASSES} == set(TREE) | {"CookbookError"}


@pytest.mark.parametrize("name", sorted(TREE))
def test_class_inherits_its_documented_parent_and_stdlib_type(name: str) -> None:
    cls = getattr(errors, name)
    parent, stdlib = TREE[name]
    assert issubclass(cls, getattr(errors, parent))
    if stdlib is not None:
        assert issubclass(cls, getattr(builtins, stdlib))


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_pickles_under_every_protocol(cls: type[CookbookError]) -> None:
    original = cls("adapter 'x' for port 'blob_store': it broke")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(original, protocol=protocol))
        assert type(copy) is cls and copy.args == original.args
        assert str(copy) == "adapter 'x' for port 'blob_store': it broke"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_str_is_the_bare_message(cls: type[CookbookError]) -> None:
    assert str(cls("key 'a/b' not found")) == "key 'a/b' not found"  # KeyError would add quotes
    assert str(cls()) == cls.__name__
