"""Blob store port: bytes under string keys (checkpoints, metrics, run files).

Keys are relative, ``/``-separated paths. ``write`` is atomic: a reader sees
the old bytes or the new bytes, never a prefix of them, even if the writer
dies mid-write. ``create`` writes only if the key is free, as one atomic step,
so of several writers racing for one key exactly one wins: the run lease
(``runtime/lease.py``) is built on it. ``append`` adds records to the end of a
blob at a cost that does not grow with the blob's size, so a run's metric and
log files cost the same per step at step 100 and at step 100,000.
Implementations are safe to call from several threads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class BlobStore(Protocol):
    def read(self, key: str) -> bytes:
        """Raise ``BlobNotFoundError`` when nothing is stored under ``key``."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` only if nothing is stored under ``key``, atomically (check and write are one step).

        True if this call wrote it; False if something was already there, which is left unchanged.
        """
        ...

    def append(self, key: str, data: bytes) -> None:
        """Add ``data``, one or more whole lines (it must end in ``\\n``), to the end of ``key``'s blob,
        creating it if absent. For line files (metrics, logs, checkpoint records) with one writer at a time
        (the run lease sees to that).

        * Cost: what one call sends does not grow with the blob's size.
        * Durability: once it returns, the lines survive a crash of the writer.
        * Atomicity: a reader sees the blob with or without ``data``, except that a crash (or power cut)
          in the middle of an append may leave a *torn tail*, bytes after the last ``\\n``. Readers skip
          it (``whole_lines``); the store drops it before its next append.
        * ``read``, ``exists``, ``list`` and ``delete`` treat appended lines as part of the one blob;
          ``write`` replaces all of it.

        Raise ``ValueError`` if ``data`` is empty or does not end in a newline.
        """
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        ...

    def uri(self, key: str) -> str:
        """Where a user can find ``key`` outside the cookbook (a path or URL)."""
        ...


def whole_lines(data: bytes) -> list[bytes]:
    """The complete lines of an appended blob, without their newlines: a torn tail (bytes after the last
    ``\\n``, left by a crash mid-append) is not a line yet, so it is skipped."""
    return data.split(b"\n")[:-1]


CHUNK = 1 << 20
"""Bytes per piece when a blob is read in pieces (``ReadsChunks``)."""


@runtime_checkable
class ReadsChunks(Protocol):
    """A blob store that can hand a blob over in pieces, so checking a large one never holds all of it."""

    def read_chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        """The blob's bytes, ``size`` at a time; ``BlobNotFoundError`` (at the first piece) when absent."""
        ...


def blob_sha256(store: BlobStore, key: str) -> tuple[str, int]:
    """The sha256 (hex) and size of ``key``'s blob: read in pieces where the store can, else in one read."""
    digest, size = hashlib.sha256(), 0
    pieces = store.read_chunks(key) if isinstance(store, ReadsChunks) else iter((store.read(key),))
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size
