"""HTTP servers for tests: bound to 127.0.0.1 on a free port, served from a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalServer:
    """``with LocalServer(Handler, "name") as server:`` serves at ``server.url`` until the block ends.

    The socket is bound on construction, so ``server`` (and ``url``) can be set up before ``start``.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], name: str,
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer, poll_interval: float = 0.5,
    ) -> None:
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(poll_interval,), name=name,
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must have started
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
