"""Checkpoint records: ``checkpoints.jsonl`` lists every saved state of a run, oldest first.

Each record is one line appended through ``BlobStore.append`` (``append_checkpoint``),
so recording a checkpoint costs the same at the first and the thousandth. A crash
in the middle of an append can leave only a *torn tail*, bytes after the last
newline: that record was never finished, so it is skipped, exactly as if the crash
had come just before it (the run resumes from the checkpoint before, and the store
drops the tail at its next append). Every complete line was written whole, so one
that does not parse, lacks a field or holds a wrong type means the file was damaged
from outside (an edit, a partial copy). Loading it is then a ``BlobStoreError``
naming the file, the line, the last intact checkpoint and the fix, rather than a
silent fall back to an earlier checkpoint: resuming from there would redo steps and
rewrite ``metrics.jsonl`` past that point, destroying what the damaged line may
still say.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, choices
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.ports.blobs import whole_lines


@dataclass(frozen=True)
class CheckpointRecord:
    name: str
    step: int
    epoch: int
    state_path: str | None = None
    sampler_path: str | None = None
    final: bool = False
    tokens_seen: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    """Recipe-specific paths a resume needs (an RL run's current sampler weights)."""

    def require(self, key: str, where: str) -> str:
        """``extra[key]`` for a resume that cannot go on without it; ``where`` names the checkpoint file."""
        if key not in self.extra:
            raise BlobStoreError(
                f"checkpoint {self.name!r} (step {self.step}) in {where} has no {key!r} in its 'extra' field "
                f"(found {choices(self.extra)}); this recipe's resume needs it. Fix: restore the file from a copy, "
                "or delete this line to resume from the checkpoint before it"
            )
        return self.extra[key]


REQUIRED = ("name", "step", "epoch")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


FIELD_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": ("a string", lambda value: isinstance(value, str)),
    "step": ("an integer >= 0", _count),
    "epoch": ("an integer >= 0", _count),
    "state_path": ("a string or null", _optional_text),
    "sampler_path": ("a string or null", _optional_text),
    "final": ("true or false", lambda value: isinstance(value, bool)),
    "tokens_seen": ("an integer >= 0", _count),
    "extra": ("an object of strings", _text_map),
}
"""What each field of a line must hold; ``json.loads`` alone would let ``"step": "3"`` through."""


def load_checkpoints(store: BlobStore, key: str) -> list[CheckpointRecord]:
    """Every record in ``key``, oldest first; none if the file does not exist. A torn last line is skipped.

    A damaged file raises ``BlobStoreError`` (see the module docstring), as does
    an existing file with no record that is not just one torn line: the cookbook never writes one.
    """
    try:
        data = store.read(key)
    except BlobNotFoundError:
        return []
    records: list[CheckpointRecord] = []
    bad: list[tuple[int, str]] = []
    lines = whole_lines(data)
    for lineno, raw in enumerate(lines, start=1):
        if raw.strip():
            parsed = _parse_record(raw)
            if isinstance(parsed, str):
                bad.append((lineno, parsed))
            else:
                records.append(parsed)
    if bad:
        raise _damaged(store, key, records, [n for n, _ in bad], f"line {bad[0][0]} {bad[0][1]}")
    if not records and (lines or b"\n" in data or not data):
        raise _damaged(store, key, [], [], f"it exists but holds no checkpoint ({len(data)} bytes)")
    return records


def _parse_record(raw: bytes) -> CheckpointRecord | str:
    """The record on a line, or what is wrong with it."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text ({exc.reason} at column {exc.start + 1})"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        where = exc.msg if exc.msg.endswith(" at") else f"{exc.msg} at"
        return f"is not JSON ({where} column {exc.colno}; the line starts {line[:40]!r})"
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object"
    known = {f.name for f in fields(CheckpointRecord)}
    problems = [f"unknown field {k!r} (valid: {choices(known)})" for k in row if k not in known]
    problems += [f"missing field {k!r}" for k in REQUIRED if k not in row]
    problems += [f"field {k!r} must be {FIELD_CHECKS[k][0]}, got {row[k]!r:.40}"
                 for k in FIELD_CHECKS if k in row and not FIELD_CHECKS[k][1](row[k])]
    return "has " + "; ".join(problems) if problems else CheckpointRecord(**row)


def _damaged(
    store: BlobStore, key: str, intact: list[CheckpointRecord], bad_lines: list[int], problem: str
) -> BlobStoreError:
    """The error for a damaged checkpoint file: where, what, the last intact record, and the fix."""
    where = f"checkpoint file {store.uri(key)}"
    lines = ", ".join(map(str, bad_lines))
    if intact:
        last = intact[-1]
        fix = (f"delete the damaged line(s) ({lines}) to resume from the last intact checkpoint, {last.name!r} "
               f"(step {last.step}), or restore the file from a copy")
    else:
        fix = ("no intact checkpoint is left in it; restore the file from a copy, or delete it to start the "
               "run over (its steps are then recomputed and its checkpoints overwritten)")
    return BlobStoreError(f"{where} is damaged: {problem}. Fix: {fix}")


def append_checkpoint(store: BlobStore, key: str, record: CheckpointRecord) -> None:
    """Add ``record`` as one line at the end of the file (one append: it never rewrites earlier records)."""
    row = {k: v for k, v in asdict(record).items() if k != "extra" or v}
    store.append(key, (json.dumps(row, sort_keys=True) + "\n").encode())
