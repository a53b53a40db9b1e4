"""In-memory vector store: exact cosine search with numpy; the noop and local adapter."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinkex_cookbook.ports.llm import VectorMatch


class MemoryVectorStore:
    """Holds vectors in a dict; ``query`` scores all of them (fine up to ~1e5 vectors)."""

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def upsert(
        self, ids: Sequence[str], vectors: Sequence[Sequence[float]],
        metadata: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        if len(ids) != len(vectors) or (metadata is not None and len(metadata) != len(ids)):
            raise ValueError(f"upsert got {len(ids)} ids, {len(vectors)} vectors; they must match")
        with self._lock:
            for i, (key, vector) in enumerate(zip(ids, vectors, strict=True)):
                array = np.asarray(vector, dtype=np.float64)
                norm = np.linalg.norm(array)
                self._vectors[key] = array / norm if norm else array
                self._metadata[key] = dict(metadata[i]) if metadata else {}

    def query(self, vector: Sequence[float], k: int = 5) -> list[VectorMatch]:
        with self._lock:
            if not self._vectors:
                return []
            keys = list(self._vectors)
            matrix = np.stack([self._vectors[key] for key in keys])
            metadata = [self._metadata[key] for key in keys]
        probe = np.asarray(vector, dtype=np.float64)
        norm = np.linalg.norm(probe)
        scores = matrix @ (probe / norm if norm else probe)
        order = np.argsort(-scores, kind="stable")[:k]
        return [VectorMatch(keys[i], float(scores[i]), dict(metadata[i])) for i in order]

    def delete(self, ids: Sequence[str]) -> None:
        with self._lock:
            for key in ids:
                self._vectors.pop(key, None)
                self._metadata.pop(key, None)
