"""In-memory datasets: ``ListDataset`` (what every dataset store returns) and the noop store."""

from __future__ import annotations

import operator
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tinkex_cookbook.errors import DatasetError, DatasetNotFoundError, choices
from tinkex_cookbook.ports.datasets import Row

LOAD_OPTIONS = ("config", "limit", "streaming")
"""Options every cookbook dataset store accepts in ``load_dataset``. ``streaming`` asks for rows read as
they are iterated (in-memory stores have them already and ignore it); ``config`` names a dataset's
configuration (in-memory stores hold one table per name and ignore it)."""


class ListDataset:
    """Rows held in a tuple; every operation returns a new dataset sharing the same row dicts."""

    def __init__(self, rows: Sequence[Row]) -> None:
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DatasetError(f"row {index} is a {type(row).__name__}, expected a dict")
        self._rows: tuple[Row, ...] = tuple(rows)

    @classmethod
    def _derived(cls, rows: tuple[Row, ...]) -> ListDataset:
        """Skip re-validating rows that came from an already valid dataset."""
        dataset = cls.__new__(cls)
        dataset._rows = rows
        return dataset

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"ListDataset({len(self._rows)} rows)"

    def shuffle(self, seed: int) -> ListDataset:
        order = list(range(len(self._rows)))
        random.Random(seed).shuffle(order)
        return self.select(order)

    def take(self, n: int) -> ListDataset:
        return self._derived(self._rows[: _count("n in take(n)", n)])

    def skip(self, n: int) -> ListDataset:
        return self._derived(self._rows[_count("n in skip(n)", n) :])

    def select(self, indices: Sequence[int]) -> ListDataset:
        size = len(self._rows)
        picked = []
        for index in map(operator.index, indices):
            if not 0 <= index < size:
                raise DatasetError(f"select index {index} is out of range for a dataset of length {size}")
            picked.append(self._rows[index])
        return self._derived(tuple(picked))

    def to_list(self) -> list[Row]:
        return list(self._rows)

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[Row]]:
        """Validate now, not on the first ``next()``, so a bad size fails where it is passed."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatasetError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        end = len(self._rows) - len(self._rows) % batch_size if drop_last else len(self._rows)
        return (list(self._rows[i : i + batch_size]) for i in range(0, end, batch_size))


def _count(what: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DatasetError(f"{what} must be an integer >= 0, got {n!r}")
    return n


def parse_limit(name: str, options: Mapping[str, Any]) -> int | None:
    """The ``limit`` load option, after rejecting options no store understands."""
    unknown = set(options) - set(LOAD_OPTIONS)
    if unknown:
        raise DatasetError(
            f"unknown option(s) {choices(unknown)} for dataset {name!r}; "
            f"valid options: {choices(LOAD_OPTIONS)}"
        )
    limit = options.get("limit")
    if limit is not None:
        _count(f"limit for dataset {name!r}", limit)
    streaming, config = options.get("streaming"), options.get("config")
    if streaming is not None and not isinstance(streaming, bool):
        raise DatasetError(f"option 'streaming' for dataset {name!r} must be true or false, got {streaming!r}")
    if config is not None and (not isinstance(config, str) or not config):
        raise DatasetError(f"option 'config' for dataset {name!r} must be a non-empty string, got {config!r}")
    return limit


class MemoryDatasetStore:
    """Datasets given up front, looked up as ``"name:split"`` first, then ``"name"``."""

    def __init__(self, datasets: Mapping[str, Sequence[Row]] | None = None) -> None:
        self._datasets = {name: ListDataset(rows) for name, rows in (datasets or {}).items()}

    def __repr__(self) -> str:
        return f"MemoryDatasetStore({choices(self._datasets)})"

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> ListDataset:
        limit = parse_limit(name, options)
        for key in (f"{name}:{split}", name):
            if key in self._datasets:
                dataset = self._datasets[key]
                return dataset if limit is None else dataset.take(limit)
        raise DatasetNotFoundError(
            f"dataset {name!r} (split {split!r}) is not in the memory dataset store; "
            f"known datasets: {choices(self._datasets)}; "
            f"provide it as MemoryDatasetStore({{{name!r}: rows}})"
        )
