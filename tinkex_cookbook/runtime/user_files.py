"""Reading the files people write (manifests, recipe config files) without trusting them.

A manifest or config file may be a typo, the wrong file, a symlink to a system file, or hostile.
Plain ``yaml.safe_load`` and ``json.loads`` then fail in ways that name no file or never finish:

- an alias (``*a``) is the very object its anchor (``&a``) names, so a few hundred bytes of aliases
  to aliases stand for billions of values, and whatever walks the result (an error quoting it, a
  merge, a JSON dump) runs out of memory or time. Anchors and aliases are refused: no manifest or
  config needs them, and a value written out is one a reader can see.
- YAML's composer recurses once per nesting level, so ``[`` x 2000 is a ``RecursionError``, and so
  is JSON's parser; nesting deeper than ``MAX_DEPTH`` is refused before that, and before anything
  downstream (merging layers, printing) recurses through it.
- a repeated key silently keeps its last value; it is refused, in time linear in the keys.
- a date such as ``2024-13-45`` or an integer too long to print is a bare ``ValueError``.
- a syntax error quotes the offending line, which for a file that is not YAML at all is its content.
- a file of gigabytes is read whole.

Every problem is the caller's typed error (``ManifestError``, ``ConfigError``) naming the file and,
where known, the line and column, but never quoting the file's text.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from tinkex_cookbook import jsonio
from tinkex_cookbook.errors import CookbookError, shown

MAX_DEPTH = 64
"""Nesting levels (mappings and lists inside each other) a manifest, config or ``TINKEX_PORTS`` may use;
real ones use five or six."""
MAX_FILE_BYTES = 1 << 20
"""A manifest or recipe config is a few dozen lines; anything near this size is the wrong file."""
NAME = re.compile(r"[A-Za-z0-9_./-]{1,100}")
"""What a key an error may quote looks like. A file that is no manifest can still parse as a mapping:
``/etc/shadow``'s lines end in ``:``, so each is a key, hash and all; such keys are described, not quoted."""
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_LIMIT = 10**4300
"""Integers this large cannot be printed (``sys.get_int_max_str_digits``), so no error or saved config
could show them; YAML's hexadecimal and binary integers are not held to that limit when read."""


def read_text(path: Path, label: str, error: type[CookbookError], limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``, reading at most ``limit`` bytes (a file's stated size can be wrong)."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
            size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise error(f"{label} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        has = f"{size} bytes" if size > limit else "more"
        raise error(f"{label} is over {limit} bytes (it has {has}); is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label} cannot be read as UTF-8 text ({exc.reason} at byte {exc.start + 1})") from None


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML the cookbook does not accept (an alias, deep nesting, a repeated key, an unreadable value)."""

    def __init__(self, problem: str, mark: yaml.Mark | None, context: str | None = None,
                 context_mark: yaml.Mark | None = None) -> None:
        super().__init__(context, context_mark, problem, mark)


class StrictYamlLoader(yaml.SafeLoader):
    """A safe loader (plain data only) that refuses anchors and aliases, nesting past ``MAX_DEPTH`` and
    repeated keys, and reports an unreadable value with its line instead of a bare ``ValueError``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            kind = "a YAML alias ('*')" if isinstance(event, yaml.AliasEvent) else "a YAML anchor ('&')"
            raise _Refused(
                f"found {kind}; anchors and aliases are not accepted (a few lines of them can stand "
                "for billions of values): write each value out",
                event.start_mark,
            )
        nests = isinstance(event, yaml.CollectionStartEvent)
        self._depth += nests
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests mappings and lists deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= nests

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # ``<<: {...}`` merges into the mapping; it is no key of it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it with its line
                continue
            if repeated:
                raise _Refused(f"found duplicate key {quoted_key(key)}; keep one entry (only the last would count)",
                               key_node.start_mark, "while constructing a mapping", node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise _Refused("found a YAML tag ('!') that names no plain data type; only strings, numbers, "
                       "booleans, lists and mappings are read", node.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. the date 2024-13-45
            raise _Refused(f"a {node.tag.rsplit(':', 1)[-1]} value cannot be read ({str(exc)[:80]})",
                           node.start_mark) from None
        if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
            raise _Refused("an integer of more than 4300 digits", node.start_mark)
        return value


# ``None`` is PyYAML's key for any tag without a constructor; the base class registers its own function there
StrictYamlLoader.add_constructor(None, StrictYamlLoader.construct_undefined)  # pyright: ignore[reportArgumentType]


def load_yaml(text: str, label: str, error: type[CookbookError]) -> Any:
    """The data of a YAML document, or ``error`` naming ``label`` and the line and column of the problem."""
    try:
        return yaml.load(text, Loader=StrictYamlLoader)  # a SafeLoader: plain data only
    except _Refused as exc:
        raise error(f"{label}, {_where(exc)}") from None
    except yaml.MarkedYAMLError as exc:
        raise error(f"{label} is not valid YAML: {_where(exc)}") from None
    except yaml.reader.ReaderError as exc:  # a control character: YAML text must be printable
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise error(f"{label} is not valid YAML: line {line}: the control character #x{code:04x} "
                    "is not allowed in YAML text") from None
    except yaml.YAMLError as exc:
        raise error(f"{label} is not valid YAML ({type(exc).__name__})") from None


def _where(exc: yaml.MarkedYAMLError) -> str:
    """``line L, column C: problem (context at line ...)``: PyYAML's own text without its quoted snippet."""
    mark = exc.problem_mark or exc.context_mark
    text = (f"{_position(mark)}: " if mark else "") + (exc.problem or exc.context or "unreadable")[:160]
    if exc.problem and exc.context:
        text += f" ({exc.context}" + (f" at {_position(exc.context_mark)})" if exc.context_mark else ")")
    return text


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def load_json(text: str, label: str, error: type[CookbookError]) -> Any:
    """The value of a JSON document that repeats no key and nests at most ``MAX_DEPTH`` deep, or ``error``."""
    value, wrong = jsonio.problem(text)  # bad JSON, a RecursionError, an integer too long to read
    if wrong is not None:
        raise error(f"{label} {wrong}")
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs)
    except _RepeatedKeyError as exc:
        raise error(f"{label} is not valid JSON: {exc}") from None
    check_depth(value, label, error)
    return value


class _RepeatedKeyError(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (plain JSON loading keeps only the last)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKeyError(f"repeated key {quoted_key(key)}; keep one entry (only the last would count)")
        seen.add(key)
    return dict(pairs)


def is_name(key: object) -> bool:
    return isinstance(key, str) and NAME.fullmatch(key) is not None


def quoted_key(key: object) -> str:
    """A key as an error may show it: quoted when it looks like a name (or is a number), else described."""
    if is_name(key) or isinstance(key, int | float | bool) or key is None:
        return shown(key)
    return f"(a {type(key).__name__} of {len(key)} characters that is no name)" if isinstance(key, str) else (
        f"(a {type(key).__name__})")


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply mappings and lists nest in ``value`` (0 for a scalar), counting no further than
    ``limit + 1``; iterative, so any depth is measured without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_depth(value: Any, label: str, error: type[CookbookError]) -> None:
    if nesting_depth(value) > MAX_DEPTH:
        raise error(f"{label} nests mappings and lists deeper than {MAX_DEPTH} levels")
