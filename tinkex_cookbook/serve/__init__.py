"""A local server speaking the Tinker API, backed by whatever training backend a manifest binds.

Point the official ``tinker`` SDK (or a tinker-cookbook script) at it with
``TINKER_BASE_URL=http://127.0.0.1:PORT`` and the ``tml-`` key it was started
with (``keys.RULE``: 16 or more characters after the prefix), and a Tinker
training script runs on this machine's CPU: a way to try scripts before paying
for tokens, and the server our ``tinker`` adapter is tested against. Needs the
``[tinker]`` extra (the SDK's wire schema).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tinkex_cookbook.ports import BlobStore, TrainingService
from tinkex_cookbook.serve.api import TinkerAPI
from tinkex_cookbook.serve.faults import Fault, FaultPlan
from tinkex_cookbook.serve.keys import check_api_key, new_api_key
from tinkex_cookbook.serve.limits import ServeLimits
from tinkex_cookbook.serve.server import LocalTinker

if TYPE_CHECKING:
    from tinkex_cookbook.runtime.settings import Settings


def local_tinker(
    service: TrainingService, blob_store: BlobStore, api_key: str, host: str = "127.0.0.1", port: int = 0,
    faults: FaultPlan | None = None, limits: ServeLimits | None = None,
) -> LocalTinker:
    """A server (not started yet) over ``service``; checkpoint paths are indexed in ``blob_store``;
    ``limits`` bound bodies, connections and what one request may ask for (``ServeLimits()`` by default)."""
    limits = limits or ServeLimits()
    return LocalTinker(TinkerAPI(service, blob_store, faults, limits), api_key, host, port, limits)


def serve_manifest(
    manifest: str, host: str, port: int, api_key: str, announce: Callable[[str], object] = print,
    settings: Settings | None = None, limits: ServeLimits | None = None,
) -> None:
    """Serve until interrupted, over the training backend and blob store ``manifest`` binds."""
    from tinkex_cookbook.runtime import Runtime

    check_api_key(api_key, "TINKEX_SERVE_API_KEY (else TINKER_API_KEY)")
    with Runtime.open(manifest, settings=settings) as ports:
        server = local_tinker(ports.training_client, ports.blob_store, api_key, host, port, limits=limits)
        announce(f"serving the Tinker API at {server.base_url} over {ports.training_client!r} "
                 f"(manifest {manifest!r}); clients: TINKER_BASE_URL={server.base_url} and the server's key "
                 "in TINKER_API_KEY. Ctrl-C stops.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            announce("stopped")
        finally:
            server.httpd.server_close()
            server.api.close()


__all__ = ["Fault", "FaultPlan", "LocalTinker", "ServeLimits", "local_tinker", "new_api_key", "serve_manifest"]
