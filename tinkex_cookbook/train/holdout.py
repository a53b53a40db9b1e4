"""How many rows a supervised run holds out, and whether what is left fills a batch.

The default hold-out is 32 rows, as the reference's; on a dataset too small to spare them
and still fill one batch it is 10% of the rows (at least 1), so a small file trains with
the defaults and the run log says what was held out. A ``test_size`` or ``batch_size`` the
user set that the dataset cannot meet is an error naming the key and a value that works.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinkex_cookbook.errors import DatasetError

DEFAULT_TEST_SIZE = 32


@dataclass(frozen=True)
class HoldOut:
    """Rows held out for evaluation, and why it is not what the config asked for (``None`` if it is)."""

    size: int
    note: str | None = None


def small_holdout(rows: int) -> int:
    """10% of ``rows``, at least 1 when there is a row to spare."""
    return max(1, rows // 10) if rows >= 2 else 0


def hold_out(rows: int, test_size: int | None, batch_size: int, what: str) -> HoldOut:
    """The hold-out for ``rows`` rows of ``what`` (e.g. "dataset 'chats.jsonl'"); ``test_size=None`` is the
    default (32, or 10% of a small dataset)."""
    if test_size is None:
        if rows - DEFAULT_TEST_SIZE >= batch_size:
            return HoldOut(DEFAULT_TEST_SIZE)
        size = small_holdout(rows)
        return HoldOut(size, f"held out {size} of {rows} rows (10%), not the default {DEFAULT_TEST_SIZE}, which "
                             f"would leave fewer than batch_size={batch_size} to train on; set test_size= to choose")
    if rows <= test_size:
        raise DatasetError(
            f"{what} has {rows} rows, not more than test_size={test_size}. Fix: set "
            f"test_size={small_holdout(rows)} (10% of the rows), or test_size=0 for no held-out evaluation")
    return HoldOut(test_size)


def check_batch_size(train_rows: int, batch_size: int) -> None:
    """A step needs ``batch_size`` training rows: fewer is an error naming a batch size that works."""
    if train_rows == 0:
        raise DatasetError("no rows are left to train on. Fix: use a dataset with rows, or lower test_size=")
    if train_rows < batch_size:
        rows = "1 training row is" if train_rows == 1 else f"{train_rows} training rows is"
        raise DatasetError(f"{rows} fewer than batch_size={batch_size}. Fix: set "
                           f"batch_size={train_rows} or lower, or hold out fewer rows with test_size=")
