"""A dataset read as it is iterated: what the local store returns for ``streaming=True``.

Each iteration calls ``open_rows`` again (for a JSONL file: opens it and reads line by line),
so no more than the row being handed out is held, and a second pass reads the file anew.
Like the hf store's streaming datasets it has no length and no random access: ``len`` and
``select`` raise a ``DatasetError`` saying what to do instead, ``shuffle`` is buffered, and
``take``/``skip`` stay lazy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from itertools import islice

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports.datasets import Row
from tinkex_cookbook.train.streams import buffer_shuffle

SHUFFLE_BUFFER = 1000
"""Rows a ``shuffle`` holds at once (the hf store's streaming default too)."""


class LazyDataset:
    """Rows from ``open_rows()``, read only while iterating; every operation returns a new lazy dataset."""

    def __init__(self, open_rows: Callable[[], Iterator[Row]], name: str = "") -> None:
        self._open = open_rows
        self._name = name

    def __len__(self) -> int:
        raise DatasetError(
            f"streaming dataset {self._name!r} has no length: iterate it, cap it with .take(n), or load it "
            "with streaming off"
        )

    def __bool__(self) -> bool:
        """Truthy without a length: emptiness is only known by iterating."""
        return True

    def __iter__(self) -> Iterator[Row]:
        return self._open()

    def __repr__(self) -> str:
        return f"LazyDataset({self._name!r}, streaming)"

    def shuffle(self, seed: int, buffer_size: int = SHUFFLE_BUFFER) -> LazyDataset:
        """Buffered: each row handed out is drawn at random from the next ``buffer_size`` rows."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DatasetError(f"shuffle seed must be an integer, got {seed!r}")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise DatasetError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
        return self._derived(lambda: buffer_shuffle(self._open(), buffer_size, random.Random(seed)))

    def take(self, n: int) -> LazyDataset:
        count = _count("n in take(n)", n)
        return self._derived(lambda: islice(self._open(), count))

    def skip(self, n: int) -> LazyDataset:
        count = _count("n in skip(n)", n)
        return self._derived(lambda: islice(self._open(), count, None))

    def select(self, indices: Sequence[int]) -> LazyDataset:
        raise DatasetError(
            f"streaming dataset {self._name!r} cannot select rows by index: use .skip(i).take(n), or load it "
            "with streaming off"
        )

    def to_list(self) -> list[Row]:
        """Reads every row: cap it first with ``.take(n)``."""
        return list(self._open())

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[Row]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatasetError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return _chunks(self._open(), batch_size, drop_last)

    def _derived(self, open_rows: Callable[[], Iterator[Row]]) -> LazyDataset:
        return LazyDataset(open_rows, self._name)


def _count(what: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DatasetError(f"{what} must be an integer >= 0, got {n!r}")
    return n


def _chunks(rows: Iterator[Row], batch_size: int, drop_last: bool) -> Iterator[list[Row]]:
    while batch := list(islice(rows, batch_size)):
        if len(batch) < batch_size and drop_last:
            return
        yield batch
