"""The one reader of a run's append-only lines files: ``metrics.jsonl`` (a JSON object a line) and ``run.log``
(a line of UTF-8 text each), damaged or not.

The cookbook only appends whole lines to them (``BlobStore.append``), so a crash
leaves at most a *torn tail*, bytes after the last newline: not a line yet, skipped
(``whole_lines``), and dropped by the store before its next append. A complete line
that does not read (bytes that are not UTF-8; in ``metrics.jsonl`` also text that is
not JSON, a JSON value that is not an object, nesting too deep or a number too long
to read: ``jsonio.problem``) was damaged by something else. Where it sits decides
what it means:

* after the last good line, a *damaged tail*: what a disk, a copy or an editor that
  cut the file short leaves; every line before it is intact. Readers ignore it, and a
  resume cuts the file back to the good lines (``mend``) with a warning naming the
  file and what was dropped.
* before a good line, a *damaged middle*: a row in the run's record is gone or
  garbled, and lines were appended after it. A resume stops with ``BlobStoreError``
  naming the file, the line, the problem and the fix, and leaves every file as it
  was: cutting there would throw good rows away. Browsing (``runs list``) skips
  such a folder and says why.

A line of only blanks is neither: it is skipped, as ``checkpoints.jsonl``'s reader does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports.blobs import BlobStore


class Kind(Enum):
    """What a good line of the file is."""

    ROWS = "rows"
    """A JSON object (``metrics.jsonl``)."""
    TEXT = "text"
    """UTF-8 text (``run.log``)."""


@dataclass(frozen=True)
class BadLine:
    number: int
    """1-based, as an editor counts."""
    problem: str
    """What is wrong, in a few words (``is not JSON (...)``)."""


@dataclass
class LinesFile:
    """What a lines file holds: its good lines, in order, and the damaged ones."""

    where: str
    """The file, as a user finds it (the store's URI)."""
    items: list[Any] = field(default_factory=list)
    """The good lines: dicts for ``Kind.ROWS``, strings for ``Kind.TEXT``."""
    raw: list[bytes] = field(default_factory=list)
    """The good lines' bytes, without their newlines, in step with ``items``."""
    bad: list[BadLine] = field(default_factory=list)
    good_bytes: int = 0
    """How many bytes from the start hold every line up to and including the last good one."""
    size: int = 0
    last_good: int = 0
    """The last good line's number (0: none)."""

    @property
    def middle(self) -> list[BadLine]:
        """Damaged lines with a good line after them."""
        return [line for line in self.bad if line.number < self.last_good]

    @property
    def tail(self) -> list[BadLine]:
        """Damaged lines after the last good one."""
        return [line for line in self.bad if line.number > self.last_good]

    def middle_error(self) -> BlobStoreError | None:
        """The error a damaged middle is (``None`` without one): the file, the line, the problem, the fix."""
        middle = self.middle
        if not middle:
            return None
        first = middle[0]
        others = f" (damaged too: line {', '.join(str(b.number) for b in middle[1:6])})" if len(middle) > 1 else ""
        return BlobStoreError(
            f"{self.where} line {first.number} {first.problem}{others}, and whole lines follow it up to line "
            f"{self.last_good}: the file was damaged from outside (a crash only ever leaves a damaged end). "
            f"Fix: restore the file from a copy, or delete line {first.number}{' and the others' if others else ''} "
            "(what it held is lost), then run again"
        )

    def tail_note(self, verb: str) -> str | None:
        """One line for a damaged tail (``None`` without one): the file, what was dropped, and why."""
        tail = self.tail
        if not tail:
            return None
        after = f"after line {self.last_good}, its last whole line" if self.last_good else "(no whole line before them)"
        dropped = self.size - self.good_bytes
        return (f"{self.where}: {verb} {len(tail)} damaged line{'s' if len(tail) > 1 else ''} at its end "
                f"({dropped} bytes) {after}: line {tail[0].number} {tail[0].problem}")


def parse_lines(data: bytes, kind: Kind, where: str) -> LinesFile:
    """Every whole line of ``data`` (a torn tail is not one) sorted into good and damaged."""
    found = LinesFile(where, size=len(data))
    offset = 0
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        offset += len(raw) + 1
        if not raw.strip():
            continue
        value, wrong = _line(raw, kind)
        if wrong is not None:
            found.bad.append(BadLine(number, wrong))
            continue
        found.items.append(value)
        found.raw.append(raw)
        found.good_bytes, found.last_good = offset, number
    return found


def _line(raw: bytes, kind: Kind) -> tuple[Any, str | None]:
    if kind is Kind.TEXT:
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"is not UTF-8 text ({exc.reason} at byte {exc.start + 1})"
    value, wrong = problem(raw)
    if wrong is None and not isinstance(value, dict):
        return None, f"is a JSON {_json_type(value)}, not an object (a row)"
    return value, wrong


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_lines_file(store: BlobStore, key: str, kind: Kind) -> LinesFile:
    """The file under ``key``, sorted into good and damaged lines; empty if there is none."""
    return parse_lines(_read(store, key), kind, store.uri(key))


def mend(store: BlobStore, files: Sequence[tuple[str, Kind]]) -> list[str]:
    """Before a run appends to ``files`` again: a damaged middle in any of them raises its ``BlobStoreError``
    before any file changes; then each damaged tail, and a torn one, is cut off (one atomic ``write`` of the
    good lines), so the file ends in whole lines even if the run appends nothing more. Returns a warning line
    per damaged tail cut (a torn tail is what a crash leaves: cut without a word)."""
    found = []
    for key, kind in files:
        data = _read(store, key)
        lines = parse_lines(data, kind, store.uri(key))
        if (error := lines.middle_error()) is not None:
            raise error
        found.append((key, data, lines))
    notes = []
    for key, data, lines in found:
        note = lines.tail_note("cut")
        if note is not None:
            notes.append(note + "; the run goes on from the lines before")
        if len(data) > lines.good_bytes:  # a torn tail too (what a crash leaves): the file must end in whole lines
            store.write(key, data[: lines.good_bytes])
    return notes


def _read(store: BlobStore, key: str) -> bytes:
    try:
        return store.read(key)
    except BlobNotFoundError:
        return b""
