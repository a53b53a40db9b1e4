"""Iterator tools for data read as it streams: a buffered shuffle and a weighted interleave.

Both are deterministic for a given ``random.Random``, so a run that re-reads a stream with the
same seed gets the same rows in the same order (which is how a resumed run finds its place).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def buffer_shuffle(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """Fill a buffer of ``buffer_size`` items, then hand out a random one and put the next item in its
    place; at the end, the rest in random order. Holds at most ``buffer_size`` items."""
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ValueError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
    iterator = iter(items)
    buffer = list(islice(iterator, buffer_size))
    for item in iterator:
        slot = rng.randrange(len(buffer))
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def interleave(streams: Sequence[Iterator[T]], weights: Sequence[float], rng: random.Random) -> Iterator[tuple[int, T]]:
    """``(stream number, item)``: each item from a stream drawn with probability proportional to its
    weight; stops when a drawn stream is exhausted (``datasets``' ``first_exhausted``), so the
    proportions hold to the end. A stream is read only when drawn."""
    if len(streams) != len(weights) or not streams:
        raise ValueError(f"interleave needs one weight per stream, got {len(streams)} streams and {len(weights)} weights")
    numbers = range(len(streams))
    while True:
        number = rng.choices(numbers, weights=weights)[0] if len(streams) > 1 else 0
        try:
            item = next(streams[number])
        except StopIteration:
            return
        yield number, item
