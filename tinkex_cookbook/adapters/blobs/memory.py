"""In-memory blob store: the noop adapter, so runs and tests need no disk."""

from __future__ import annotations

import threading

from tinkex_cookbook.adapters.blobs.keys import as_bytes, as_lines, normalize_key
from tinkex_cookbook.errors import BlobNotFoundError


class MemoryBlobStore:
    """Blobs in a dict behind a lock, so a write or an append is atomic. An appended blob is kept as a
    ``bytearray`` that grows in place, so an append costs its own size, not the blob's."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes | bytearray] = {}
        self._lock = threading.Lock()

    @property
    def blobs(self) -> dict[str, bytes]:
        """A snapshot copy, so tests can inspect state without mutating it."""
        with self._lock:
            return {key: bytes(value) for key, value in self._blobs.items()}

    def read(self, key: str) -> bytes:
        key = normalize_key(key)
        with self._lock:
            if key not in self._blobs:
                raise BlobNotFoundError(f"no blob under key {key!r} in the memory blob store")
            return bytes(self._blobs[key])

    def write(self, key: str, data: bytes) -> None:
        key = normalize_key(key)
        frozen = as_bytes(key, data)
        with self._lock:
            self._blobs[key] = frozen

    def create(self, key: str, data: bytes) -> bool:
        key = normalize_key(key)
        frozen = as_bytes(key, data)
        with self._lock:
            if key in self._blobs:
                return False
            self._blobs[key] = frozen
            return True

    def append(self, key: str, data: bytes) -> None:
        key = normalize_key(key)
        lines = as_lines(key, data)
        with self._lock:
            current = self._blobs.get(key, b"")
            if not isinstance(current, bytearray):
                current = self._blobs[key] = bytearray(current)
            current += lines

    def exists(self, key: str) -> bool:
        key = normalize_key(key)
        with self._lock:
            return key in self._blobs

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self._blobs if k.startswith(prefix))

    def delete(self, key: str) -> None:
        key = normalize_key(key)
        with self._lock:
            self._blobs.pop(key, None)

    def uri(self, key: str) -> str:
        return f"memory://{normalize_key(key)}"

    def key_for(self, location: str) -> str | None:
        """The key of a ``memory://`` location as ``uri`` prints it; ``None`` for anything else (a key)."""
        return location.removeprefix("memory://").strip("/") if location.startswith("memory://") else None

    def __repr__(self) -> str:
        return f"MemoryBlobStore({len(self._blobs)} blobs)"
