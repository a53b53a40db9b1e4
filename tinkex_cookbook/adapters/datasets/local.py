"""Local dataset store: JSON and JSONL files on disk, so a recipe runs without any hub.

``load_dataset(name, split)`` tries, in order: ``name`` itself when it is a
``.json``/``.jsonl`` file (absolute or under the root), ``root/name/split.jsonl``,
``root/name/split.json``, and for the train split ``root/name.jsonl`` and
``root/name.json``; last, a dataset shipped inside the package under that name
(``chitchat``: 300 + 40 real chat conversations), so the ``local`` manifest
trains out of the box and a user's own files of the same name take precedence.
With the ``config`` option only ``root/name/config/split.jsonl`` (or ``.json``) is
read, the layout of a hub dataset with configurations (``openai/gsm8k/main/train.jsonl``).

With ``streaming=True`` a JSONL file is read line by line as the rows are iterated
(a ``LazyDataset``: no length, never held whole); a JSON file is one document, so it
is read whole either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from tinkex_cookbook.adapters.datasets.lazy import LazyDataset
from tinkex_cookbook.adapters.datasets.memory import ListDataset, parse_limit
from tinkex_cookbook.errors import DatasetError, DatasetNotFoundError, choices
from tinkex_cookbook.json_values import may_hold_unusable, unusable
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports.datasets import Row

SUFFIXES = (".jsonl", ".json")
BOM = b"\xef\xbb\xbf"
SHIPPED = Path(__file__).resolve().parents[2] / "data"


class LocalDatasetStore:
    """Reads datasets from files under ``root``; nothing is cached, so edits show up on reload."""

    def __init__(self, root: str | Path = ".") -> None:
        self._root = Path(root).expanduser().absolute()

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalDatasetStore(root={str(self._root)!r})"

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> ListDataset | LazyDataset:
        limit = parse_limit(name, options)
        if not isinstance(name, str) or not name:
            raise DatasetError(f"dataset name must be a non-empty string, got {name!r}")
        path = self._resolve(name, split, options.get("config"))
        if options.get("streaming") and path.suffix == ".jsonl":
            return LazyDataset(lambda: _stream_jsonl(name, path, limit), name)
        try:
            rows = _read_jsonl(path, limit) if path.suffix == ".jsonl" else _read_json(path, split)
        except OSError as exc:
            raise DatasetError(f"cannot read dataset {name!r} from {path}: {exc}") from exc
        return ListDataset(rows if limit is None else rows[:limit])

    def candidates(self, name: str, split: str = "train", config: str | None = None) -> list[Path]:
        """Every path ``load_dataset`` tries for ``name`` and ``split`` (and ``config``), in order."""
        if config is not None:
            return [self._root / name / config / f"{split}.jsonl", self._root / name / config / f"{split}.json"]
        direct = self._root / name
        paths = [direct] if direct.suffix in SUFFIXES else []
        paths += [self._root / name / f"{split}.jsonl", self._root / name / f"{split}.json"]
        if split == "train":
            paths += [self._root / f"{name}.jsonl", self._root / f"{name}.json"]
        return paths + [SHIPPED / name / f"{split}.jsonl"]

    def _resolve(self, name: str, split: str, config: str | None = None) -> Path:
        tried = self.candidates(name, split, config)
        for path in tried:
            if path.is_file():
                return path
        kind = "JSON" if tried[0].suffix == ".json" else "JSONL"
        raise DatasetNotFoundError(
            f"dataset {name!r} (split {split!r}) not found; tried: {', '.join(map(str, tried))}. "
            f"Fix: put a {kind} file (one JSON object per row) at {tried[0]}, or use a dataset "
            f"shipped with the cookbook: {choices(shipped_names())}"
        )


def shipped_names() -> list[str]:
    """Datasets shipped in the package: folders with a split file (``mmlu_sample`` has only ``test``)."""
    return sorted(p.name for p in SHIPPED.iterdir() if p.is_dir() and any(p.glob("*.jsonl")))


def _read_jsonl(path: Path, limit: int | None) -> list[Row]:
    """One object per non-blank line; stops reading once ``limit`` rows are in."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        return list(islice(_jsonl_rows(path, handle), limit))


def _stream_jsonl(name: str, path: Path, limit: int | None) -> Iterator[Row]:
    """``_read_jsonl``'s rows one at a time, the file open only while they are read."""
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
            yield from islice(_jsonl_rows(path, handle), limit)
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {name!r} from {path}: {exc}") from exc


def check_file(path: Path) -> None:
    """Read every row of a JSONL or JSON file as ``load_dataset`` would, for a reader (the hf store's
    ``datasets``) that would otherwise fail on a broken row without naming it, or read it as something else
    (a NaN as null, a huge integer as infinity). A ``.json`` file holding JSON lines (as many hub datasets'
    do, and ``datasets`` reads them) is checked line by line."""
    try:
        if path.suffix.lower() == ".json":
            data = path.read_bytes().removeprefix(BOM)
            wrong = problem(data)[1]
            if wrong is None or "Extra data" not in wrong:
                document, suspect = _document(path, data), may_hold_unusable(data)
                if isinstance(document, list) and all(isinstance(row, dict) for row in document):
                    _check_rows(path, document, suspect=suspect)
                elif suspect:  # not rows, but what ``datasets`` makes of it is its own affair
                    _check_values(path, document, "")
                return
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
            for _ in _jsonl_rows(path, handle):
                pass
    except OSError as exc:
        raise DatasetError(f"cannot read dataset file {path}: {exc}") from exc


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[Row]:
    return (row for _, row in numbered_jsonl_rows(path, lines))


def numbered_jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, Row]]:
    """Each row of a JSONL file with its line number (1-based). Bytes that are not UTF-8 are kept as escapes
    while reading (``surrogateescape``), so the error can name their line rather than a byte offset into some
    read buffer. A file with no row at all is an error once it is read to the end: an empty export is a
    mistake, not a dataset."""
    rows = 0
    for lineno, line in enumerate(lines, start=1):
        _check_utf8(path, lineno, line)
        if line.strip():
            yield lineno, _parse_line(path, lineno, line, rows)
            rows += 1
    if rows == 0:
        raise DatasetError(f"{path} holds no rows: it is empty or only blank lines. Fix: write one JSON object "
                           "per line, or point the dataset at the file that has them")


def _check_utf8(path: Path, lineno: int, line: str) -> None:
    try:  # fails exactly on the escapes ``surrogateescape`` made of bytes that are not UTF-8
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DatasetError(
            f"{path}, line {lineno}, column {exc.start + 1}: not UTF-8 text. Fix: save the file as UTF-8") from None


def _parse_line(path: Path, lineno: int, line: str, index: int) -> Row:
    """Line ``lineno`` (1-based) of the file, its ``index``-th row (0-based, as rendering errors count)."""
    row, wrong = problem(line)
    if wrong is not None:  # the parser counts lines within the one line it was given
        raise DatasetError(f"{path}, line {lineno}: the line {wrong.replace(' at line 1 column ', ' at column ')}")
    if not isinstance(row, dict):
        raise DatasetError(f"{path}, line {lineno}: expected a JSON object, got {type(row).__name__}")
    if may_hold_unusable(line):
        _check_values(path, row, f"line {lineno} (row {index})")
    return row


def _check_values(path: Path, value: object, where: str) -> None:
    """A value ``json.loads`` accepts that training cannot use (``json_values.unusable``), named by its row."""
    found = unusable(value)
    if found is not None:
        field, wrong = found
        at = ", ".join(part for part in (where, f"field {field!r}" if field else "") if part)
        raise DatasetError(f"{path}{', ' if at else ''}{at}: the value {wrong}")


def _document(path: Path, data: bytes) -> object:
    """The JSON document ``data`` (a file's bytes, BOM removed); an error names the line where it can."""
    if not data.strip():
        raise DatasetError(f"{path} is empty. Fix: write a JSON list of objects (one per row) into it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetError(f"{path}, line {line}, byte {column}: not UTF-8 text. Fix: save the file as UTF-8") from None
    value, wrong = problem(text)
    if wrong is not None:
        deepest = _deepest_line(text) if "too deeply" in wrong else None
        raise DatasetError(f"{path} {wrong}" + (f" (deepest at line {deepest})" if deepest else ""))
    return value


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}\n]')
"""Strings (skipped whole, brackets in them are text), brackets, and newlines."""


def _deepest_line(text: str) -> int:
    """The line where ``text`` first reaches its deepest nesting: where a reader gave up on it."""
    depth = deepest = 0
    line = found = 1
    for token in _JSON_TOKENS.finditer(text):
        mark = token.group()
        if mark == "\n":
            line += 1
        elif mark in "[{":
            depth += 1
            if depth > deepest:
                deepest, found = depth, line
        elif mark in "]}":
            depth -= 1
    return found


def _read_json(path: Path, split: str) -> list[Row]:
    """A list of objects, or an object whose ``split`` key holds that list."""
    text = path.read_bytes().removeprefix(BOM)
    data = _document(path, text)
    where = ""
    if isinstance(data, dict):
        if split not in data:
            raise DatasetError(f"{path}: no split {split!r}; the file's top-level keys are {choices(data)}")
        data, where = data[split], f"split {split!r}, "
    return _check_rows(path, data, where, suspect=may_hold_unusable(text))


def _check_rows(path: Path, data: object, where: str = "", suspect: bool = True) -> list[Row]:
    """A non-empty list of objects; each walked for unusable values when the text may hold one."""
    if not isinstance(data, list):
        raise DatasetError(f"{path}: {where}expected a list of JSON objects, got {type(data).__name__}")
    if not data:
        raise DatasetError(f"{path}: {where}the list holds no rows. Fix: write one JSON object per row into it")
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: {where}row {index} is a {type(row).__name__}, expected a JSON object")
        if suspect:
            _check_values(path, row, f"{where}row {index}")
    return data
