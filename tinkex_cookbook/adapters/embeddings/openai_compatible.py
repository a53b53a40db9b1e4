"""OpenAI-compatible embeddings over HTTP; shares its plumbing with the LLM adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tinkex_cookbook.adapters.llm.openai_compatible import LLMServiceError, OpenAICompatibleHTTP

__all__ = ["LLMServiceError", "OpenAICompatibleEmbeddingClient"]


class OpenAICompatibleEmbeddingClient(OpenAICompatibleHTTP):
    """``EmbeddingClient`` over ``POST {base_url}/embeddings``; vectors come back in input order."""

    path = "/embeddings"

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        if isinstance(texts, str):  # a bare string would be embedded character by character
            texts = [texts]
        texts = list(texts)
        if not texts:
            return []
        payload: dict[str, Any] = {"input": texts}
        chosen = model or self.model
        if chosen is not None:
            payload["model"] = chosen
        body, attempts = self._post_json(self.path, payload)
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise self._fail(self.path, 200, attempts,
                             f"expected data with {len(texts)} embeddings, got {got}")
        try:
            ordered = sorted(data, key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in ordered]
            indices = [int(item["index"]) for item in ordered]
        except (KeyError, TypeError, ValueError):
            raise self._fail(self.path, 200, attempts,
                             "each data item needs an integer index and a list of numbers") from None
        if indices != list(range(len(texts))):
            raise self._fail(self.path, 200, attempts,
                             f"embedding indices are not 0..{len(texts) - 1}: {indices[:10]}")
        if len({len(v) for v in vectors}) > 1:
            raise self._fail(self.path, 200, attempts, "embeddings have different dimensions")
        return vectors
