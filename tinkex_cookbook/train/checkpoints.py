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

One definition checks a record on both sides: ``record_problems`` (the fields of
``CheckpointRecord`` and ``FIELD_CHECKS``) refuses a record before it is appended and
flags a line when it is read. Read back, the records are checked against each other and
the run: steps only grow from line to line (a final record may repeat the step of the
periodic one before it), and none lies beyond the run's planned steps when the reader
knows them. A line breaking either is damaged, reported as above.

A backend that writes its checkpoints as files through the blob store (the local one,
``FileCheckpoints``) has each file's sha256 recorded in the record that names it
(``sha256``, by path), hashed once when the record is written. Every load through a run's
record checks them first, reading the file in pieces (``resume_point`` for a resume,
``check_picked`` for chat, sample, eval and export): a file changed since it was saved,
by a bit flip or a cut, is the same ``BlobStoreError`` as one that does not decode, naming
the record and the checkpoint before it whose files are intact, with the fix. Tinker keeps
its checkpoints server-side: its records hold no checksum, and neither do records written
before checksums were; their files are loaded unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tinkex_cookbook import jsonio
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, choices
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.ports.blobs import whole_lines
from tinkex_cookbook.ports.training import FileCheckpoints


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
    sha256: dict[str, str] = field(default_factory=dict)
    """The sha256 (hex) of each file the record names, by its path (``paths``), for a backend that writes its
    checkpoints as files; empty for Tinker's, and in records written before checksums."""

    def require(self, key: str, where: str) -> str:
        """``extra[key]`` for a resume that cannot go on without it; ``where`` names the checkpoint file."""
        if key not in self.extra:
            raise BlobStoreError(
                f"checkpoint {self.name!r} (step {self.step}) in {where} has no {key!r} in its 'extra' field "
                f"(found {choices(self.extra)}); this recipe's resume needs it. Fix: restore the file from a copy, "
                "or delete this line to resume from the checkpoint before it"
            )
        return self.extra[key]

    def paths(self) -> list[str]:
        """Every value of the record that may name saved weights: its state, its sampler, its ``extra``."""
        named = [self.state_path, self.sampler_path, *self.extra.values()]
        return list(dict.fromkeys(p for p in named if p))


REQUIRED = ("name", "step", "epoch")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _digests(value: Any) -> bool:
    return _text_map(value) and all(
        len(v) == 64 and all(c in "0123456789abcdef" for c in v) for v in value.values())


FIELD_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": ("a string", lambda value: isinstance(value, str)),
    "step": ("an integer >= 0", _count),
    "epoch": ("an integer >= 0", _count),
    "state_path": ("a string or null", _optional_text),
    "sampler_path": ("a string or null", _optional_text),
    "final": ("true or false", lambda value: isinstance(value, bool)),
    "tokens_seen": ("an integer >= 0", _count),
    "extra": ("an object of strings", _text_map),
    "sha256": ("an object of paths to sha256 digests (64 characters 0-9a-f)", _digests),
}
"""What each field of a line must hold; ``json.loads`` alone would let ``"step": "3"`` through."""


def record_problems(row: Mapping[str, Any]) -> list[str]:
    """What is wrong with a record's fields (none: ``CheckpointRecord(**row)`` is one the cookbook wrote).
    Checked before a record is appended and when a line is read, so both sides agree on what a record is."""
    known = {f.name for f in fields(CheckpointRecord)}
    problems = [f"unknown field {k!r} (valid: {choices(known)})" for k in row if k not in known]
    problems += [f"missing field {k!r}" for k in REQUIRED if k not in row]
    problems += [f"field {k!r} must be {FIELD_CHECKS[k][0]}, got {row[k]!r:.40}"
                 for k in FIELD_CHECKS if k in row and not FIELD_CHECKS[k][1](row[k])]
    if not problems and row.get("sha256"):
        paths = CheckpointRecord(**row).paths()
        problems += [f"field 'sha256' names {path!r:.80}, which is none of the record's paths"
                     for path in row["sha256"] if path not in paths]
    return problems


def load_checkpoints(store: BlobStore, key: str, total_steps: int | None = None) -> list[CheckpointRecord]:
    """Every record in ``key``, oldest first; none if the file does not exist. A torn last line is skipped.

    A damaged file raises ``BlobStoreError`` (see the module docstring), as does
    an existing file with no record that is not just one torn line: the cookbook never writes one.
    ``total_steps``, when the caller knows the run's planned steps, also makes a record beyond them damage.
    """
    return [record for _, record in numbered_checkpoints(store, key, total_steps)]


def numbered_checkpoints(
    store: BlobStore, key: str, total_steps: int | None = None
) -> list[tuple[int, CheckpointRecord]]:
    """``load_checkpoints`` with each record's line number in the file (1-based), for errors that name it."""
    try:
        data = store.read(key)
    except BlobNotFoundError:
        return []
    records: list[tuple[int, CheckpointRecord]] = []
    bad: list[tuple[int, str]] = []
    lines = whole_lines(data)
    for lineno, raw in enumerate(lines, start=1):
        if raw.strip():
            parsed = _parse_record(raw)
            if isinstance(parsed, str):
                bad.append((lineno, parsed))
                continue
            problem = _out_of_order(parsed, records[-1] if records else None, total_steps)
            if problem:
                bad.append((lineno, problem))
            else:
                records.append((lineno, parsed))
    intact = [record for _, record in records]
    if bad:
        raise _damaged(store, key, intact, [n for n, _ in bad], f"line {bad[0][0]} {bad[0][1]}")
    if not records and (lines or b"\n" in data or not data):
        raise _damaged(store, key, [], [], f"it exists but holds no checkpoint ({len(data)} bytes)")
    return records


def _parse_record(raw: bytes) -> CheckpointRecord | str:
    """The record on a line, or what is wrong with it."""
    row, wrong = jsonio.problem(raw)
    if wrong is not None:
        start = raw[:40].decode("utf-8", "replace")
        return f"{wrong}; the line starts {start!r}" if wrong.startswith("is not JSON") else wrong
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object"
    problems = record_problems(row)
    return "has " + "; ".join(problems) if problems else CheckpointRecord(**row)


def _out_of_order(
    record: CheckpointRecord, before: tuple[int, CheckpointRecord] | None, total_steps: int | None
) -> str | None:
    """What makes ``record`` impossible after the intact record ``before`` in a run of ``total_steps``."""
    if total_steps is not None and record.step > total_steps:
        return f"has field 'step' {record.step}, beyond the run's {total_steps} planned steps"
    if before is None:
        return None
    lineno, last = before
    if record.step > last.step or (record.step == last.step and record.final and not last.final):
        return None
    return (f"has field 'step' {record.step}, not after line {lineno}'s step {last.step} (a run's steps only "
            "grow from line to line; a final record may repeat the step before it)")


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


def append_checkpoint(
    store: BlobStore, key: str, record: CheckpointRecord, files: FileCheckpoints | None = None
) -> CheckpointRecord:
    """Add ``record`` as one line at the end of the file (one append: it never rewrites earlier records).

    With ``files`` (the backend, when it writes checkpoints as files), the sha256 of each file the record
    names is recorded with it. A record that would not read back is refused (``ValueError``), before
    anything is written. Returns the record as written.
    """
    if files is not None:
        digests = {path: found.sha256 for path in record.paths() if (found := files.checkpoint_file(path))}
        record = CheckpointRecord(**{**asdict(record), "sha256": {**record.sha256, **digests}})
    row = record_row(record)
    problems = record_problems(row)
    if problems:
        raise ValueError(f"checkpoint {record.name!r} (step {record.step}) would not read back from "
                         f"{store.uri(key)}: it {'; '.join(problems)}")
    store.append(key, (jsonio.dump(row, sort_keys=True) + "\n").encode())
    return record


def record_row(record: CheckpointRecord) -> dict[str, Any]:
    """The line a record is written as: its fields, without an empty ``extra`` or ``sha256``."""
    return {k: v for k, v in asdict(record).items() if k not in ("extra", "sha256") or v}


# --- the files a record names ------------------------------------------------------------------------


def file_problem(record: CheckpointRecord, paths: Sequence[str], files: FileCheckpoints
                 ) -> tuple[type[BlobStoreError], str] | None:
    """The first of ``paths`` whose file no longer holds what ``record`` recorded, as (the error class, what is
    wrong, naming the path and the file); ``None`` when all match or nothing was recorded for them."""
    for path in paths:
        want = record.sha256.get(path)
        if want is None:
            continue
        try:
            found = files.checkpoint_file(path)
        except BlobNotFoundError as exc:
            return BlobNotFoundError, str(exc)
        if found is not None and found.sha256 != want:
            return BlobStoreError, (
                f"checkpoint at {path!r} is corrupt ({found.uri}, {found.size} bytes): its sha256 is "
                f"{found.sha256[:16]}..., not the {want[:16]}... recorded when it was saved")
    return None


def _good_before(records: Sequence[tuple[int, CheckpointRecord]], files: FileCheckpoints
                 ) -> tuple[int, CheckpointRecord] | None:
    """The newest of ``records`` whose files still hold what it recorded (unrecorded files count as intact)."""
    for lineno, record in reversed(records):
        if record.state_path and file_problem(record, record.paths(), files) is None:
            return lineno, record
    return None


def _file_error(wrong: tuple[type[BlobStoreError], str], fix: str) -> BlobStoreError:
    error, problem = wrong
    return error(f"{problem}; {fix}")


def resume_point(
    store: BlobStore, key: str, total_steps: int | None, files: FileCheckpoints | None
) -> CheckpointRecord | None:
    """The record a run resumes from, its last, once checked: the file is intact and fits the run
    (``numbered_checkpoints``), the record names a saved state, and every file it names still holds the bytes
    recorded for it (with ``files``, the backend). ``None`` for a run with no checkpoint yet."""
    numbered = numbered_checkpoints(store, key, total_steps)
    if not numbered:
        return None
    lineno, last = numbered[-1]
    if not last.state_path:
        raise _damaged(store, key, [r for _, r in numbered[:-1]], [lineno],
                       f"line {lineno} has field 'state_path' {last.state_path!r}, but the checkpoint a run "
                       "resumes from must name its saved state")
    wrong = file_problem(last, last.paths(), files) if files is not None else None
    if wrong is None:
        return last
    raise _file_error(wrong, _resume_fix(store, key, numbered, files))


def _resume_fix(store: BlobStore, key: str, numbered: list[tuple[int, CheckpointRecord]],
                files: FileCheckpoints | None) -> str:
    """Where a broken last record is, and how to resume from the checkpoint before it whose files are intact."""
    lineno, last = numbered[-1]
    uri = store.uri(key)
    good = _good_before(numbered[:-1], files) if files is not None else (numbered[-2] if len(numbered) > 1 else None)
    said = f"it is checkpoint {last.name!r} (step {last.step}), line {lineno} of {uri}. Fix: restore the file from a copy"
    if good is None:
        none = "no checkpoint before it has intact files" if len(numbered) > 1 else "it is the run's first checkpoint"
        return (f"{said}, or delete {uri} to start the run over ({none}; its steps are then recomputed and its "
                "checkpoints overwritten)")
    lines = f"line {lineno}" if good[0] + 1 == lineno else f"lines {good[0] + 1}-{lineno}"
    checked = ", whose files match their checksums" if files is not None and good[1].sha256 else ""
    return (f"{said}, or delete {lines} of it to resume from the checkpoint before it, {good[1].name!r} "
            f"(step {good[1].step}){checked}")


def unloadable(store: BlobStore, key: str, record: CheckpointRecord, error: BlobStoreError,
               files: FileCheckpoints | None) -> BlobStoreError:
    """``error`` (the backend could not load ``record``'s saved state) with the record and the way back named,
    as for a file that fails its checksum: records without checksums fail only here."""
    numbered = numbered_checkpoints(store, key)
    if not numbered or numbered[-1][1] != record:
        return error
    problem = str(error).partition(" Fix: ")[0].rstrip(". ")  # the backend's own fix is the generic one
    return type(error)(f"{problem}; {_resume_fix(store, key, numbered, files)}")


def check_picked(records: Sequence[CheckpointRecord], index: int, paths: Sequence[str], files: FileCheckpoints,
                 where: str) -> None:
    """Before ``paths`` of ``records[index]`` (a run's checkpoint picked by name, in the file ``where``) are
    loaded to chat, sample, evaluate or export: their files still hold the bytes recorded for them."""
    record = records[index]
    wrong = file_problem(record, paths, files)
    if wrong is None:
        return
    good = _good_before(list(enumerate(records[:index], start=1)), files)
    fix = (f", or pick the checkpoint before it: --checkpoint {good[1].name!r} (step {good[1].step})" if good
           else " (no checkpoint before it has intact files, so there is none to pick instead)" if index
           else " (it is the run's first checkpoint, so there is none before it to pick instead)")
    raise _file_error(wrong, f"it is checkpoint {record.name!r} (step {record.step}) in {where}. "
                      f"Fix: restore the file from a copy{fix}")
