"""HTTP for the local Tinker-compatible server: keys, limits, routing, injected faults.

The standard library's threading HTTP server is enough: one thread per
connection, so the SDK's long polls on ``retrieve_future`` don't block its
submissions; HTTP/1.1 keep-alive so the SDK's connection pools are reused.
It binds to 127.0.0.1 by default and checks ``X-API-Key`` on every API call.

A client without the key costs the server a header's worth of reading: the key
and the body's framing are checked before a byte of the body is read, and a
refused connection is closed. Bodies are capped (``ServeLimits``) before and
after decompression, and ``Connections`` bounds the threads idle clients hold.
"""

from __future__ import annotations

import hmac
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tinkex_cookbook import jsonio
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.serve.api import ApiError, Reply, TinkerAPI
from tinkex_cookbook.serve.connections import Connections
from tinkex_cookbook.serve.faults import FaultPlan
from tinkex_cookbook.serve.keys import check_api_key
from tinkex_cookbook.serve.limits import MIB, BodyTooLargeError, ServeLimits
from tinkex_cookbook.serve.wire import CONTENT_ENCODINGS, PROTOBUF, decompress

log = logging.getLogger("tinkex_cookbook.serve")

OPEN_ROUTES = ("/api/v1/healthz",)
UNAUTHENTICATED_BODY_BYTES = 64 * 1024
"""The most body a request without the key gets read: enough to drain a client's small mistaken request
(so it reads its 401 instead of a reset connection), too little to be worth sending."""
_DIGITS = re.compile(r"[0-9]{1,18}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in two writes; with Nagle's algorithm the body waits for the client's
    delayed ACK (~40 ms on Linux), which would add that much to every request."""

    @property
    def tinker(self) -> TinkerHTTPServer:
        """The server that made this handler: ``self.server`` with its type (the base class declares a ``BaseServer``)."""
        server = self.server
        assert isinstance(server, TinkerHTTPServer), "this handler is only served by a TinkerHTTPServer"
        return server

    def setup(self) -> None:
        """A socket timeout too, so a reply the client never reads cannot hold the thread for ever."""
        super().setup()
        self.connection.settimeout(self.tinker.limits.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        """``100 Continue`` is sent by ``_handle`` once the key and length are accepted, not before."""
        return True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _body_length(self, keyed: bool) -> int | Reply:
        """The Content-Length, or the refusal of a body this server will not read (nothing is read yet)."""
        if self.headers.get_all("Transfer-Encoding"):
            return _closing(411, "send the body with a Content-Length; this server does not read chunked "
                                 "(Transfer-Encoding) bodies")
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            return _closing(400, "Content-Length must be one whole number of bytes (0 or more, at most 18 digits)")
        if keyed and int(value) > self.tinker.limits.max_body_bytes:
            return _closing(413, self.tinker.limits.too_large(f"the body is {value} bytes"))
        if not keyed and int(value) > UNAUTHENTICATED_BODY_BYTES:
            return _closing(413, f"the body is {value} bytes; a request without the key may carry at most "
                                 f"{UNAUTHENTICATED_BODY_BYTES}")
        return int(value)

    def _read_body(self, length: int) -> bytes | None:
        """``length`` bytes a MiB at a time (memory grows as bytes arrive, not as promised), or None if
        the client hung up, timed out or was cut as idle first."""
        body = bytearray()
        while len(body) < length:
            try:
                chunk = self.rfile.read(min(MIB, length - len(body)))
            except OSError:
                chunk = b""
            if not chunk:
                self.close_connection = True
                return None
            body += chunk
        return bytes(body)

    def _admit(self, path: str) -> bytes | Reply | None:
        """The body of a request the server will serve; else the refusal, or None if the client left."""
        keyed = self.tinker.accepts(self.headers.get("X-API-Key"))
        length = self._body_length(keyed)
        waiting = self.headers.get("Expect", "").strip().lower() == "100-continue"  # no body until we say
        if not keyed and path not in OPEN_ROUTES:
            if isinstance(length, int) and not waiting:
                self._read_body(length)  # drained, so the client reads the 401 rather than a reset
            # close too: a client refused at its first request drops its connection pool unclosed
            return _closing(401, "invalid or missing X-API-Key")
        if isinstance(length, Reply):
            return length
        if length and waiting:
            self.send_response_only(100)
            self.end_headers()
        return self._read_body(length)

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self._admit(path)
        if body is None:
            return
        if isinstance(body, Reply):
            self._send(body)
            return
        self.tinker.connections.busy(self.connection)
        try:
            self._serve(method, path, body)
        finally:
            self.tinker.connections.idle(self.connection)

    def _serve(self, method: str, path: str, body: bytes) -> None:
        faults = self.tinker.api.faults
        if faults.latency:
            time.sleep(faults.latency)
        fault = faults.take(path, ("delay", "reset", "status"))
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
        elif fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        elif fault is not None:
            self._send(_fault_reply(fault.status, fault.retry_after_ms))
            return
        try:
            reply = self._route(method, path, self._decoded(body))
        except ApiError as exc:
            reply = Reply(exc.status, {"detail": exc.detail})
        except Exception as exc:  # a bug or backend failure outside a future: a 500 the SDK may retry
            log.exception("error serving %s %s", method, path)
            reply = Reply(500, {"detail": f"{type(exc).__name__}: {exc}"})
        lost = faults.take(path, ("lose_response",))
        if lost is not None:
            reply = _fault_reply(lost.status, lost.retry_after_ms)
        self._send(reply)

    def _decoded(self, body: bytes) -> bytes:
        """The body as sent before compression, capped like the body itself."""
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in CONTENT_ENCODINGS:
            raise ApiError(415, f"Content-Encoding {encoding!r} is not supported; send one of "
                                f"{', '.join(CONTENT_ENCODINGS)}")
        limits = self.tinker.limits
        try:
            return decompress(body, encoding, limits.max_body_bytes)
        except BodyTooLargeError:
            raise ApiError(413, limits.too_large(f"the {encoding} body decompresses to more bytes")) from None
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None

    def _route(self, method: str, path: str, body: bytes) -> Reply:
        api = self.tinker.api
        if method == "GET":
            return api.get(path)
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "content-encoding"}
        if PROTOBUF in headers.get("content-type", ""):
            return api.post(path, body, headers)
        parsed, wrong = jsonio.problem(body or b"{}")
        if wrong is not None:
            raise ApiError(400, f"{path} takes a JSON body; this body {wrong}")
        return api.post(path, parsed, headers)

    def _send(self, reply: Reply) -> None:
        payload = reply.payload()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.headers.get("Connection") == "close":
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on this reply (closed, timed out)
            self.close_connection = True


def _closing(status: int, detail: str) -> Reply:
    """A refusal sent before the body is read: the connection closes, since the body's bytes still follow."""
    return Reply(status, {"detail": detail}, headers={"Connection": "close"})


def _fault_reply(status: int, retry_after_ms: int | None) -> Reply:
    headers = {"Retry-After-Ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    detail = {429: "rate limited (injected)", 408: "timeout (injected)"}.get(status, "server error (injected)")
    return Reply(status, {"detail": detail}, headers=headers)


class TinkerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The listen backlog (socketserver's default is 5): a burst of connections beyond it has its SYNs
    dropped, and the kernel retries them only after a second or more, healthz probes included."""

    def __init__(self, address: tuple[str, int], api: TinkerAPI, api_key: str,
                 limits: ServeLimits | None = None) -> None:
        check_api_key(api_key)
        super().__init__(address, _Handler)
        self.api = api
        self.limits = limits or ServeLimits()
        self.connections = Connections(self.limits)
        self._key = api_key.encode()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if there is room (see ``Connections``), else a fast 503 and close."""
        if self.connections.admit(request):
            super().process_request(request, client_address)
            return
        _refuse_full(request, self.limits.max_connections)
        self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        self.connections.release(request)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` about twice a second: close connections idle too long."""
        self.connections.reap()

    def server_close(self) -> None:
        """Idle connections are closed, so their threads end and joining them does not wait for clients."""
        self.connections.close_idle()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-request are routine (a poll abandoned at shutdown): log, don't print."""
        log.debug("connection from %s ended abruptly", client_address)

    def accepts(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self._key)

    def __repr__(self) -> str:
        host, port = self.server_address[:2]
        return f"TinkerHTTPServer(http://{host!s}:{port})"


def _refuse_full(sock: socket.socket, max_connections: int) -> None:
    """Written without blocking from the accepting thread; a client that cannot take it just sees the close."""
    body = jsonio.dump({"detail": f"this server has its {max_connections} connections open and busy; retry "
                                 "shortly (serve --max-connections raises the limit)"}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.setblocking(False)
        sock.send(head + body)
    except OSError:
        pass


class LocalTinker:
    """A running server: ``base_url`` for clients, ``stop()`` (or ``with``) to shut it down.

    ``api_key`` must meet ``keys.RULE`` (``WeakSecretError`` otherwise); ``limits`` defaults to ``ServeLimits()``.
    """

    def __init__(self, api: TinkerAPI, api_key: str, host: str = "127.0.0.1", port: int = 0,
                 limits: ServeLimits | None = None) -> None:
        self.api = api
        self.httpd = TinkerHTTPServer((host, port), api, api_key, limits)
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> FaultPlan:
        return self.api.faults

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tinker-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self.api.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
