"""Pending results of a Tinker-compatible server, found by request id and fetched by long poll.

Every slow request answers at once with a ``request_id``; the client then polls
``retrieve_future``. A request that carries a sequence id has an identity: the
model (or sampling session) and that id. A retry of it (the same identity and
the same content, its fingerprint) maps to the first request's id, so its work
is never applied twice; the same identity with other content is a conflict the
caller reports, never a reply to the wrong request. A request without a
sequence id has no identity and always runs. Request ids carry a random part
drawn at each start, so an id from an earlier run is never found (410), never
another request's result.
"""

from __future__ import annotations

import itertools
import threading
import uuid
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
    fingerprint: str = ""
    """What the request asked for (route and body digest): tells a retry from a reuse of its identity."""


class Conflict(Exception):
    """A request reuses the identity (model or session, and sequence id) of an earlier, different request."""

    def __init__(self, key: Hashable, earlier: Pending) -> None:
        super().__init__(f"{key!r} was already used by {earlier.route} request {earlier.request_id}")
        self.key = key
        self.earlier = earlier


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

    def __init__(self, keep: int = 256, unfetched: int = 1024) -> None:
        self._delivered: deque[str] = deque()
        self.keep = keep
        self.unfetched = unfetched
        """Finished results never fetched are kept up to this many (then the oldest go): a client that
        submits and never polls cannot fill memory."""
        self._pending: dict[str, Pending] = {}
        self._by_key: dict[Hashable, str] = {}
        self._key_of: dict[str, Hashable] = {}
        self.run = uuid.uuid4().hex[:12]
        """This start's random part of every request id."""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(
        self, route: str, key: Hashable | None, start: Callable[[], APIFuture[Any]], encode: Encoder,
        extra: dict[str, Any] | None = None, fingerprint: str = "",
    ) -> Pending:
        """Start the work unless ``key`` was seen before with the same ``fingerprint``; either way return
        its pending entry. ``key`` seen with another fingerprint raises ``Conflict``.

        ``start`` runs under the table's lock, so two retries of one request cannot both start
        it, and requests are handed to the backend in the order they arrive.
        """
        with self._lock:
            if key is not None and key in self._by_key:
                earlier = self._pending[self._by_key[key]]
                if earlier.fingerprint != fingerprint:
                    raise Conflict(key, earlier)
                return earlier
            self._prune()
            request_id = f"req-{self.run}-{next(self._ids)}"
            pending = Pending(request_id, route, _started(start), encode, extra=extra, fingerprint=fingerprint)
            self._pending[request_id] = pending
            if key is not None:
                self._by_key[key] = request_id
                self._key_of[request_id] = key
            return pending

    def get(self, request_id: str) -> Pending | None:
        with self._lock:
            return self._pending.get(request_id)

    def delivered(self, request_id: str) -> None:
        with self._lock:
            if request_id not in self._delivered:
                self._delivered.append(request_id)
            while len(self._delivered) > self.keep:
                self._drop(self._delivered.popleft())

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._drop(request_id)

    def _drop(self, request_id: str) -> None:
        """Forget the entry and its identity together: no key is left naming a missing entry."""
        self._pending.pop(request_id, None)
        key = self._key_of.pop(request_id, None)
        if key is not None and self._by_key.get(key) == request_id:
            del self._by_key[key]

    def _prune(self) -> None:
        if len(self._pending) <= self.keep + 2 * self.unfetched:
            return
        delivered = set(self._delivered)
        finished = [rid for rid, p in self._pending.items() if rid not in delivered and p.future.done()]
        for request_id in finished[: len(finished) - self.unfetched]:
            self._drop(request_id)

    def unfinished(self) -> int:
        """Requests whose work is still queued or running."""
        with self._lock:
            entries = list(self._pending.values())
        return sum(1 for p in entries if p.payload is None and not p.future.done())

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
