"""JSON in and out of the files a run trusts, with errors that say where.

``json.loads`` fails on hostile text in several ways that name no file: a
``JSONDecodeError``, a ``UnicodeDecodeError`` for bytes that are not UTF-8, a
``RecursionError`` for deep nesting (``[`` x 2000), a ``ValueError`` for an
integer of more than 4300 digits. ``parse`` turns each into the caller's typed
error naming the file (and line) and the problem. ``dump`` refuses NaN and
infinity, which ``json.dumps`` writes as bare ``NaN`` that strict parsers reject.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tinkex_cookbook.errors import CookbookError


def problem(data: str | bytes) -> tuple[Any, str | None]:
    """``(value, None)`` for valid JSON text, else ``(None, what is wrong)`` in a few words."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"is not UTF-8 text ({exc.reason} at byte {exc.start + 1})"
    try:
        return json.loads(data), None
    except json.JSONDecodeError as exc:
        return None, f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return None, "nests arrays or objects too deeply to read"
    except ValueError as exc:  # e.g. an integer past the interpreter's digit limit
        if "integer string conversion" in str(exc):
            return None, (f"holds a value that cannot be read (an integer of more than {sys.get_int_max_str_digits()} "
                          "digits; write such a number as a string)")
        return None, f"holds a value that cannot be read ({str(exc)[:120]})"


def parse(data: str | bytes, where: str, error: type[CookbookError]) -> Any:
    """The JSON value of ``data``, or ``error`` naming ``where`` (a file, ``file line N``) and the problem."""
    value, wrong = problem(data)
    if wrong is not None:
        raise error(f"{where} {wrong}")
    return value


def dump(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinity (``ValueError``) instead of writing invalid JSON."""
    return json.dumps(value, allow_nan=False, **kwargs)
