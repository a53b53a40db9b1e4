"""Exponential backoff for the adapters that retry on their own (S3 bodies, the hub, the LLM endpoint,
Tinker session setup): one schedule, so their bounds are computed the same way."""

from __future__ import annotations

MAX_BACKOFF = 30.0
"""Longest sleep between two attempts, in seconds."""


def backoff_delay(attempt: int, backoff: float, cap: float = MAX_BACKOFF) -> float:
    """Sleep after failed attempt ``attempt`` (1-based): ``backoff * 2**(attempt-1)``, capped."""
    if backoff <= 0:
        return 0.0
    return min(cap, backoff * 2.0 ** min(max(attempt - 1, 0), 64))
