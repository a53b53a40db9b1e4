"""A fault-injecting HTTP reverse proxy on 127.0.0.1, for testing clients against a misbehaving network.

It sits between an adapter and a real local upstream (moto's S3 server, the fake Hub, an LLM stub,
the local Tinker server) and forwards every request, except those a ``ProxyFault`` claims. Kinds:

- ``status``: answer ``status`` (a 5xx) without asking the upstream; ``body`` and ``headers`` make
  it look like the upstream's own error (an S3 XML error, say).
- ``throttle``: answer 429 with ``Retry-After: retry_after`` seconds.
- ``reset``: read the request, then reset the connection without a reply.
- ``reset_body``: forward, send the status, headers and half the body, then reset the connection.
- ``truncate``: forward, declare the full ``Content-Length`` but send only half the body, then close
  normally (an empty body is declared as 16 bytes), so the client sees a short read.
- ``delay``: sleep ``delay`` seconds, then forward (a slow upstream, under the client's timeout).
- ``hang``: read the request and answer nothing until the client gives up (closes), the proxy stops,
  or ``delay`` seconds pass (then reset): a timeout, when the client's timeout is shorter.

As in the local Tinker server's ``FaultPlan``, a fault matches requests (by method and a path
substring), lets the first ``after`` of them through and fires on the next ``times``.
``FaultPlan.scattered`` places bursts of seeded kinds at seeded positions, so a failing case
replays exactly. Stdlib only: one thread per client connection, one upstream connection per
request.
"""

from __future__ import annotations

import http.client
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from tests.local_server import LocalServer

ProxyFaultKind = Literal["status", "throttle", "reset", "reset_body", "truncate", "delay", "hang"]
KINDS: tuple[ProxyFaultKind, ...] = ("status", "throttle", "reset", "reset_body", "truncate", "delay", "hang")
FOREVER = 10**9
"""``times`` for a persistent fault."""
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authorization", "proxy-authenticate", "expect"})


@dataclass
class ProxyFault:
    kind: ProxyFaultKind
    times: int = 1
    after: int = 0
    methods: tuple[str, ...] = ()
    """Only requests with one of these methods (empty: any)."""
    path: str = ""
    """Only requests whose path contains this (empty: any)."""
    status: int = 503
    retry_after: float = 1.0
    delay: float = 0.0
    body: bytes = b'{"error": "injected fault"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and self.path in path


class FaultPlan:
    """Thread-safe: the proxy's handler threads ask it which fault, if any, applies to a request."""

    def __init__(self, faults: Iterable[ProxyFault] = ()) -> None:
        self.faults = list(faults)
        self._lock = threading.Lock()

    @classmethod
    def scattered(
        cls, seed: int, kinds: Iterable[ProxyFaultKind], bursts: int, window: int, times: int = 1, **options: Any
    ) -> FaultPlan:
        """``bursts`` bursts of seeded kinds at seeded request positions below ``window``, none overlapping."""
        rng = random.Random(seed)
        kinds = list(kinds)
        gap = times + 1  # a clean request between bursts, so no request meets two of them in a row
        slots = sorted(rng.sample(range(max(window // gap, bursts)), bursts))
        return cls([ProxyFault(rng.choice(kinds), times=times, after=slot * gap, **options) for slot in slots])

    def add(self, fault: ProxyFault) -> ProxyFault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, method: str, path: str) -> ProxyFault | None:
        """The first fault that fires for this request, counted as fired. Every matching fault counts
        the request as seen, so ``after`` is a position among matching requests, whatever fired before."""
        chosen = None
        with self._lock:
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                fault.seen += 1
                if chosen is None and fault.seen > fault.after and fault.fired < fault.times:
                    fault.fired += 1
                    chosen = fault
        return chosen

    def fired(self) -> int:
        with self._lock:
            return sum(f.fired for f in self.faults)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled client connections meet the faults too
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        body = self._read_body()
        proxy = self.server.proxy
        proxy.requests.append((self.command, self.path))
        fault = proxy.plan.take(self.command, self.path)
        if fault is not None and fault.kind == "status":
            return self._reply(fault.status, fault.headers, fault.body)
        if fault is not None and fault.kind == "throttle":
            return self._reply(429, {**fault.headers, "Retry-After": f"{fault.retry_after:g}"}, fault.body)
        if fault is not None and fault.kind == "reset":
            return self._reset()
        if fault is not None and fault.kind == "hang":
            return self._hang(fault.delay)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
        try:
            status, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
        except OSError as exc:
            return self._reply(502, {"Content-Type": "text/plain"}, f"proxy: upstream failed: {exc}".encode())
        if fault is not None and fault.kind in ("reset_body", "truncate"):
            return self._cut(status, headers, payload, reset=fault.kind == "reset_body")
        self._reply(status, headers, payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _head(self, status: int, headers: Any, length: int | None) -> None:
        self.send_response(status)
        for name, value in _items(headers):
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(self, status: int, headers: Any, payload: bytes) -> None:
        if self.command == "HEAD":  # the upstream's Content-Length describes the body a GET would get
            declared = next((v for k, v in _items(headers) if k.lower() == "content-length"), None)
            self._head(status, headers, int(declared) if declared is not None else None)
            return
        self._head(status, headers, len(payload))
        self.wfile.write(payload)

    def _cut(self, status: int, headers: Any, payload: bytes, reset: bool) -> None:
        if self.command == "HEAD":  # nothing to cut: reset instead
            return self._reset()
        declared = len(payload) if payload else 16
        self._head(status, headers, declared)
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        if reset:
            time.sleep(0.01)  # let the half body leave before the reset discards unsent data
            return self._reset()
        self.close_connection = True

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): the client reads a reset, not a clean end of stream."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _hang(self, limit: float) -> None:
        """Say nothing until the client closes, the proxy stops, or ``limit`` seconds pass."""
        deadline = time.monotonic() + (limit or 60.0)
        stopping = self.server.proxy.stopping
        while not stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break  # the client hung up
                except OSError:
                    break
                time.sleep(0.05)  # the client sent more: keep ignoring it, without spinning
        self._reset()


def _items(headers: Any) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that give up mid-reply (timeouts, resets) are the point here: stay quiet."""


class FaultProxy:
    """``FaultProxy(upstream).start()``; clients use ``url`` instead of the upstream's; ``plan`` holds the faults."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None, upstream_timeout: float = 60.0) -> None:
        split = urlsplit(upstream)
        if split.scheme != "http" or split.hostname is None:
            raise ValueError(f"the fault proxy forwards to an http:// upstream, got {upstream!r}")
        self.upstream = (split.hostname, split.port or 80)
        self.plan = plan or FaultPlan()
        self.upstream_timeout = upstream_timeout
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self._server: LocalServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fault proxy is not running: call start()")
        return self._server.url

    def start(self) -> Self:
        self._server = LocalServer(_Handler, "fault-proxy", server_class=_ProxyServer, poll_interval=0.05)
        self._server.server.proxy = self  # type: ignore[attr-defined]
        self._server.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextmanager
    def faults(self, *faults: ProxyFault) -> Iterator[list[ProxyFault]]:
        """``faults`` apply inside the block only."""
        added = [self.plan.add(f) for f in faults]
        try:
            yield added
        finally:
            self.plan.clear()

    def forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to the upstream, on its own connection: (status, headers, whole body)."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read() if method != "HEAD" else b""
            return response.status, response.getheaders(), payload
        finally:
            conn.close()
