"""HTTP for the local Tinker-compatible server: keys, routing, injected faults.

The standard library's threading HTTP server is enough: one thread per
connection, so the SDK's long polls on ``retrieve_future`` don't block its
submissions; HTTP/1.1 keep-alive so the SDK's connection pools are reused.
It binds to 127.0.0.1 by default and checks ``X-API-Key`` on every API call.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tinkex_cookbook import jsonio
from tinkex_cookbook.serve.api import ApiError, Reply, TinkerAPI
from tinkex_cookbook.serve.faults import FaultPlan
from tinkex_cookbook.serve.wire import PROTOBUF

log = logging.getLogger("tinkex_cookbook.serve")

OPEN_ROUTES = ("/api/v1/healthz",)


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

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
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
        if path not in OPEN_ROUTES and not self.tinker.accepts(self.headers.get("X-API-Key")):
            # close too: a client refused at its first request drops its connection pool unclosed
            self._send(Reply(401, {"detail": "invalid or missing X-API-Key"}, headers={"Connection": "close"}))
            return
        try:
            reply = self._route(method, path, body)
        except ApiError as exc:
            reply = Reply(exc.status, {"detail": exc.detail})
        except Exception as exc:  # a bug or backend failure outside a future: a 500 the SDK may retry
            log.exception("error serving %s %s", method, path)
            reply = Reply(500, {"detail": f"{type(exc).__name__}: {exc}"})
        lost = faults.take(path, ("lose_response",))
        if lost is not None:
            reply = _fault_reply(lost.status, lost.retry_after_ms)
        self._send(reply)

    def _route(self, method: str, path: str, body: bytes) -> Reply:
        api = self.tinker.api
        if method == "GET":
            return api.get(path)
        headers = {k.lower(): v for k, v in self.headers.items()}
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


def _fault_reply(status: int, retry_after_ms: int | None) -> Reply:
    headers = {"Retry-After-Ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    detail = {429: "rate limited (injected)", 408: "timeout (injected)"}.get(status, "server error (injected)")
    return Reply(status, {"detail": detail}, headers=headers)


class TinkerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: TinkerAPI, api_key: str) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self._key = api_key.encode()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-request are routine (a poll abandoned at shutdown): log, don't print."""
        log.debug("connection from %s ended abruptly", client_address)

    def accepts(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self._key)

    def __repr__(self) -> str:
        host, port = self.server_address[:2]
        return f"TinkerHTTPServer(http://{host!s}:{port})"


class LocalTinker:
    """A running server: ``base_url`` for clients, ``stop()`` (or ``with``) to shut it down."""

    def __init__(self, api: TinkerAPI, api_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self.httpd = TinkerHTTPServer((host, port), api, api_key)
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
