"""Pending results of a Tinker-compatible server, found by request id and fetched by long poll.

Every slow request answers at once with a ``request_id``; the client then polls
``retrieve_future``. A request retried by the client (same model and sequence
id) maps to the first request's id, so its work is never applied twice.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.ports import APIFuture

Encoder = Callable[[Any], Any]
"""Turns a backend result into the response payload (a JSON-able dict or protobuf bytes)."""


@dataclass
class Pending:
    request_id: str
    route: str
    future: APIFuture[Any]
    encode: Encoder
    extra: dict[str, Any] | None = None
    payload: Any = None
    """The encoded reply once the work is done, so a re-fetch returns the same bytes."""


class NeverDone:
    """The future of a request told to hang by a fault: it never resolves."""

    def result(self, timeout: float | None = None) -> Any:
        threading.Event().wait(timeout)
        raise TimeoutError("this request was told to hang")

    def done(self) -> bool:
        return False


class Failed:
    """The future of a request the backend refused at submission (an unknown loss, a bad datum)."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def result(self, timeout: float | None = None) -> Any:
        raise self._error

    def done(self) -> bool:
        return True


def _started(start: Callable[[], APIFuture[Any]]) -> APIFuture[Any]:
    """Errors raised while submitting are reported like errors while running: as the request's
    failed result, not as an HTTP 500 that the SDK would keep retrying for minutes."""
    try:
        return start()
    except Exception as exc:  # noqa: BLE001 - any backend refusal becomes the request's result
        return Failed(exc)


class FutureTable:
    """Keeps the last ``keep`` delivered results too, so a client that lost a reply can fetch it again."""

    def __init__(self, keep: int = 256) -> None:
        self._delivered: deque[str] = deque()
        self._keep = keep
        self._pending: dict[str, Pending] = {}
        self._by_key: dict[Hashable, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(
        self, route: str, key: Hashable | None, start: Callable[[], APIFuture[Any]], encode: Encoder,
        extra: dict[str, Any] | None = None,
    ) -> Pending:
        """Start the work unless ``key`` was seen before; either way return its pending entry.

        ``start`` runs under the table's lock, so two retries of one request cannot both start
        it, and requests are handed to the backend in the order they arrive.
        """
        with self._lock:
            if key is not None and key in self._by_key:
                return self._pending[self._by_key[key]]
            request_id = f"req-{next(self._ids)}"
            pending = Pending(request_id, route, _started(start), encode, extra=extra)
            self._pending[request_id] = pending
            if key is not None:
                self._by_key[key] = request_id
            return pending

    def get(self, request_id: str) -> Pending | None:
        with self._lock:
            return self._pending.get(request_id)

    def delivered(self, request_id: str) -> None:
        with self._lock:
            self._delivered.append(request_id)
            while len(self._delivered) > self._keep:
                self._pending.pop(self._delivered.popleft(), None)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)
