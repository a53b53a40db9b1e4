"""Blob store port: bytes under string keys (checkpoints, metrics, run files).

Keys are relative, ``/``-separated paths. ``write`` is atomic: a reader sees
the old bytes or the new bytes, never a prefix of them, even if the writer
dies mid-write. ``create`` writes only if the key is free, as one atomic step,
so of several writers racing for one key exactly one wins: the run lease
(``runtime/lease.py``) is built on it. Implementations are safe to call from
several threads.
"""

from __future__ import annotations

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
