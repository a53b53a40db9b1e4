"""Metrics shared by sampling evaluators: the unbiased pass@k estimator and per-example seeds."""

from __future__ import annotations

import hashlib
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of ``k`` samples drawn from ``n`` (``c`` of them correct) is correct:
    ``1 - C(n-c, k) / C(n, k)``, the estimator of Chen et al. (2021), exact for ``k <= n``."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def example_seed(seed: int, task: str, index: int) -> int:
    """A sampling seed per example that depends only on the run's seed, the task and the example: the
    same checkpoint evaluated twice gives the same samples, whatever else was evaluated beside it."""
    digest = hashlib.sha256(f"{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
