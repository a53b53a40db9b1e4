"""The open connections of one server, so idle ones cannot pile up threads.

Each connection has a thread. It is *idle* while it waits for a request or
receives one, *busy* while the server answers (a ``retrieve_future`` long
poll is busy, so it is never cut). An idle connection is closed once it has
been idle for ``idle_timeout`` seconds, however slowly it trickles bytes; when
``max_connections`` are open, a new one closes the longest-idle one to make
room, or is refused if all are busy. So a client that opens connections and
sends nothing (or sends a byte a second) holds at most ``max_connections``
threads, for at most ``idle_timeout`` each, and a fresh request still gets in.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tinkex_cookbook.serve.limits import ServeLimits


@dataclass
class _State:
    since: float
    busy: bool = False


class Connections:
    """Thread-safe: the accepting thread admits and reaps; each connection's thread marks it busy or idle."""

    def __init__(self, limits: ServeLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _State] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def admit(self, sock: socket.socket) -> bool:
        """Register ``sock`` (idle) if there is room, making room by closing the longest-idle connection."""
        with self._lock:
            if len(self._open) >= self.limits.max_connections:
                idle = [(state.since, id(s), s) for s, state in self._open.items() if not state.busy]
                if not idle:
                    return False
                self._cut(min(idle)[2])
            self._open[sock] = _State(self._clock())
            return True

    def busy(self, sock: socket.socket) -> None:
        self._mark(sock, busy=True)

    def idle(self, sock: socket.socket) -> None:
        self._mark(sock, busy=False)

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def reap(self) -> int:
        """Close every connection idle for longer than ``idle_timeout``; how many were closed."""
        deadline = self._clock() - self.limits.idle_timeout
        with self._lock:
            stale = [s for s, state in self._open.items() if not state.busy and state.since < deadline]
            for sock in stale:
                self._cut(sock)
        return len(stale)

    def close_idle(self) -> None:
        """Close every idle connection (the server is stopping; busy ones finish their reply)."""
        with self._lock:
            for sock in [s for s, state in self._open.items() if not state.busy]:
                self._cut(sock)

    def _mark(self, sock: socket.socket, busy: bool) -> None:
        with self._lock:
            state = self._open.get(sock)
            if state is not None:
                state.busy, state.since = busy, self._clock()

    def _cut(self, sock: socket.socket) -> None:
        """Shut ``sock`` down (its thread, blocked reading, sees the end and exits) and forget it.

        Only its own thread closes the socket: closing here could free the descriptor for reuse
        while that thread still reads from it.
        """
        del self._open[sock]
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already gone
            pass
