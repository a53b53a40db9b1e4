"""Where supervised training rows come from: one dataset or a weighted mixture, held whole or streamed.

Held whole (the default): each dataset is read, shuffled with the run's seed, and (for a mixture)
interleaved by weight; the first ``test_size`` rows are held out and the rest rendered up front.
One dataset gives exactly the order it always did.

Streamed (``streaming=true``): nothing is read whole. The first ``test_size`` rows of the stream
(the raw rows, interleaved by weight) are held out; the training rows are the rest, each dataset
shuffled through a buffer of ``shuffle_buffer`` rows and interleaved by weight, a new pass (with a
new shuffle) starting when a pass runs out. ``BatchStream`` renders only the batch being handed
out. Its ``position`` (pass, rows taken in the pass) is what a checkpoint records: a resumed run
reads the same pass again with the same seeds and skips that many rows, unrendered.

A mixture stops when the dataset drawn next has run out (``datasets``' ``first_exhausted``), so the
weights hold to the end; each row is tagged with the dataset it came from, for counts and errors.
Packing (``pack_datums``) concatenates rendered examples into sequences of at most ``max_length``
tokens; each example keeps its own loss weights.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports import DatasetStore, Datum, ModelInput, Row, TensorData
from tinkex_cookbook.train.holdout import DEFAULT_TEST_SIZE, hold_out
from tinkex_cookbook.train.named_datasets import Source, open_source
from tinkex_cookbook.train.streams import buffer_shuffle, interleave


@dataclass(frozen=True)
class Part:
    """One dataset of a run: a mixture has several, weighted."""

    dataset: str
    split: str
    weight: float = 1.0


@dataclass(frozen=True)
class Pulled:
    """A row and where it came from: its index in its dataset and that dataset's label."""

    row: Row
    index: int
    source: str


@dataclass
class HeldSplit:
    """The rows of a run held whole: training and held-out, each row with its index and source."""

    train: list[Pulled]
    test: list[Pulled]
    note: str | None = None
    """Why the held-out size is not the one asked for (a small dataset's default), for the run log."""

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per source, for the run log: ``{"train": {"gsm8k": 700, ...}, "test": {...}}``."""
        return {"train": dict(Counter(p.source for p in self.train)),
                "test": dict(Counter(p.source for p in self.test))}


def labels(parts: Sequence[Part]) -> list[str]:
    """Each part's name in counts and errors: its dataset, with the split when a dataset comes twice."""
    names = Counter(p.dataset for p in parts)
    return [p.dataset if names[p.dataset] == 1 else f"{p.dataset}:{p.split}" for p in parts]


def describe(parts: Sequence[Part]) -> str:
    if len(parts) == 1:
        return f"dataset {parts[0].dataset!r}"
    return "the mixture of " + ", ".join(f"{label} (weight {p.weight:g})" for label, p in zip(labels(parts), parts, strict=True))


def load_rows(store: DatasetStore, parts: Sequence[Part], seed: int, test_size: int | None,
              train_size: int | None, batch_size: int) -> HeldSplit:
    """Every row, shuffled with ``seed``; the first ``test_size`` held out (``None``: ``hold_out``'s default,
    32 or 10% of a small dataset), at most ``train_size`` kept."""
    shuffled = [_shuffled(open_source(store, p.dataset, p.split), label, seed + number)
                for number, (label, p) in enumerate(zip(labels(parts), parts, strict=True))]
    if len(parts) == 1:
        rows = shuffled[0]
    else:
        streams = [iter(rows) for rows in shuffled]
        rows = [p for _, p in interleave(streams, [p.weight for p in parts], random.Random(seed))]
    what = describe(parts) if len(parts) == 1 else f"{describe(parts)} (it ends when one runs out)"
    held = hold_out(len(rows), test_size, batch_size, what)
    end = held.size + train_size if train_size else len(rows)
    return HeldSplit(train=rows[held.size:end], test=rows[:held.size], note=held.note)


def _shuffled(source: Source, label: str, seed: int) -> list[Pulled]:
    rows = source.to_list()
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [Pulled(rows[i], i, label) for i in order]


class RowStream:
    """Training rows of a streamed dataset or mixture, pass after pass, read only as they are taken."""

    def __init__(self, sources: Sequence[Source], parts: Sequence[Part], seed: int, buffer_size: int,
                 held: Sequence[int]) -> None:
        self._sources, self._labels = list(sources), labels(parts)
        self._weights = [p.weight for p in parts]
        self._seed, self._buffer, self._held = seed, buffer_size, list(held)
        self.pass_number, self.taken = 0, 0
        self._rows: Iterator[Pulled] | None = None

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def position(self) -> tuple[int, int]:
        """``(pass, rows taken in it)``: where the next row comes from."""
        return self.pass_number, self.taken

    def seek(self, pass_number: int, taken: int) -> None:
        """Continue at ``position``: the pass is read again with the same seeds and ``taken`` rows skipped."""
        self.pass_number, self.taken = pass_number, 0
        self._rows = self._open(pass_number)
        skipped = sum(1 for _ in islice(self._rows, taken))
        if skipped < taken:
            raise DatasetError(f"cannot resume at row {taken} of pass {pass_number}: the stream has {skipped} "
                               "training rows. The dataset changed since the checkpoint; start a new run")
        self.taken = taken

    def take(self, n: int) -> list[Pulled]:
        """The next ``n`` rows; a pass that runs out is followed by the next one."""
        out: list[Pulled] = []
        while len(out) < n:
            if self._rows is None:
                self._rows = self._open(self.pass_number)
            got = list(islice(self._rows, n - len(out)))
            out += got
            self.taken += len(got)
            if len(out) < n:
                if self.taken == 0:
                    raise DatasetError("the stream has no training rows after the held-out ones. Fix: lower "
                                       "test_size, or train on a larger dataset")
                self.pass_number, self.taken, self._rows = self.pass_number + 1, 0, None
        return out

    def _open(self, pass_number: int) -> Iterator[Pulled]:
        streams = [
            buffer_shuffle(islice(_tagged(source, label), held, None), self._buffer,
                           random.Random(f"{self._seed}:{pass_number}:{number}"))
            for number, (source, label, held) in enumerate(zip(self._sources, self._labels, self._held, strict=True))
        ]
        return (p for _, p in interleave(streams, self._weights, random.Random(f"{self._seed}:{pass_number}")))


def open_stream(store: DatasetStore, parts: Sequence[Part], seed: int, test_size: int | None,
                buffer_size: int, batch_size: int = 1) -> tuple[list[Pulled], RowStream]:
    """The held-out rows (the stream's first ``test_size``) and a ``RowStream`` of the rest.

    ``test_size=None`` is ``hold_out``'s default: 32 rows, or 10% of a stream too short to spare them and
    still fill a batch (found by reading at most ``32 + batch_size`` rows ahead, nothing more)."""
    sources = [open_source(store, p.dataset, p.split, streaming=True) for p in parts]
    streams = [_tagged(source, label) for source, label in zip(sources, labels(parts), strict=True)]
    wanted = DEFAULT_TEST_SIZE + batch_size if test_size is None else test_size
    ahead = [p for _, p in islice(interleave(streams, [p.weight for p in parts], random.Random(seed)), wanted)]
    if len(ahead) < wanted:  # the whole stream is in ``ahead``: its length is known (too short: an error)
        size = hold_out(len(ahead), test_size, batch_size, describe(parts)).size
    else:
        size = DEFAULT_TEST_SIZE if test_size is None else test_size
    held_out = ahead[:size]
    per_source = Counter(p.source for p in held_out)
    return held_out, RowStream(sources, parts, seed, buffer_size, [per_source[label] for label in labels(parts)])


def _tagged(source: Source, label: str) -> Iterator[Pulled]:
    return (Pulled(row, index, label) for index, row in source.rows())


RenderRows = Callable[[list[Row], list[int], str], list[Datum]]
"""Renders a chunk of rows of one source (with their indices, for errors, and the source's label, whose row
format they are read in) into datums: the recipe's one rendering call."""


def render_pulled(pulled: Sequence[Pulled], render: RenderRows) -> list[Datum]:
    """Render rows with ``render``, a run of rows from one source at a time, so an error names the source."""
    datums: list[Datum] = []
    mixed = len({p.source for p in pulled}) > 1
    start = 0
    while start < len(pulled):
        end = start + 1
        while end < len(pulled) and pulled[end].source == pulled[start].source:
            end += 1
        run = pulled[start:end]
        try:
            datums += render([p.row for p in run], [p.index for p in run], run[0].source)
        except DatasetError as exc:
            if not mixed:
                raise
            raise DatasetError(f"dataset {run[0].source!r}: {exc}") from exc
        start = end
    return datums


@dataclass
class BatchStream:
    """Batches rendered as they are handed out: ``size`` rows, or with ``pack_length`` that many packed
    sequences. ``position`` is the row stream's place after the last batch (a row rendered and not yet
    packed is not past it), for a checkpoint to record; ``counts`` are the rows handed out per source."""

    rows: RowStream
    pack_length: int | None = None
    started: bool = False
    """Whether a batch was handed out (a resumed run seeks before its first)."""
    counts: Counter[str] = field(default_factory=Counter)
    _pending: tuple[Datum, str, tuple[int, int]] | None = field(default=None, repr=False)

    @property
    def position(self) -> tuple[int, int]:
        return self._pending[2] if self._pending else self.rows.position

    def seek(self, pass_number: int, taken: int) -> None:
        self._pending = None
        self.rows.seek(pass_number, taken)

    def next_batch(self, size: int, render: RenderRows) -> tuple[list[Datum], int]:
        """``(datums, examples in them)``, rendered with ``render`` now."""
        self.started = True
        if self.pack_length is None:
            pulled = self.rows.take(size)
            self.counts.update(p.source for p in pulled)
            return render_pulled(pulled, render), len(pulled)
        packs = [self._next_pack(self.pack_length, render) for _ in range(size)]
        return [p.datum for p in packs], sum(p.examples for p in packs)

    def _next_pack(self, max_length: int, render: RenderRows) -> Packed:
        group: list[Datum] = []
        length = 0
        while True:
            datum, source, at = self._pending or self._pull(render)
            if group and length + datum.model_input.length > max_length:
                self._pending = (datum, source, at)
                return Packed(concat_datums(group), len(group))
            self._pending = None
            self.counts[source] += 1
            group.append(datum)
            length += datum.model_input.length

    def _pull(self, render: RenderRows) -> tuple[Datum, str, tuple[int, int]]:
        at = self.rows.position
        pulled = self.rows.take(1)
        (datum,) = render_pulled(pulled, render)
        return datum, pulled[0].source, at


@dataclass(frozen=True)
class Packed:
    """A training sequence of several examples and how many it holds."""

    datum: Datum
    examples: int


def pack_datums(datums: Iterable[Datum], max_length: int) -> list[Packed]:
    """Greedy, in order: examples join a sequence while its input stays within ``max_length`` tokens."""
    packs: list[Packed] = []
    group: list[Datum] = []
    length = 0
    for datum in datums:
        if group and length + datum.model_input.length > max_length:
            packs.append(Packed(concat_datums(group), len(group)))
            group, length = [], 0
        group.append(datum)
        length += datum.model_input.length
    if group:
        packs.append(Packed(concat_datums(group), len(group)))
    return packs


def concat_datums(datums: Sequence[Datum]) -> Datum:
    """One datum of the examples back to back: inputs, targets and per-token weights concatenated, so each
    example's tokens keep their weights (attention is not masked between examples)."""
    if len(datums) == 1:
        return datums[0]
    tokens = [t for d in datums for t in d.model_input.to_ints()]
    inputs = {key: np.concatenate([d.loss_fn_inputs[key].to_numpy() for d in datums])
              for key in datums[0].loss_fn_inputs}
    return Datum(model_input=ModelInput.from_ints(tokens),
                 loss_fn_inputs={key: TensorData.from_numpy(array) for key, array in inputs.items()})


__all__ = ["BatchStream", "HeldSplit", "Packed", "Part", "Pulled", "RowStream", "concat_datums", "load_rows",
           "open_stream", "pack_datums", "render_pulled"]
