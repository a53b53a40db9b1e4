"""Values ``json.loads`` lets through that later steps cannot use, found while the reader knows where they are.

Python's parser reads ``"\\ud800"`` (a lone surrogate: no character, so no UTF-8 encoding) into a ``str``
that breaks a tokenizer, a renderer or a file write long after the file was read, and it reads the
non-standard literals ``NaN`` and ``Infinity`` into floats that poison a loss weight or a metric. An integer
of a few thousand digits (within the parser's limit) cannot become a float at all. ``unusable`` finds the
first such value in a parsed document and says where it is, so a reader can reject the row holding it
while it still knows the file and the line.
"""

from __future__ import annotations

import math
import re
from typing import Any

FLOAT_BITS = 1024
"""An integer of more bits than this is past the largest float (about 1.8e308): no weight or metric."""
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_SHAPES = bytes(48 if 48 <= b <= 57 else b if b in b"eE+" else 32 for b in range(256)).replace(b"E", b"e")
"""Digits to ``0``, exponent marks kept, everything else a space: a number's shape, found by substring."""
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_unusable(text: str | bytes) -> bool:
    """False when the JSON ``text`` surely parses to no unusable value, so ``unusable`` need not walk it: a
    few scans of the text, much cheaper than walking every row of a large file. An unusable value needs a
    surrogate escape, a ``NaN`` or ``Infinity`` literal, a run of 300 digits, or a three-digit exponent
    (``1e400`` parses to infinity); text decoded from UTF-8 holds no surrogate of its own."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if b"NaN" in data or b"Infinity" in data or (b"\\u" in data and _SURROGATE_ESCAPE.search(data)):
        return True
    shapes = data.translate(_NUMBER_SHAPES)
    return b"0" * 300 in shapes or b"e000" in shapes or b"e+000" in shapes


def unusable(value: Any) -> tuple[str, str] | None:
    """``(field, problem)`` for the first unusable value in ``value`` in document order, else ``None``.
    ``field`` is a path such as ``messages[0].content`` (``""``: the value itself).

    Iterative, not recursive: parsed JSON may nest as deep as the parser allows, close to the
    interpreter's recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            wrong = text_problem(item)
            if wrong is not None:
                return path, wrong
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, (f"is {item!r} (a NaN or Infinity literal), which JSON does not allow. Fix: write a number, "
                              "or null")
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > FLOAT_BITS:
                return path, (f"is an integer of {len(str(abs(item)))} digits, too large to use as a number. Fix: write "
                              "it as a string")
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                wrong = text_problem(key) if isinstance(key, str) else None
                if wrong is not None:
                    return _join(path, key), f"(a key) {wrong}"
                children.append((_join(path, key), child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((f"{path}[{number}]", child) for number, child in reversed(list(enumerate(item))))
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (it holds a lone surrogate), else ``None``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds a lone surrogate {text[exc.start]!r} at character {exc.start + 1}: not a character, "
                "so it has no UTF-8 encoding. Fix: write the character itself, or a surrogate pair")
    return None


def _join(path: str, key: object) -> str:
    name = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else f"[{key!r}]"
    if name.startswith("["):
        return f"{path}{name}"
    return f"{path}.{name}" if path else name
