"""Hostile HTTP clients for tests: run attacks in background threads and time a server's healthz meanwhile.

``healthz_under_attack(base_url, attack, ...)`` starts each attack in its own thread (an attack is a
callable taking a ``threading.Event`` and looping until it is set), then times healthz requests, each
on a fresh raw socket, so a server that stalls, queues or refuses connections shows it in the
latencies. The attacks below speak raw HTTP/1.1 over sockets: what a hostile client sends is exactly
what the test wrote, with no client library tidying it up.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Attack = Callable[[threading.Event], object]
HEALTHZ = "/api/v1/healthz"


@dataclass
class Latencies:
    """Seconds each answered probe took, and how many went unanswered (refused, reset, timed out, not 200)."""

    seconds: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("inf")

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("inf"))


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def connect(base_url: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address(base_url), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(method: str, path: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The request line and headers, ending with the blank line; ``Host`` is added. UTF-8 on the wire, so a
    test can send bytes a well-behaved client would not."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """The status and body of one reply (its Content-Length framed), or None if the server closed or went
    quiet for ``timeout`` seconds first."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return int(head.split(b" ", 2)[1]), body


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (whatever it sends first is read)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        pass
    return True


def probe(base_url: str, timeout: float = 5.0) -> float | None:
    """Seconds from connect to a complete 200 from healthz, or None."""
    start = time.perf_counter()
    try:
        with connect(base_url, timeout) as sock:
            sock.sendall(request_head("GET", HEALTHZ, {"Connection": "close"}))
            reply = read_reply(sock, timeout)
    except OSError:
        return None
    return time.perf_counter() - start if reply is not None and reply[0] == 200 else None


def healthz_under_attack(base_url: str, *attacks: Attack, probes: int = 20, interval: float = 0.02,
                         settle: float = 0.3, timeout: float = 5.0) -> Latencies:
    """Run every attack in its own thread; after ``settle`` seconds, time ``probes`` healthz requests
    ``interval`` seconds apart; then set the attacks' stop event and join them. With no attacks: a baseline."""
    stop = threading.Event()
    threads = [threading.Thread(target=attack, args=(stop,), name=f"attack-{i}", daemon=True)
               for i, attack in enumerate(attacks)]
    for thread in threads:
        thread.start()
    latencies = Latencies()
    try:
        stop.wait(settle)
        for _ in range(probes):
            seconds = probe(base_url, timeout)
            if seconds is None:
                latencies.failures += 1
            else:
                latencies.seconds.append(seconds)
            stop.wait(interval)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return latencies


# ---- attacks: each loops until ``stop`` is set; the counters they are given record what they got through


@dataclass
class Tally:
    """What an attack achieved: connections it opened, bytes the server took from it, replies by status."""

    connections: int = 0
    bytes_sent: int = 0
    statuses: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, sent: int, status: int | None) -> None:
        with self._lock:
            self.connections += 1
            self.bytes_sent += sent
            if status is not None:
                self.statuses.append(status)


def _send_until_closed(sock: socket.socket, stop: threading.Event, limit: int) -> int:
    """Write zeros until the server stops taking them (closed, or 1 s without room), ``limit`` or ``stop``."""
    sent, block = 0, bytes(65536)
    sock.settimeout(1.0)
    try:
        while sent < limit and not stop.is_set():
            sent += sock.send(block)
    except OSError:
        pass
    return sent


def body_flood(base_url: str, tally: Tally, headers: Mapping[str, str], path: str = "/api/v1/forward_backward",
               send: int = 64 << 20) -> Attack:
    """Send ``headers`` (say a 400 MB Content-Length and no key), then up to ``send`` bytes of body."""

    def attack(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with connect(base_url) as sock:
                    sock.sendall(request_head("POST", path, headers))
                    sent = _send_until_closed(sock, stop, send)
                    reply = read_reply(sock, timeout=1.0)
            except OSError:
                continue
            tally.add(sent, reply[0] if reply else None)

    return attack


def request_flood(base_url: str, tally: Tally, head: bytes, body: bytes = b"") -> Attack:
    """Send one raw request (``head`` + ``body``) per connection, as fast as the server answers."""

    def attack(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with connect(base_url) as sock:
                    sock.sendall(head + body)
                    reply = read_reply(sock, timeout=2.0)
            except OSError:
                continue
            tally.add(len(body), reply[0] if reply else None)

    return attack


def trickle(base_url: str, tally: Tally, connections: int = 20, every: float = 0.1) -> Attack:
    """Slowloris: hold ``connections`` open, each sending one more header byte every ``every`` seconds,
    reopening any the server closes."""
    line = request_head("POST", "/api/v1/create_session", {"X-Padding": "x" * 60000})

    def attack(stop: threading.Event) -> None:
        held: list[tuple[socket.socket, int]] = []
        try:
            while not stop.is_set():
                while len(held) < connections:
                    try:
                        held.append((connect(base_url), 0))
                    except OSError:
                        break
                kept = []
                for sock, offset in held:
                    try:
                        sock.send(line[offset % len(line):offset % len(line) + 1])
                        kept.append((sock, offset + 1))
                    except OSError:
                        sock.close()
                        tally.add(offset, None)
                held = kept
                stop.wait(every)
        finally:
            for sock, _ in held:
                sock.close()

    return attack


def idle_flood(base_url: str, tally: Tally, connections: int = 300) -> Attack:
    """Open ``connections`` connections and send nothing on them, reopening any the server closes."""

    def attack(stop: threading.Event) -> None:
        held: list[socket.socket] = []
        try:
            while not stop.is_set():
                while len(held) < connections and not stop.is_set():
                    try:
                        held.append(connect(base_url))
                        tally.add(0, None)
                    except OSError:
                        break
                alive = []
                for sock in held:
                    sock.setblocking(False)
                    try:
                        gone = sock.recv(1024) == b""
                    except BlockingIOError:
                        gone = False
                    except OSError:
                        gone = True
                    if gone:
                        sock.close()
                    else:
                        alive.append(sock)
                held = alive
                stop.wait(0.05)
        finally:
            for sock in held:
                sock.close()

    return attack
