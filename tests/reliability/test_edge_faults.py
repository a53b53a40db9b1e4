"""Faults at the edges: each adapter that talks to a server retries within bounds, then fails typed.

Every edge talks to a real local upstream, through the fault-injecting proxy (``fault_proxy``) or,
for Tinker, through the local Tinker server's own ``FaultPlan``:

- S3 blob store -> proxy -> moto's S3 server
- OpenAI-compatible chat and embeddings -> proxy -> a small local stub
- Hugging Face hub downloads -> proxy -> the fake Hub
- Tinker training client -> the local Tinker server (its ``FaultPlan``), or, for replies cut short
  (truncated or reset bodies, which that plan cannot inject), proxy -> that server

For each edge and fault kind: (a) a burst shorter than the adapter's retry budget is survived with
the result of a clean call; (b) a fault that persists ends, within a bound computed from the
adapter's options, in the adapter's typed error, whose message names the endpoint and operation and
gives a hint, never a secret; (c) for S3 and Tinker, a whole ``sl_basic`` run that dies mid-run of a
persistent fault resumes from its last checkpoint once the fault clears, to the metrics of an
uninterrupted run. Each case is tallied (tried / survived / typed error / lost, slowest time and its
bound) in ``edge-faults.md`` under pytest's base temp directory; lost means a wrong result, an
untyped error, or a call that outlived its bound. Budgets are small (short timeouts, few attempts,
tiny backoff) so the short form stays fast; ``-m long`` runs longer bursts, more seeds, faults on
other requests, and every kind through whole runs.
"""

from __future__ import annotations

import gc
import json
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.faults import metric_rows
from tests.local_server import LocalServer
from tests.reliability.fault_proxy import FOREVER, KINDS, FaultPlan, FaultProxy, ProxyFault, ProxyFaultKind
from tinkex_cookbook.errors import BlobStoreError, CookbookError, TrainingBackendError, error_chain

LONG = pytest.mark.long

# -- the ledger: every case, tallied per (edge, fault kind) ------------------------------------------


@dataclass
class Tally:
    tried: int = 0
    survived: int = 0
    typed: int = 0
    lost: int = 0
    resumed: int = 0
    slowest: float = 0.0
    bound: float = 0.0
    library_backoff: float = 0.0
    """Seconds of a library's own backoff the case would have slept (recorded instead; not in ``slowest``)."""


LEDGER: dict[tuple[str, str], Tally] = {}


@dataclass(frozen=True)
class Expect:
    """What a typed failure must look like: its type, the words naming where it happened, a hint, no secret."""

    errors: tuple[type[BaseException], ...]
    names: tuple[str, ...]
    hints: tuple[str, ...]
    secrets: tuple[str, ...]




def _judge_error(exc: BaseException, expect: Expect) -> str:
    """Why ``exc`` is not the typed error ``expect`` describes; empty when it is."""
    if not isinstance(exc, CookbookError | ConnectionError):
        return f"untyped {type(exc).__module__}.{type(exc).__name__}: {exc}"
    if not any(isinstance(e, expect.errors) for e in error_chain(exc)):
        return f"{type(exc).__name__} is not (and is not caused by) one of {expect.errors}: {exc}"
    text = f"{exc} {exc!r}"
    missing = [name for name in expect.names if name not in text]
    if missing:
        return f"the message does not name {missing}: {exc}"
    if not any(hint in text for hint in expect.hints):
        return f"the message has no hint (one of {expect.hints}): {exc}"
    leaked = [s for s in expect.secrets if any(s in f"{e} {e!r}" for e in error_chain(exc))]
    return f"a secret shows in the error: {leaked}" if leaked else ""


WATCHDOG_GRACE = 15.0
"""Seconds past its bound after which a case that has not returned is called hung (and lost)."""


def _watched(call: Callable[[], Any], seconds: float) -> dict[str, Any]:
    """``call()`` on a daemon thread: {"value": ...}, {"error": ...}, or {} if it was still running."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:  # noqa: BLE001 - judged by the caller
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="edge-case", daemon=True)
    worker.start()
    worker.join(seconds)
    return outcome


def run_case(
    edge: str, kind: str, call: Callable[[], Any], *, want: str, bound: float, expect: Expect,
    result: Any = None, library_backoff: Callable[[], float] | None = None,
) -> BaseException | None:
    """Run one case, classify it (survived / typed / lost), tally it, and fail unless it ended as ``want``."""
    started = time.monotonic()
    outcome_of_call = _watched(call, bound + WATCHDOG_GRACE)
    elapsed = time.monotonic() - started
    error: BaseException | None = outcome_of_call.get("error")
    got = outcome_of_call.get("value")
    if not outcome_of_call:
        outcome, why = "lost", f"hung: no answer and no error after {elapsed:.0f} s"
    elif error is not None:
        why = _judge_error(error, expect)
        outcome = "lost" if why else "typed"
    else:
        why = "" if result is None or got == result else f"wrong result {got!r:.200} != {result!r:.200}"
        outcome = "lost" if why else "survived"
    if elapsed > bound:
        outcome, why = "lost", f"took {elapsed:.1f} s, over the {bound:.1f} s bound ({outcome}) {why}"
    tally = LEDGER.setdefault((edge, kind), Tally())
    tally.tried += 1
    setattr(tally, outcome, getattr(tally, outcome) + 1)
    tally.slowest, tally.bound = max(tally.slowest, elapsed), max(tally.bound, bound)
    if library_backoff is not None:
        tally.library_backoff = max(tally.library_backoff, library_backoff())
    assert outcome == want, f"{edge} / {kind}: wanted {want}, got {outcome}: {why}"
    return error


def _ledger_table() -> str:
    header = ("| edge | fault | tried | survived | typed error | lost | resumed runs | slowest s | bound s "
              "| library backoff s (recorded, not slept) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    totals = Tally()
    for (edge, kind), t in sorted(LEDGER.items()):
        lines.append(f"| {edge} | {kind} | {t.tried} | {t.survived} | {t.typed} | {t.lost} | {t.resumed} | "
                     f"{t.slowest:.2f} | {t.bound:.1f} | {t.library_backoff:g} |")
        for name in ("tried", "survived", "typed", "lost", "resumed"):
            setattr(totals, name, getattr(totals, name) + getattr(t, name))
    lines.append(f"| all | all | {totals.tried} | {totals.survived} | {totals.typed} | {totals.lost} | "
                 f"{totals.resumed} | | | |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", autouse=True)
def ledger_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if LEDGER:
        (tmp_path_factory.getbasetemp() / "edge-faults.md").write_text(_ledger_table())


def burst_then_persistent(kind: str) -> list[Any]:
    """The short form's (mode, budget) pairs for ``kind``, plus a longer budget behind ``-m long``."""
    return [pytest.param("transient", 2, id=f"{kind}-transient"),
            pytest.param("persistent", 2, id=f"{kind}-persistent"),
            pytest.param("transient", 4, id=f"{kind}-transient-long", marks=LONG),
            pytest.param("persistent", 4, id=f"{kind}-persistent-long", marks=LONG)]


def modes(kinds: tuple[str, ...]) -> list[Any]:
    return [pytest.param(kind, *p.values, id=p.id, marks=p.marks) for kind in kinds
            for p in burst_then_persistent(kind)]


def wanted(mode: str, kind: str) -> str:
    """A slow answer is still an answer: a delay is survived even when every request has it."""
    return "survived" if mode == "transient" or kind == "delay" else "typed"


class _Upstream:
    """A minimal threaded HTTP server answering ``handler(method, path, body) -> (status, json bytes)``."""

    def __init__(self, handler: Callable[[str, str, bytes], tuple[int, bytes]]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, payload = outer.handler(self.command, self.path, self.rfile.read(length) if length else b"")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.handler = handler
        self._server = LocalServer(Handler, "edge-upstream", poll_interval=0.05)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


# -- the proxy itself ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), bursts=st.integers(1, 4), times=st.integers(1, 3),
       window=st.integers(1, 40), requests=st.integers(0, 80))
def test_a_scattered_plan_fires_exactly_its_bursts(seed: int, bursts: int, times: int, window: int,
                                                    requests: int) -> None:
    """Seeded bursts never overlap and fire on exactly the requests their positions say, in any order
    of kinds; the same seed gives the same plan."""
    plan = FaultPlan.scattered(seed, KINDS, bursts, window, times)
    again = FaultPlan.scattered(seed, KINDS, bursts, window, times)
    assert [(f.kind, f.after) for f in plan.faults] == [(f.kind, f.after) for f in again.faults]
    expected = {i for f in plan.faults for i in range(f.after, f.after + times)}
    fired = {i for i in range(requests) if plan.take("GET", "/x") is not None}
    assert fired == {i for i in expected if i < requests}
    assert plan.fired() == len(fired)


def test_the_proxy_injects_each_kind_and_forwards_the_rest() -> None:
    """Against a tiny upstream: each kind does what its name says, and clean requests pass untouched."""
    import http.client

    with _Upstream(lambda method, path, body: (200, b"0123456789" * 10)) as upstream, \
            FaultProxy(upstream.url) as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")

        def ask(method: str = "GET", timeout: float = 2.0) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                conn.request(method, "/thing", body=b"{}" if method == "POST" else None)
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        assert ask() == (200, b"0123456789" * 10)
        with proxy.faults(ProxyFault("status", status=502)):
            assert ask()[0] == 502
        with proxy.faults(ProxyFault("throttle", retry_after=7)):
            assert ask()[0] == 429
        for kind in ("reset", "reset_body", "truncate"):
            with proxy.faults(ProxyFault(kind)), pytest.raises((ConnectionError, http.client.HTTPException)):
                ask()
        with proxy.faults(ProxyFault("hang", delay=5)), pytest.raises(TimeoutError):
            ask(timeout=0.3)
        started = time.monotonic()
        with proxy.faults(ProxyFault("delay", delay=0.2, methods=("POST",))):
            assert ask("GET")[0] == 200 and time.monotonic() - started < 0.2
            assert ask("POST")[0] == 200 and time.monotonic() - started >= 0.2
        assert ask() == (200, b"0123456789" * 10)


# -- S3 blob store -> proxy -> moto --------------------------------------------------------------

BUCKET = "tinkex-edge-faults"
AWS_SECRET = "edge-aws-secret-never-shown-0123"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "edge-access-key", "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
S3_TIMEOUT = 1.0
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
S3_RUN = {"batch_size": 8, "save_every": 2, "eval_every": 3, "test_size": 16, "num_epochs": 1, "log_path": "run"}
_prefixes = iter(range(10**6))


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from tests.adapters.conftest import moto_server

    with moto_server(BUCKET, AWS_ENV) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3_proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as proxy:
        yield proxy


@pytest.fixture
def s3(s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    yield s3_proxy
    s3_proxy.plan.clear()


def s3_fault(kind: ProxyFaultKind, times: int, after: int = 0) -> ProxyFault:
    """S3-looking faults: errors in S3's XML, cuts only where a body is (GETs), hangs past the timeout."""
    options: dict[str, Any] = {"status": {"status": 503, "body": b"", "headers": {}},
                               "throttle": {"body": SLOW_DOWN, "headers": {"Content-Type": "application/xml"},
                                            "retry_after": 0},
                               "delay": {"delay": 0.1}, "hang": {"delay": 10 * S3_TIMEOUT}}.get(kind, {})
    methods = ("GET",) if kind in ("truncate", "reset_body") else ()
    return ProxyFault(kind, times=times, after=after, methods=methods, **options)


def s3_store(proxy: FaultProxy, attempts: int, prefix: str | None = None) -> Any:
    from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore

    return S3BlobStore(BUCKET, prefix=prefix or f"edge{next(_prefixes)}", endpoint_url=proxy.url,
                       max_attempts=attempts, timeout=S3_TIMEOUT)


def s3_bound(attempts: int, requests: int = 1) -> float:
    """Per request: every attempt may time out, throttling backs off up to 1, 2, 4 ... s; plus slack."""
    return requests * (attempts * S3_TIMEOUT + 2 ** (attempts - 1) - 1) + 3.0


def s3_expect(proxy: FaultProxy) -> Expect:
    return Expect((BlobStoreError,), ("cannot ", f"s3://{BUCKET}/", proxy.url),
                  ("retry later", "check that", "raise the blob store"), (AWS_SECRET,))


def s3_workload(store: Any) -> tuple[Any, ...]:
    store.write("edge/k", b"payload " * 64)
    return store.read("edge/k"), store.exists("edge/k"), store.exists("edge/missing"), store.list("edge/")


S3_CLEAN = (b"payload " * 64, True, False, ["edge/k"])


@pytest.mark.parametrize(("kind", "mode", "attempts"), modes(KINDS))
def test_s3_blob_store(s3: FaultProxy, kind: ProxyFaultKind, mode: str, attempts: int) -> None:
    """A burst of ``attempts - 1`` faults is survived; a persistent fault is a BlobStoreError in bounds."""
    store = s3_store(s3, attempts)
    s3.plan.add(s3_fault(kind, attempts - 1 if mode == "transient" else FOREVER))
    try:
        run_case("s3", kind, lambda: s3_workload(store), want=wanted(mode, kind), result=S3_CLEAN,
                 bound=s3_bound(attempts) + (7 * 0.1 if kind == "delay" else 0), expect=s3_expect(s3))
    finally:
        store.close()
    assert s3.plan.fired() >= 1


def s3_run_cases() -> list[Any]:
    short = [pytest.param("status", 0, id="status")]
    long = [pytest.param(kind, seed, id=f"{kind}-{seed}", marks=LONG)
            for kind in ("status", "throttle", "reset", "reset_body", "truncate", "hang") for seed in (1, 2)]
    return short + long


@pytest.fixture(scope="module")
def s3_reference_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from tinkex_cookbook import Runtime, SlBasic

    root = tmp_path_factory.mktemp("s3-reference")
    Runtime.run(SlBasic, S3_RUN, manifest="test", ports={"blob_store": {"adapter": "local", "root": str(root)}})
    return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize(("kind", "seed"), s3_run_cases())
def test_an_sl_run_through_a_failing_s3_resumes_to_the_same_metrics(
    s3: FaultProxy, s3_reference_rows: list[dict[str, Any]], kind: ProxyFaultKind, seed: int
) -> None:
    """The blob store goes down for good mid-run (at a seeded request, after the first checkpoints);
    the run stops with a typed error; once S3 is back the same command resumes from the last
    checkpoint and the metrics equal an uninterrupted run's."""
    from tinkex_cookbook import Runtime, SlBasic

    prefix = f"run{next(_prefixes)}"
    # a clean run makes ~42 requests (9 GETs); fail somewhere after the first checkpoint is written
    after = random.Random(seed).randrange(3, 6) if kind in ("truncate", "reset_body") else \
        random.Random(seed).randrange(14, 30)
    s3.plan.add(s3_fault(kind, FOREVER, after=after))
    failing = s3_store(s3, 2, prefix)
    error = run_case("s3 run", kind, lambda: Runtime.run(SlBasic, S3_RUN, manifest="test",
                                                           ports={"blob_store": failing}),
                     want="typed", bound=s3_bound(2, requests=3) + 5, expect=s3_expect(s3))
    assert error is not None
    s3.plan.clear()
    healed = s3_store(s3, 2, prefix)
    before = [json.loads(line)["step"] for line in _lines(healed, "run/checkpoints.jsonl")]
    resumed = Runtime.run(SlBasic, S3_RUN, manifest="test", ports={"blob_store": healed})
    resume = [e.data["step"] for e in resumed.events if e.name == "train.resume"]
    assert resume == ([before[-1]] if before else []), (before, resume)
    assert metric_rows(_lines(healed, "run/metrics.jsonl")) == s3_reference_rows
    LEDGER[("s3 run", kind)].resumed += 1
    failing.close()
    healed.close()


def _lines(store: Any, key: str) -> list[str]:
    from tinkex_cookbook.errors import BlobNotFoundError

    try:
        return store.read(key).decode().splitlines()
    except BlobNotFoundError:
        return []


@pytest.mark.long
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_an_sl_run_through_scattered_s3_faults_changes_nothing(
    s3: FaultProxy, s3_reference_rows: list[dict[str, Any]], seed: int
) -> None:
    """Seeded bursts (5xx, throttling, resets, slow and hung requests), each shorter than the retry
    budget, scattered over a whole run: the run never notices."""
    from tinkex_cookbook import Runtime, SlBasic

    plan = FaultPlan.scattered(seed, ("status", "throttle", "reset", "delay", "hang"), bursts=5, window=40, times=2)
    for fault in plan.faults:
        s3.plan.add(s3_fault(fault.kind, fault.times, fault.after))
    store = s3_store(s3, 3)
    run_case("s3 run", "scattered bursts", lambda: Runtime.run(SlBasic, S3_RUN, manifest="test",
                                                                 ports={"blob_store": store}),
             want="survived", bound=5 * s3_bound(3) + 10, expect=s3_expect(s3))
    assert metric_rows(_lines(store, "run/metrics.jsonl")) == s3_reference_rows
    assert s3.plan.fired() == 10
    store.close()


# -- OpenAI-compatible chat and embeddings -> proxy -> a local stub ----------------------------------

LLM_KEY = "sk-edge-SECRET-never-shown-42"
LLM_TIMEOUT = 0.5
RETRY_AFTER = 0.05


def _llm_answer(method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """Deterministic: chat answers the last message reversed; an embedding is (length, position)."""
    request = json.loads(body or b"{}")
    if path.endswith("/chat/completions"):
        text = request["messages"][-1]["content"][::-1]
        return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 3, "completion_tokens": len(text)}}).encode()
    if path.endswith("/embeddings"):
        return 200, json.dumps({"data": [{"index": i, "embedding": [float(len(t)), float(i)]}
                                         for i, t in enumerate(request["input"])]}).encode()
    return 404, b'{"error": "no such route"}'


@pytest.fixture(scope="module")
def llm_proxy() -> Iterator[FaultProxy]:
    pytest.importorskip("httpx")
    with _Upstream(_llm_answer) as upstream, FaultProxy(upstream.url) as proxy:
        yield proxy


@pytest.fixture
def llm(llm_proxy: FaultProxy) -> Iterator[FaultProxy]:
    yield llm_proxy
    llm_proxy.plan.clear()


def llm_call(proxy: FaultProxy, which: str, attempts: int) -> tuple[Any, Callable[[], Any], Any]:
    from tinkex_cookbook.adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddingClient
    from tinkex_cookbook.adapters.llm.openai_compatible import OpenAICompatibleLLMClient
    from tinkex_cookbook.ports.llm import Completion

    options = {"api_key": LLM_KEY, "model": "edge-model", "timeout": LLM_TIMEOUT, "max_attempts": attempts,
               "backoff": 0.01}
    if which == "chat":
        chat = OpenAICompatibleLLMClient(proxy.url + "/v1", **options)
        return chat, lambda: chat.complete([{"role": "user", "content": "edge faults"}]), Completion(
            "stluaf egde", "stop", {"prompt_tokens": 3, "completion_tokens": 11})
    embedder = OpenAICompatibleEmbeddingClient(proxy.url + "/v1", **options)
    return embedder, lambda: embedder.embed(["a", "bb", "ccc"]), [[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]


@pytest.mark.parametrize("which", ["chat", "embeddings"])
@pytest.mark.parametrize(("kind", "mode", "attempts"), modes(KINDS))
def test_openai_compatible_llm_and_embeddings(
    llm: FaultProxy, which: str, kind: ProxyFaultKind, mode: str, attempts: int
) -> None:
    """A burst of ``attempts - 1`` faults is survived; a persistent fault is an LLMServiceError in bounds."""
    from tinkex_cookbook.adapters.llm.openai_compatible import LLMServiceError

    client, call, clean = llm_call(llm, which, attempts)
    llm.plan.add(ProxyFault(kind, times=attempts - 1 if mode == "transient" else FOREVER,
                            retry_after=RETRY_AFTER, delay=0.1 if kind == "delay" else 10 * LLM_TIMEOUT))
    path = "/chat/completions" if which == "chat" else "/embeddings"
    bound = attempts * (LLM_TIMEOUT + RETRY_AFTER) + 0.01 * 2 ** attempts + 2.0
    try:
        run_case(f"llm {which}", kind, call, want=wanted(mode, kind), result=clean, bound=bound,
                 expect=Expect((LLMServiceError,), (path, llm.url), ("Hint:",), (LLM_KEY,)))
    finally:
        client.close()


# -- Hugging Face hub downloads -> proxy -> the fake Hub -------------------------------------------

HF_TOKEN = "hf_edgeFaultsTokenNeverShown0123"
HUB_REPO = "tinkex/edge-weights"
WEIGHTS = bytes(random.Random(7).randrange(256) for _ in range(3000))
HUB_ATTEMPT_TIMEOUT = 1.5
HUB_READ_TIMEOUT = 0.3


@pytest.fixture(scope="module")
def fake_hub() -> Iterator[Any]:
    pytest.importorskip("huggingface_hub")
    from tests.adapters.hub_server import FakeHub

    with FakeHub({HUB_REPO: {"weights.bin": WEIGHTS, "config.json": b"{}"}}, token=HF_TOKEN) as hub:
        yield hub


@pytest.fixture
def hub(fake_hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A fresh proxy per test (abandoned attempts end when it stops), HF state in tmp, the library's
    retry sleeps recorded instead of slept, its body read timeout short."""
    from huggingface_hub import constants

    from tests.adapters.hub_server import isolate_huggingface_hub

    sleeps = isolate_huggingface_hub(monkeypatch, tmp_path / "hf-home")
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", HUB_READ_TIMEOUT)
    with FaultProxy(fake_hub.endpoint) as proxy:
        yield SimpleNamespace(proxy=proxy, sleeps=sleeps, cache=tmp_path / "cache")
    for thread in threading.enumerate():  # attempts abandoned past attempt_timeout: let them end here
        if thread.name == "hf-hub-call":
            thread.join(timeout=30)


@pytest.mark.parametrize("method", ["GET", pytest.param("HEAD", marks=LONG)])
@pytest.mark.parametrize(("kind", "mode", "attempts"), modes(KINDS))
def test_hub_download(hub: SimpleNamespace, kind: ProxyFaultKind, mode: str, attempts: int, method: str) -> None:
    """A burst of ``attempts - 1`` faults on the file's GET (or, in the long form, its metadata HEAD) is
    survived, by huggingface_hub's own retries or the client's; a persistent one is a ConnectionError
    in bounds. The library's backoff sleeps are recorded, not slept; the ledger shows what they would add."""
    from tinkex_cookbook.adapters.hub.hf import HFHubClient

    client = HFHubClient(hub.proxy.url, token=HF_TOKEN, cache_dir=hub.cache, timeout=HUB_READ_TIMEOUT,
                         max_attempts=attempts, backoff=0.01, attempt_timeout=HUB_ATTEMPT_TIMEOUT)
    hub.proxy.plan.add(ProxyFault(kind, times=attempts - 1 if mode == "transient" else FOREVER, methods=(method,),
                                  retry_after=0, delay=0.1 if kind == "delay" else 2 * HUB_ATTEMPT_TIMEOUT))
    bound = attempts * HUB_ATTEMPT_TIMEOUT + 0.01 * 2 ** attempts + 2.0
    edge = "hub download" if method == "GET" else "hub download (HEAD)"
    run_case(edge, kind, lambda: client.download(HUB_REPO, "weights.bin").read_bytes(), want=wanted(mode, kind),
             result=WEIGHTS, bound=bound, library_backoff=lambda: sum(hub.sleeps),
             expect=Expect((ConnectionError,), ("cannot download", hub.proxy.url, "weights.bin", HUB_REPO),
                           ("check that", "try again", "raise the hub"), (HF_TOKEN,)))


# -- Tinker -> the local Tinker server's FaultPlan (or proxy -> that server) ---------------------------

TINKER_KEY = "tml-edge-faults-never-shown"
TINKER_RUN = {"model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 4, "max_length": 64,
              "lora_rank": 4, "learning_rate": 1e-2, "test_size": 4, "train_size": 16, "eval_every": 0,
              "save_every": 2, "log_path": "run"}
PERSISTENT_TIMEOUT = 1.0
"""How long a step waits for a result when the fault persists: the bound on the failure."""
TRANSIENT_TIMEOUT = 8.0
"""request_timeout for a burst: room for the SDK's own backoff (0.5 s doubling; 1 s doubling on polls)."""
RUN_TIMEOUT = 2.5
"""request_timeout of a whole run meeting a persistent fault (it also bounds creating the model)."""


@contextmanager
def sdk_connection_leaks_collected() -> Iterator[None]:
    """The Tinker SDK (httpx over asyncio) drops a connection whose reply was cut without closing it;
    its transport then warns (ResourceWarning) whenever the garbage collector finds it, which would pin
    the warning on some later, innocent test. Collect it here, with that warning ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


@pytest.fixture(scope="module")
def tinker_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    pytest.importorskip("tinker")
    pytest.importorskip("torch")
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.serve import local_tinker

    blobs = LocalBlobStore(tmp_path_factory.mktemp("tinker-serve"))
    service = LocalTorchTrainingService(blobs)
    server = local_tinker(service, blobs, TINKER_KEY).start()
    proxy = FaultProxy(server.base_url).start()
    try:
        yield SimpleNamespace(server=server, proxy=proxy)
    finally:
        with sdk_connection_leaks_collected():
            proxy.stop()
            server.stop()
            service.close()


@pytest.fixture
def tinker(tinker_edge: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("TINKER_API_KEY", TINKER_KEY)
    yield tinker_edge
    tinker_edge.server.faults.clear()
    tinker_edge.proxy.plan.clear()


def _datum(offset: int) -> Any:
    from tinkex_cookbook.ports import Datum, ModelInput, TensorData

    tokens = [t + offset for t in range(40, 72)]
    return Datum(ModelInput.from_ints(tokens[:-1]), {
        "target_tokens": TensorData.from_list(tokens[1:], "int64"),
        "weights": TensorData.from_list([1.0] * (len(tokens) - 1), "float32"),
    })


def tinker_steps(base_url: str, wait: float, create_wait: float = TRANSIENT_TIMEOUT) -> list[float]:
    """Two pipelined training steps on a fresh model (fixed seed), each result awaited at most ``wait``
    seconds: the losses, rounded. Creating the model may take ``create_wait``."""
    from tinkex_cookbook.adapters.training.tinker import TinkerTrainingService
    from tinkex_cookbook.ports import AdamParams

    batch = [_datum(0), _datum(7)]
    with TinkerTrainingService(TINKER_KEY, base_url, request_timeout=create_wait, connect_attempts=2,
                               backoff=0.05) as service:
        client = service.create_lora_training_client("tiny-bytes", rank=4, seed=0)
        losses = []
        for _ in range(2):
            fwd = client.forward_backward(batch, "cross_entropy")
            step = client.optim_step(AdamParams(learning_rate=1e-2))
            losses.append(round(fwd.result(timeout=wait).metrics["loss:sum"], 4))
            step.result(timeout=wait)
        return losses


@pytest.fixture(scope="module")
def tinker_reference(tinker_edge: SimpleNamespace) -> list[float]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINKER_TELEMETRY", "0")
        return tinker_steps(tinker_edge.server.base_url, 60.0, create_wait=60.0)  # the first model is slow


TINKER_KINDS = ("status", "throttle", "reset", "delay", "lose_response", "drop_future", "hang", "truncate",
                "reset_body")


def tinker_fault(edge: SimpleNamespace, kind: str, times: int) -> str:
    """Add the fault for ``kind`` (the server's own, or the proxy's for cut bodies); the base URL to use."""
    from tinkex_cookbook.serve import Fault

    if kind in ("truncate", "reset_body"):  # cut replies to result polls, after the model's creation
        edge.proxy.plan.add(ProxyFault(kind, times=times, after=1, path="/api/v1/retrieve_future"))
        return str(edge.proxy.url)
    fault = {
        "status": Fault("/api/v1/forward_backward", "status", status=503, times=times, retry_after_ms=10),
        "throttle": Fault("/api/v1/optim_step", "status", status=429, times=times, retry_after_ms=10),
        "reset": Fault("/api/v1/retrieve_future", "reset", times=times, after=1),
        "delay": Fault("/api/v1/forward_backward", "delay", delay=0.2, times=times),
        "lose_response": Fault("/api/v1/optim_step", "lose_response", status=502, times=times, retry_after_ms=10),
        "drop_future": Fault("/api/v1/forward_backward", "drop_future", times=times),
        "hang": Fault("/api/v1/forward_backward", "hang", times=times),
    }[kind]
    edge.server.faults.add(fault)
    return str(edge.server.base_url)


def tinker_want(kind: str, mode: str) -> str:
    """A dropped or never-finishing result cannot be retried (the work may have run): it is a typed
    error even once, and the run resumes from its checkpoint."""
    if kind in ("drop_future", "hang"):
        return "typed"
    return wanted(mode, kind)


def tinker_cases() -> list[Any]:
    """Bursts of one in the short form (two in the long one), persistent faults of four kinds. A result
    that never comes has no burst; a dropped one fails like a persistent fault, so its burst is long-only."""
    short_persistent = ("status", "drop_future", "hang", "truncate")
    cases = []
    for kind in TINKER_KINDS:
        if kind != "hang":
            short = (LONG,) if kind == "drop_future" else ()
            cases.append(pytest.param(kind, "transient", 1, id=f"{kind}-transient", marks=short))
            cases.append(pytest.param(kind, "transient", 2, id=f"{kind}-transient-long", marks=LONG))
        marks = () if kind in short_persistent else (LONG,)
        cases.append(pytest.param(kind, "persistent", FOREVER, id=f"{kind}-persistent", marks=marks))
    return cases


@pytest.mark.parametrize(("kind", "mode", "times"), tinker_cases())
def test_tinker_training_client(
    tinker: SimpleNamespace, tinker_reference: list[float], kind: str, mode: str, times: int
) -> None:
    """A burst is survived by the SDK's retries with the same losses; a persistent fault, a dropped
    result or a result that never comes is a TrainingBackendError within request_timeout."""
    base_url = tinker_fault(tinker, kind, times)
    wait = TRANSIENT_TIMEOUT if tinker_want(kind, mode) == "survived" else PERSISTENT_TIMEOUT
    with sdk_connection_leaks_collected():
        run_case("tinker", kind, lambda: tinker_steps(base_url, wait), want=tinker_want(kind, mode),
                 result=tinker_reference, bound=wait + 6.0,
                 expect=Expect((TrainingBackendError,), (base_url, " on model "),
                               ("Hint:", "raise request_timeout", "resume"), (TINKER_KEY,)))


def tinker_manifest(path: Path, base_url: str, runs: Path, **options: Any) -> str:
    """``local``, but training through the Tinker API at ``base_url``."""
    path.write_text(json.dumps({
        "description": "local, training through a Tinker server", "extends": "local",
        "ports": {"training_client": {"adapter": "tinker", "base_url": base_url, **options},
                  "blob_store": {"adapter": "local", "root": str(runs)}},
    }))
    return str(path)


@pytest.fixture(scope="module")
def tinker_local_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from tinkex_cookbook import Runtime, SlBasic

    root = tmp_path_factory.mktemp("tinker-local")
    Runtime.run(SlBasic, TINKER_RUN, manifest="local", ports={"blob_store": {"adapter": "local", "root": str(root)}})
    return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("kind", ["status", pytest.param("reset", marks=LONG),
                                  pytest.param("truncate", marks=LONG), pytest.param("hang", marks=LONG)])
def test_an_sl_run_through_a_failing_tinker_resumes_to_the_same_metrics(
    tinker: SimpleNamespace, tinker_local_rows: list[dict[str, Any]], tmp_path: Path, kind: str
) -> None:
    """Training requests start failing for good after step 2 (its checkpoint written); the run stops
    with a typed error within request_timeout; once the server recovers the same command resumes
    from the checkpoint, to the metrics of a run that never left this machine."""
    from tinkex_cookbook import Runtime, SlBasic
    from tinkex_cookbook.serve import Fault

    runs = tmp_path / "runs"
    if kind == "truncate":
        tinker.proxy.plan.add(ProxyFault("truncate", times=FOREVER, after=8, path="/api/v1/retrieve_future"))
        base_url = tinker.proxy.url
    else:
        tinker.server.faults.add(Fault("/api/v1/forward_backward", kind, status=503, times=FOREVER, after=3))
        base_url = tinker.server.base_url
    failing = tinker_manifest(tmp_path / "failing.yaml", base_url, runs, request_timeout=RUN_TIMEOUT,
                              connect_attempts=1)
    with sdk_connection_leaks_collected():
        run_case("tinker run", kind, lambda: Runtime.run(SlBasic, TINKER_RUN, manifest=failing), want="typed",
                 bound=RUN_TIMEOUT + 20.0,
                 expect=Expect((TrainingBackendError,), (base_url, " on model "),
                               ("Hint:", "raise request_timeout", "resume"), (TINKER_KEY,)))
        assert tinker.server.faults.fired() + tinker.proxy.plan.fired() >= 1
        tinker.server.faults.clear()
        tinker.proxy.plan.clear()
    written = runs / "run" / "checkpoints.jsonl"
    checkpoints = [json.loads(line)["step"] for line in written.read_text().splitlines()] if written.exists() else []
    healed = tinker_manifest(tmp_path / "healed.yaml", tinker.server.base_url, runs)
    resumed = Runtime.run(SlBasic, TINKER_RUN, manifest=healed)
    assert [e.data["step"] for e in resumed.events if e.name == "train.resume"] == checkpoints[-1:]
    got = metric_rows((runs / "run" / "metrics.jsonl").read_text().splitlines())
    assert [r.keys() for r in got] == [r.keys() for r in tinker_local_rows]
    for row, want in zip(got, tinker_local_rows, strict=True):
        for key, value in want.items():
            assert row[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
    LEDGER[("tinker run", kind)].resumed += 1
