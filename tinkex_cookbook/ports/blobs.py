"""Blob store port: bytes under string keys (checkpoints, metrics, run files).

Keys are relative, ``/``-separated paths. ``write`` is atomic: a reader sees
the old bytes or the new bytes, never a prefix of them, even if the writer
dies mid-write. Implementations are safe to call from several threads.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class BlobStore(Protocol):
    def read(self, key: str) -> bytes:
        """Raise ``BlobNotFoundError`` when nothing is stored under ``key``."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

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
