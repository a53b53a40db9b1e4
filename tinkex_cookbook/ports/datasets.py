"""Dataset port: named datasets of plain-dict rows.

A ``Dataset`` is immutable: ``shuffle``, ``take``, ``skip`` and ``select``
return new datasets, so a recipe can slice a train and a test split from one
load without surprising anyone holding the original.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

Row = dict[str, Any]


@runtime_checkable
class Dataset(Protocol):
    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Row]: ...

    def shuffle(self, seed: int) -> Dataset: ...

    def take(self, n: int) -> Dataset: ...

    def skip(self, n: int) -> Dataset: ...

    def select(self, indices: Sequence[int]) -> Dataset: ...

    def to_list(self) -> list[Row]: ...

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[Row]]: ...


@runtime_checkable
class DatasetStore(Protocol):
    """Loads datasets by name. Raises ``DatasetError`` naming the dataset and how to provide it."""

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> Dataset: ...
