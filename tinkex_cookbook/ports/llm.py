"""Ports for language-model services outside training: judges, graders, teachers, retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ChatMessage = dict[str, Any]


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorMatch:
    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLMClient(Protocol):
    """Chat completions from a model we do not train (an OpenAI-compatible endpoint)."""

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Completion: ...


@runtime_checkable
class EmbeddingClient(Protocol):
    def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        """One vector per text, all of the same dimension."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    def upsert(
        self, ids: Sequence[str], vectors: Sequence[Sequence[float]],
        metadata: Sequence[dict[str, Any]] | None = None,
    ) -> None: ...

    def query(self, vector: Sequence[float], k: int = 5) -> list[VectorMatch]:
        """The ``k`` nearest stored vectors by cosine similarity, best first."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...
