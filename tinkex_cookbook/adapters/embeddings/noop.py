"""Noop embeddings: hash-seeded unit vectors, identical text -> identical vector."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class NoopEmbeddingClient:
    dimension: int = 16

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(self.dimension)
        return (vector / np.linalg.norm(vector)).tolist()
