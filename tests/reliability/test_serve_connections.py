"""`serve` against hostile clients at the HTTP layer: keys before bodies, capped bodies and decompression,
idle and excess connections, weak keys. Healthz must stay fast throughout (``tests/hostile_http.py``)."""

from __future__ import annotations

import gzip
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile_http import (
    Tally,
    body_flood,
    closed_by_server,
    connect,
    healthz_under_attack,
    idle_flood,
    read_reply,
    request_flood,
    request_head,
    trickle,
)
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.errors import WeakSecretError
from tinkex_cookbook.serve import Fault, LocalTinker, ServeLimits, local_tinker, new_api_key
from tinkex_cookbook.serve.keys import check_api_key
from tinkex_cookbook.serve.limits import MIB, BodyTooLargeError
from tinkex_cookbook.serve.wire import decompress

zstandard = pytest.importorskip("zstandard")

KEY = "tml-hostile-http-test-key-5Rv8"
CAP = 1 * MIB
Serve = Callable[..., LocalTinker]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalTinker]:
    """One server with a 1 MiB body cap for the tests that need no other limit."""
    with local_tinker(NoopTrainingService(), MemoryBlobStore(), KEY, limits=ServeLimits(max_body_bytes=CAP)) as running:
        yield running


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers over the noop backend with the limits a test asks for; all stopped at the end."""
    started: list[LocalTinker] = []

    def start(**limits: Any) -> LocalTinker:
        server = local_tinker(NoopTrainingService(), MemoryBlobStore(), KEY,
                              limits=ServeLimits(**{"max_body_bytes": CAP, **limits}))
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def _ask(server: LocalTinker, head: bytes, body: bytes = b"", timeout: float = 3.0) -> tuple[int, bytes] | None:
    with connect(server.base_url) as sock:
        sock.sendall(head + body)
        return read_reply(sock, timeout)


def _threads_settle_within(bound: int, seconds: float = 5.0) -> bool:
    """Whether the thread count drops to ``bound`` within ``seconds`` (closed connections' threads take a
    moment to notice and end, longer on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while threading.active_count() > bound:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _keyed(**headers: str) -> dict[str, str]:
    return {"X-API-Key": KEY, **headers}


# ---- the key before the body


def test_a_request_without_the_key_is_refused_before_its_body_is_read(server: LocalTinker) -> None:
    with connect(server.base_url) as sock:
        sock.sendall(request_head("POST", "/api/v1/forward_backward", {"Content-Length": "419430400"}))
        reply = read_reply(sock, timeout=3.0)  # no body byte sent: a server waiting for it never answers
        assert reply is not None and reply[0] == 401
        assert closed_by_server(sock, timeout=3.0)


def test_a_small_request_with_a_wrong_key_still_reads_its_401() -> None:
    """The drained case: a client's ordinary mistake gets a clean 401, not a reset."""
    with local_tinker(NoopTrainingService(), MemoryBlobStore(), KEY) as server:
        head = request_head("POST", "/api/v1/create_session", {"X-API-Key": "tml-wrong", "Content-Length": "2"})
        reply = _ask(server, head, b"{}")
    assert reply is not None and reply[0] == 401 and b"X-API-Key" in reply[1]


@pytest.mark.parametrize(("key", "length", "statuses"), [
    (KEY, "2", [100, 200]), (KEY, str(CAP + 1), [413]), ("tml-wrong", "2", [401])])
def test_expect_100_continue_is_answered_only_once_the_request_is_accepted(
    server: LocalTinker, key: str, length: str, statuses: list[int],
) -> None:
    """A client sending ``Expect: 100-continue`` holds its body back: it gets 100 only if the body is wanted,
    else the refusal at once (not after the idle timeout, waiting for a body that will not come)."""
    head = request_head("POST", "/api/v1/create_session", {"X-API-Key": key, "Content-Length": length,
                                                          "Expect": "100-continue"})
    with connect(server.base_url) as sock:
        sock.sendall(head)
        first = read_reply(sock, timeout=3.0)
        assert first is not None and first[0] == statuses[0]
        if len(statuses) > 1:
            sock.sendall(b"{}")
            second = read_reply(sock, timeout=3.0)
            assert second is not None and second[0] == statuses[1]


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1_0", "5 5", "\u0665", "0x10", "9" * 30, "5, 5", ""])
def test_a_malformed_content_length_is_a_400(server: LocalTinker, length: str) -> None:
    with connect(server.base_url) as sock:
        sock.sendall(request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": length})))
        reply = read_reply(sock, timeout=3.0)
        assert reply is not None and reply[0] == 400 and b"Content-Length" in reply[1]
        assert closed_by_server(sock, timeout=3.0)


def test_two_different_content_lengths_are_a_400(server: LocalTinker) -> None:
    head = request_head("POST", "/api/v1/create_session", _keyed()).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")
    reply = _ask(server, head, b"{}")
    assert reply is not None and reply[0] == 400


def test_a_chunked_body_is_refused_not_misread(server: LocalTinker) -> None:
    head = request_head("POST", "/api/v1/create_session", _keyed(**{"Transfer-Encoding": "chunked"}))
    with connect(server.base_url) as sock:
        sock.sendall(head + b"2\r\n{}\r\n0\r\n\r\n")
        reply = read_reply(sock)
        assert reply is not None and reply[0] == 411 and b"Content-Length" in reply[1]
        assert closed_by_server(sock, timeout=3.0)


def test_a_body_over_the_cap_is_413_before_it_is_read(server: LocalTinker) -> None:
    with connect(server.base_url) as sock:
        sock.sendall(request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": str(CAP + 1)})))
        reply = read_reply(sock, timeout=3.0)
        assert reply is not None and reply[0] == 413
        assert b"--max-body-mb" in reply[1] and str(CAP).encode() in reply[1]
        assert closed_by_server(sock, timeout=3.0)


def test_a_body_at_the_cap_is_read(server: LocalTinker) -> None:
    body = b"{" + b" " * (CAP - 2) + b"}"
    reply = _ask(server, request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": str(CAP)})),
                 body)
    assert reply is not None and reply[0] == 200 and b"session_id" in reply[1]


# ---- compressed bodies


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_compressed_body_is_decoded(server: LocalTinker, encoding: str) -> None:
    body = gzip.compress(b"{}") if encoding == "gzip" else zstandard.ZstdCompressor().compress(b"{}")
    head = request_head("POST", "/api/v1/create_session",
                        _keyed(**{"Content-Length": str(len(body)), "Content-Encoding": encoding}))
    reply = _ask(server, head, body)
    assert reply is not None and reply[0] == 200 and b"session_id" in reply[1]


def test_a_decompression_bomb_is_413_without_inflating(server: LocalTinker) -> None:
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(256 * MIB))
    assert len(bomb) < 64 * 1024
    head = request_head("POST", "/api/v1/forward_backward", _keyed(**{
        "Content-Length": str(len(bomb)), "Content-Encoding": "zstd", "Content-Type": "application/x-protobuf"}))
    tracemalloc.start()
    try:
        reply = _ask(server, head, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply is not None and reply[0] == 413 and b"--max-body-mb" in reply[1]
    assert peak < 8 * CAP


@pytest.mark.parametrize(("encoding", "body", "status"), [
    ("br", b"\x0b\x01\x80{}\x03", 415), ("gzip, zstd", b"{}", 415), ("zstd", b"not zstd at all", 400),
    ("gzip", gzip.compress(b"{}")[:-4], 400)])
def test_an_undecodable_body_is_refused(server: LocalTinker, encoding: str, body: bytes, status: int) -> None:
    head = request_head("POST", "/api/v1/create_session",
                        _keyed(**{"Content-Length": str(len(body)), "Content-Encoding": encoding}))
    reply = _ask(server, head, body)
    assert reply is not None and reply[0] == status


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=4096), limit=st.integers(1, 5000), encoding=st.sampled_from(["gzip", "zstd"]))
def test_decompress_returns_the_original_or_refuses_past_the_limit(data: bytes, limit: int, encoding: str) -> None:
    packed = gzip.compress(data) if encoding == "gzip" else zstandard.ZstdCompressor().compress(data)
    if len(data) <= limit:
        assert decompress(packed, encoding, limit) == data
    else:
        with pytest.raises(BodyTooLargeError):
            decompress(packed, encoding, limit)


# ---- idle, trickling and excess connections


def test_idle_and_trickling_connections_are_closed_after_the_idle_timeout(serve: Serve) -> None:
    server = serve(idle_timeout=0.5)
    with connect(server.base_url) as idle, connect(server.base_url) as slow:
        start = time.monotonic()
        for byte in request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": "2"})):
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
        trickled = time.monotonic() - start
        assert closed_by_server(slow, timeout=0.1) and trickled < 3.0
        assert closed_by_server(idle, timeout=1.0)


def test_a_slow_reply_is_not_cut_by_the_idle_timeout_and_keeps_its_connection(serve: Serve) -> None:
    """Like the SDK's 10 s long poll on retrieve_future: a busy connection is not idle."""
    server = serve(idle_timeout=0.3)
    server.faults.add(Fault("/api/v1/create_session", kind="delay", delay=1.2))
    head = request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": "2"}))
    with connect(server.base_url) as sock:
        for _ in range(2):
            sock.sendall(head + b"{}")
            reply = read_reply(sock, timeout=5.0)
            assert reply is not None and reply[0] == 200


def test_connections_past_the_limit_close_the_longest_idle_and_bound_the_threads(serve: Serve) -> None:
    server = serve(max_connections=8)
    before = threading.active_count()
    held = [connect(server.base_url) for _ in range(60)]
    try:
        assert len(server.httpd.connections) <= 8
        assert _threads_settle_within(before + 8 + 2)
        assert closed_by_server(held[0], timeout=2.0)
        reply = _ask(server, request_head("GET", "/api/v1/healthz"))
        assert reply is not None and reply[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_a_fast_503(serve: Serve) -> None:
    server = serve(max_connections=2)
    server.faults.add(Fault("/api/v1/create_session", kind="delay", delay=1.5, times=2))
    head = request_head("POST", "/api/v1/create_session", _keyed(**{"Content-Length": "2"}))
    busy = [connect(server.base_url) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(head + b"{}")
        time.sleep(0.3)
        start = time.monotonic()
        reply = _ask(server, request_head("GET", "/api/v1/healthz"))
        assert reply is not None and reply[0] == 503 and b"--max-connections" in reply[1]
        assert time.monotonic() - start < 1.0
        assert all((r := read_reply(sock)) is not None and r[0] == 200 for sock in busy)
    finally:
        for sock in busy:
            sock.close()


# ---- healthz under each attack


def _bomb_flood(url: str, tally: Tally) -> Callable[[threading.Event], object]:
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 * MIB))
    head = request_head("POST", "/api/v1/forward_backward", _keyed(**{
        "Content-Length": str(len(bomb)), "Content-Encoding": "zstd", "Content-Type": "application/x-protobuf"}))
    return request_flood(url, tally, head, bomb)


ATTACKS: dict[str, Callable[[str, Tally], Callable[[threading.Event], object]]] = {
    "400 MB body without a key": lambda url, tally: body_flood(url, tally, {"Content-Length": "419430400"}),
    "Content-Length -1": lambda url, tally: body_flood(url, tally, {"Content-Length": "-1"}),
    "slowloris trickle": lambda url, tally: trickle(url, tally, connections=20),
    "zstd bomb with the key": _bomb_flood,
    "300 idle connections": lambda url, tally: idle_flood(url, tally, connections=300),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_healthz_stays_fast_under_attack(serve: Serve, attack: str) -> None:
    server = serve(idle_timeout=1.0, max_connections=32)
    before = threading.active_count()
    peak = [before]

    def count_threads(stop: threading.Event) -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], threading.active_count())

    tally = Tally()
    latencies = healthz_under_attack(server.base_url, ATTACKS[attack](server.base_url, tally), count_threads)
    assert latencies.failures == 0
    assert latencies.median < 0.1, latencies
    assert latencies.worst < 2.0, latencies
    # 32 connection threads (cut ones may linger a moment while their replacements start), 2 test threads
    assert peak[0] - before <= 2 * 32 + 2, peak
    if tally.connections:
        assert tally.bytes_sent / tally.connections < 16 * MIB, tally  # refused early, not read to the end
    assert all(status in (400, 401, 413) for status in tally.statuses), tally


# ---- keys


@pytest.mark.parametrize("key", ["", "tml-", "tml-short", "tml-" + "a" * 40, "tml-ab" * 10, "tml-has spaces in it 0123",
                                 "tml-\u00fcn\u00efcode-key-0123456789", "tml-tab\there-0123456789",
                                 "tml-abcdefghabcdefgh", "tml-1234567812345678", "tml-0123456789abcdef",
                                 "tml-ZYXWVUTSRQPONMLKJIH", "tml-qwertyuiopasdfghjk"])
def test_a_weak_key_is_refused_where_the_server_is_built(key: str) -> None:
    with pytest.raises(WeakSecretError) as caught:
        local_tinker(NoopTrainingService(), MemoryBlobStore(), key)
    message = str(caught.value)
    assert "16 characters" in message and "secrets.token_urlsafe" in message
    if len(key) > len("tml-"):
        assert key not in message and key[4:] not in message


def test_new_keys_meet_the_rule_and_differ() -> None:
    keys = {new_api_key() for _ in range(50)}
    for key in keys:
        check_api_key(key)
        assert key.startswith("tml-")
    assert len(keys) == 50
