"""Faults the local server can inject, so clients can be tested against a misbehaving Tinker.

A ``Fault`` matches requests to one route (or ``*``) and fires on ``times``
of them after skipping the first ``after``. Kinds:

- ``status``: answer ``status`` before doing any work (5xx, 429 with Retry-After).
- ``lose_response``: do the work, then answer ``status`` as if the reply was lost;
  a client retry must not apply the work twice.
- ``reset``: close the connection without answering.
- ``delay``: sleep ``delay`` seconds before handling (slow responses, timeouts).
- ``drop_future``: on ``retrieve_future`` for a matching request, answer 410 (promise gone).
- ``hang``: the matching request's future never resolves; polls get 408 forever.

``FaultPlan.latency`` adds a fixed delay to every API request, the way a real
network round trip would, for pipelining benchmarks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["status", "lose_response", "reset", "delay", "drop_future", "hang"]


@dataclass
class Fault:
    route: str
    kind: FaultKind = "status"
    status: int = 503
    times: int = 1
    after: int = 0
    delay: float = 0.0
    retry_after_ms: int | None = None
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def matches(self, route: str) -> bool:
        return self.route in ("*", route)


class FaultPlan:
    """Thread-safe: handlers on many threads ask it which fault, if any, applies to their request."""

    def __init__(self, faults: Iterable[Fault] = (), latency: float = 0.0) -> None:
        self.faults = list(faults)
        self.latency = latency
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, route: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """The first fault of one of ``kinds`` that fires for this request to ``route``, counted as fired."""
        with self._lock:
            for fault in self.faults:
                if fault.kind not in kinds or not fault.matches(route):
                    continue
                fault.seen += 1
                if fault.seen > fault.after and fault.fired < fault.times:
                    fault.fired += 1
                    return fault
        return None

    def fired(self) -> int:
        with self._lock:
            return sum(f.fired for f in self.faults)
