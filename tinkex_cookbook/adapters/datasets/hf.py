"""Hugging Face ``datasets`` store: hub datasets and local json/jsonl/parquet/csv files.

``load_dataset(name, split, **options)`` reads ``name`` as, in order:

* an existing file ending in ``.json``/``.jsonl``/``.parquet``/``.csv``: loaded
  with the matching ``datasets`` builder; the file serves whichever split is asked
  for (as in the ``local`` store);
* an existing folder: handed to ``datasets``, which picks the builder from the
  files' suffixes and the splits from their names (``train.jsonl``, ``test.csv`` ...);
* anything else: a hub dataset id (``org/name``) or a ``datasets`` builder name
  (``json`` with ``data_files=...``).

Options: ``config``, ``revision``, ``data_files``, ``streaming`` and ``limit``.

Offline by default. ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE``
once, when they are imported, so setting the variable later does nothing; the
store instead switches their module-level flags on for the duration of each load
(under a process-wide lock) and restores them afterwards. Only data already on
disk or in the ``datasets`` cache is read; a hub dataset that is not cached fails
with a ``DatasetError`` saying how to provide it. With ``offline=False`` the flags
are left alone (so a global ``HF_HUB_OFFLINE=1`` still wins).

Map-style loads return ``HFDataset`` (memory-mapped Arrow; ``shuffle`` uses the
same permutation as ``ListDataset`` for the same seed, so switching between the
``local`` and ``hf`` stores keeps the training order). ``streaming`` loads return
``HFIterableDataset``, which has no length. Rows are plain dicts of Python values.
Unlike the ``local`` store, ``datasets`` unifies the rows' schema: a key missing
from some rows of a file comes back as ``None`` in those rows.

``datasets`` is imported inside the methods, so importing this module never needs
the ``hf`` extra.
"""

from __future__ import annotations

import inspect
import operator
import random
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from tinkex_cookbook.adapters.datasets.local import check_file
from tinkex_cookbook.adapters.datasets.memory import parse_limit
from tinkex_cookbook.errors import (
    AdapterUnavailableError,
    DatasetError,
    DatasetNotFoundError,
    choices,
    error_chain,
)
from tinkex_cookbook.ports.datasets import Row

HF_LOAD_OPTIONS = ("config", "data_files", "limit", "revision", "streaming")
"""Options ``HFDatasetStore.load_dataset`` accepts."""

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
"""File suffix -> the ``datasets`` builder that reads it."""

SHUFFLE_BUFFER = 1000
"""Rows a streaming ``shuffle`` holds at once (``datasets``' own default)."""

_OFFLINE_FLAGS = (
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),  # the flag datasets < 2.20 reads
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
)
_OFFLINE_LOCK = threading.RLock()
_MISSING = object()


class HFDataset:
    """A map-style ``datasets.Dataset``; every operation returns a new wrapper, never mutating."""

    def __init__(self, hf_dataset: Any) -> None:
        self._hf = hf_dataset

    @property
    def hf_dataset(self) -> Any:
        """The wrapped ``datasets.Dataset`` (Arrow-backed; do not mutate its format)."""
        return self._hf

    def __len__(self) -> int:
        return int(self._hf.num_rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._hf)

    def __repr__(self) -> str:
        return f"HFDataset({len(self)} rows, columns={list(self._hf.column_names)!r})"

    def shuffle(self, seed: int) -> HFDataset:
        """The permutation ``ListDataset.shuffle(seed)`` uses, so both stores agree on the order."""
        _seed(seed)
        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        return self._select(order)

    def take(self, n: int) -> HFDataset:
        return self._select(range(min(_count("n in take(n)", n), len(self))))

    def skip(self, n: int) -> HFDataset:
        return self._select(range(min(_count("n in skip(n)", n), len(self)), len(self)))

    def select(self, indices: Sequence[int]) -> HFDataset:
        size = len(self)
        picked = []
        for index in map(operator.index, indices):
            if not 0 <= index < size:
                raise DatasetError(f"select index {index} is out of range for a dataset of length {size}")
            picked.append(index)
        return self._select(picked)

    def to_list(self) -> list[Row]:
        return list(iter(self))

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[Row]]:
        return _batches(self, batch_size, drop_last)

    def _select(self, indices: Sequence[int]) -> HFDataset:
        if not len(indices):  # datasets rejects an empty range that starts at the end
            indices = []
        # keep_in_memory: an indices mapping in RAM, not a cache file written next to the data
        return HFDataset(self._hf.select(indices, keep_in_memory=True))


class HFIterableDataset:
    """A streaming ``datasets.IterableDataset``: rows are read as they are iterated; no length."""

    def __init__(self, hf_dataset: Any, name: str = "") -> None:
        self._hf = hf_dataset
        self._name = name

    @property
    def hf_dataset(self) -> Any:
        return self._hf

    def __len__(self) -> int:
        raise DatasetError(
            f"streaming dataset {self._name!r} has no length (len(), list() and tuple() all ask for "
            "one): iterate it with a for loop, cap it with the `limit` load option or .take(n), and "
            "materialize it with .take(n).to_list(); or load it with streaming off"
        )

    def __bool__(self) -> bool:
        """Truthy without a length: emptiness is only known by iterating."""
        return True

    def __iter__(self) -> Iterator[Row]:
        return _named_errors(iter(self._hf), self._name)

    def __repr__(self) -> str:
        return f"HFIterableDataset({self._name!r}, streaming)"

    def shuffle(self, seed: int, buffer_size: int = SHUFFLE_BUFFER) -> HFIterableDataset:
        """Buffered: rows are drawn at random from a window of ``buffer_size`` rows (and shards reordered)."""
        _seed(seed)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise DatasetError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
        # numpy seeds must be non-negative; derive one from any int, deterministically
        numpy_seed = random.Random(seed).getrandbits(63)
        return self._derived(self._hf.shuffle(seed=numpy_seed, buffer_size=buffer_size))

    def take(self, n: int) -> HFIterableDataset:
        return self._derived(self._hf.take(_count("n in take(n)", n)))

    def skip(self, n: int) -> HFIterableDataset:
        return self._derived(self._hf.skip(_count("n in skip(n)", n)))

    def select(self, indices: Sequence[int]) -> HFIterableDataset:
        raise DatasetError(
            f"streaming dataset {self._name!r} cannot select rows by index: it has no length or random "
            "access. Use .skip(i).take(n) for a contiguous range, or materialize it first with "
            ".take(n).to_list(), or load it with streaming off"
        )

    def to_list(self) -> list[Row]:
        """Reads the whole stream: cap it first with ``limit`` or ``.take(n)``."""
        return [row for row in self]

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[Row]]:
        return _batches(self, batch_size, drop_last)

    def _derived(self, hf_dataset: Any) -> HFIterableDataset:
        return HFIterableDataset(hf_dataset, self._name)


class HFDatasetStore:
    """Loads datasets with Hugging Face ``datasets``; offline (cache and disk only) unless told otherwise."""

    def __init__(
        self,
        cache_dir: str | None = None,
        offline: bool = True,
        token: str | None = None,
        streaming: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        self._cache_dir = str(Path(cache_dir).expanduser()) if cache_dir else None
        self._offline = bool(offline)
        self._token = token
        self._streaming = bool(streaming)
        self._trust_remote_code = bool(trust_remote_code)

    @property
    def offline(self) -> bool:
        return self._offline

    @property
    def cache_dir(self) -> str | None:
        return self._cache_dir

    def __repr__(self) -> str:
        token = "'***'" if self._token else "None"
        return (
            f"HFDatasetStore(cache_dir={self._cache_dir!r}, offline={self._offline}, token={token}, "
            f"streaming={self._streaming}, trust_remote_code={self._trust_remote_code})"
        )

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> HFDataset | HFIterableDataset:
        if not isinstance(name, str) or not name:
            raise DatasetError(f"dataset name must be a non-empty string, got {name!r}")
        if not isinstance(split, str) or not split:
            raise DatasetError(f"split for dataset {name!r} must be a non-empty string, got {split!r}")
        config, revision, data_files, streaming, limit = self._options(name, options)
        datasets = _import_datasets()
        path, data_files, local = _source(name, split, data_files)
        if local:
            _check_local_files(path, data_files)
        where = f"dataset {name!r} (split {split!r}{f', config {config!r}' if config else ''})"
        kwargs: dict[str, Any] = {"name": config, "data_files": data_files, "cache_dir": self._cache_dir}
        if revision is not None:
            kwargs["revision"] = revision
        if self._token is not None:
            kwargs["token"] = self._token
        if self._trust_remote_code and _accepts(datasets.load_dataset_builder, "trust_remote_code"):
            kwargs["trust_remote_code"] = True  # datasets >= 4 runs no loading scripts: nothing to trust
        with _offline(self._offline):
            try:
                builder = datasets.load_dataset_builder(path, **kwargs)
            except Exception as exc:
                raise self._load_error(where, name, local, exc) from exc
            _check_splits(where, split, _known_splits(builder))
            try:
                if streaming:
                    hf = builder.as_streaming_dataset(split=split)
                else:
                    builder.download_and_prepare()
                    hf = builder.as_dataset(split=split)
            except Exception as exc:
                _check_splits(where, split, _known_splits(builder))
                raise self._load_error(where, name, local, exc) from exc
        dataset: HFDataset | HFIterableDataset
        dataset = HFIterableDataset(hf, name) if streaming else HFDataset(_plain(hf))
        return dataset if limit is None else dataset.take(limit)

    def _options(self, name: str, options: Mapping[str, Any]) -> tuple[Any, Any, Any, bool, int | None]:
        unknown = set(options) - set(HF_LOAD_OPTIONS)
        if unknown:
            raise DatasetError(
                f"unknown option(s) {choices(unknown)} for dataset {name!r}; "
                f"valid options: {choices(HF_LOAD_OPTIONS)}"
            )
        limit = parse_limit(name, {"limit": options.get("limit")})
        for key in ("config", "revision"):
            value = options.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise DatasetError(
                    f"option {key!r} for dataset {name!r} must be a non-empty string, got {value!r}"
                )
        data_files = options.get("data_files")
        if data_files is not None and not _valid_data_files(data_files):
            raise DatasetError(
                f"option 'data_files' for dataset {name!r} must be a path, a list of paths or a mapping "
                f"of split name to path(s), got {data_files!r}"
            )
        streaming = options.get("streaming")
        if streaming is None:
            streaming = self._streaming
        elif not isinstance(streaming, bool):
            raise DatasetError(
                f"option 'streaming' for dataset {name!r} must be true or false, got {streaming!r}"
            )
        return options.get("config"), options.get("revision"), data_files, streaming, limit

    def _load_error(self, where: str, name: str, local: bool, exc: Exception) -> DatasetError:
        reason = _reason(exc)
        if local or not isinstance(exc, OSError):  # ConnectionError, FileNotFoundError, hub errors
            return DatasetError(f"cannot load {where}: {reason}")
        if self._offline:
            cache = self._cache_dir or _default_cache()
            return DatasetNotFoundError(
                f"{where} is not on disk nor in the Hugging Face datasets cache ({cache}), and the hf "
                "dataset store is offline, so nothing is downloaded. Provide it locally: export it to "
                "JSONL and use the `local` dataset store (or pass the file's path as the dataset name), "
                "pre-download it into HF_HOME on a machine with network (datasets.load_dataset"
                f"({name!r}) with the same HF_HOME), or set `offline: false` in the manifest's "
                f"dataset_store options to allow downloads. ({reason})"
            )
        return DatasetError(
            f"cannot load {where} from the Hugging Face Hub: {reason}. Check the dataset id and "
            "revision, pass a token for private or gated datasets, or provide it locally: export it to "
            "JSONL and use the `local` dataset store"
        )


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise AdapterUnavailableError(
            "the hf dataset store needs the `datasets` package; install it with: "
            "pip install 'tinkex-cookbook[hf]' (or pip install datasets)"
        ) from exc
    return datasets


def _default_cache() -> str:
    import datasets.config

    return str(datasets.config.HF_DATASETS_CACHE)


@contextmanager
def _offline(enabled: bool) -> Iterator[None]:
    """Force the offline flags ``datasets``/``huggingface_hub`` read at import time, then restore them."""
    if not enabled:
        yield
        return
    import importlib

    with _OFFLINE_LOCK:
        saved = []
        for module_name, attr in _OFFLINE_FLAGS:
            module = importlib.import_module(module_name)
            previous = getattr(module, attr, _MISSING)
            if previous is not _MISSING:
                saved.append((module, attr, previous))
                setattr(module, attr, True)
        try:
            yield
        finally:
            for module, attr, previous in reversed(saved):
                setattr(module, attr, previous)


def _source(name: str, split: str, data_files: Any) -> tuple[str, Any, bool]:
    """``(path for datasets, data_files, is_local)`` for a dataset name."""
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix not in BUILDERS:
            raise DatasetError(
                f"dataset file {str(path)!r} has an unsupported suffix {path.suffix!r}; "
                f"the hf dataset store reads {choices(BUILDERS)} files"
            )
        if data_files is not None:
            raise DatasetError(
                f"dataset {name!r} is a file, so the 'data_files' option does not apply; name a folder, "
                "a builder (json, csv, parquet) or a hub dataset to use data_files"
            )
        resolved = str(path.absolute())  # a symlink keeps its name: its suffix says how the file is checked and read
        return BUILDERS[suffix], {base: resolved for base in _split_names(split)}, True
    if path.is_dir():
        return str(path.resolve()), data_files, True
    if suffix in BUILDERS:
        raise DatasetNotFoundError(
            f"dataset file {str(path.absolute())!r} (split {split!r}) not found. Fix: check the path, or "
            "name a hub dataset id such as 'org/name'"
        )
    return name, data_files, False


def _check_local_files(path: str, data_files: Any) -> None:
    """Read the JSON and JSONL files a local load will hand to ``datasets`` as the ``local`` store reads them
    (``local.check_file``) first: ``datasets`` reads a NaN as null and a huge integer as infinity without a
    word, fails on a lone surrogate or deep nesting naming no line, and on an empty file with a bare
    ``StopIteration``. A file that passes reads the same either way."""
    if data_files is None:
        files = [p for p in Path(path).rglob("*") if p.is_file() and not _hidden(p, Path(path))]
    else:
        spec = data_files.values() if isinstance(data_files, Mapping) else [data_files]
        listed = [Path(path, p) for v in spec for p in ([v] if isinstance(v, str | Path) else v)]
        files = [p for p in dict.fromkeys(listed) if p.is_file()]  # globs and hub paths: left to ``datasets``
    for file in files:
        if file.suffix.lower() in (".json", ".jsonl"):
            check_file(file)
        elif file.suffix.lower() == ".csv":
            _check_csv_text(file)


def _check_csv_text(path: Path) -> None:
    """A CSV file is UTF-8 text with a header: ``datasets`` says neither which line is not UTF-8 nor,
    for an empty file, more than ``No columns to parse``."""
    try:
        with path.open("rb") as handle:
            lineno = 0
            for lineno, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}, line {lineno}, byte {exc.start + 1}: not UTF-8 text. Fix: save the "
                                       "file as UTF-8") from None
    except OSError as exc:
        raise DatasetError(f"cannot read dataset file {path}: {exc}") from exc
    if lineno == 0:
        raise DatasetError(f"{path} is empty. Fix: write a header line and one line per row")


def _hidden(file: Path, root: Path) -> bool:
    """``datasets`` skips hidden files and folders (``.cache``, ``.git``) when it scans a folder."""
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def _named_errors(rows: Iterator[Row], name: str) -> Iterator[Row]:
    """A streamed dataset's rows; an error reading one (``datasets`` reads lazily, and its readers raise
    ``ArrowInvalid``, ``UnicodeDecodeError`` ...) becomes a ``DatasetError`` naming the dataset and the row."""
    count = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"cannot read streaming dataset {name!r} after {count} rows: {_reason(exc)}") from exc
        count += 1
        yield row


def _reason(exc: BaseException) -> str:
    """The error and, when ``datasets`` wrapped it (``DatasetGenerationError: An error occurred ...``), the
    one behind it that says what was wrong."""
    chain = error_chain(exc)
    shown = [chain[0]] if len(chain) == 1 else [chain[0], chain[-1]]
    return "; caused by ".join(f"{type(e).__name__}: {e}".strip().removesuffix(":") for e in shown)


def _split_names(split: str) -> list[str]:
    """``"train[:10%]+test"`` -> ``["train", "test"]``: the split names behind a split expression."""
    names = [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]
    return list(dict.fromkeys(n for n in names if n))


def _known_splits(builder: Any) -> list[str]:
    """The builder's splits when it knows them before preparing (from its info or its data files)."""
    splits = getattr(builder.info, "splits", None)
    if splits:
        return list(splits)
    data_files = getattr(builder.config, "data_files", None)
    return list(data_files) if isinstance(data_files, Mapping) else []


def _check_splits(where: str, split: str, available: list[str]) -> None:
    if not available:
        return
    missing = [s for s in _split_names(split) if s not in available]
    if missing:
        raise DatasetError(
            f"{where}: no split {choices(missing)}; available splits: {choices(available)}"
        )


def _plain(hf_dataset: Any) -> Any:
    """Python-object rows even if the dataset came with a numpy/arrow/torch format set."""
    return hf_dataset if hf_dataset.format.get("type") is None else hf_dataset.with_format(None)


def _valid_data_files(value: Any) -> bool:
    def paths(v: Any) -> bool:
        if isinstance(v, (str, Path)):
            return bool(str(v))
        if not isinstance(v, (list, tuple)) or not v:
            return False
        return all(isinstance(p, (str, Path)) and str(p) for p in v)

    if isinstance(value, Mapping):
        return bool(value) and all(isinstance(k, str) and k and paths(v) for k, v in value.items())
    return paths(value)


def _accepts(function: Any, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetError(f"shuffle seed must be an integer, got {seed!r}")


def _count(what: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DatasetError(f"{what} must be an integer >= 0, got {n!r}")
    return n


def _batches(rows: Iterable[Row], batch_size: int, drop_last: bool) -> Iterator[list[Row]]:
    """Validate now, not on the first ``next()``, so a bad size fails where it is passed."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return _chunks(rows, batch_size, drop_last)


def _chunks(rows: Iterable[Row], batch_size: int, drop_last: bool) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, batch_size)):
        if len(batch) < batch_size and drop_last:
            return
        yield batch
