"""`serve` against a hostile client: bounded work per request, fair sampling, unambiguous request identity,
4xx for every client mistake, and `healthz` answering quickly while all of that goes on.

The servers here wrap the noop backend (instant) or a slow fake of it whose sampling costs time per
token on one worker thread, as the local backend's does; requests are raw HTTP, so bodies can be
anything.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile_http import Attack, Latencies, healthz_under_attack
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.ports import ModelInput, SampleResponse, SamplingParams, ThreadFuture
from tinkex_cookbook.serve import LocalTinker, ServeLimits, local_tinker

KEY = "tml-hostile-client-key-5Rz8"
TOKEN_COST = 50e-6
"""Seconds of the slow fake's sampling work per sampled token."""


class SlowSamplingService(NoopTrainingService):
    """The noop backend, but sampling costs ``TOKEN_COST`` per token on one worker thread (like local_torch)."""

    def __init__(self) -> None:
        super().__init__()
        self.worker = ThreadPoolExecutor(1, "slow-sampling")

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None) -> Any:
        return _SlowSampler(super().create_sampling_client(model_path, base_model), self.worker)


@dataclass
class _SlowSampler:
    inner: Any
    worker: ThreadPoolExecutor

    def sample(self, prompt: ModelInput, num_samples: int, params: SamplingParams) -> ThreadFuture[SampleResponse]:
        def work() -> SampleResponse:
            time.sleep(num_samples * (params.max_tokens or 16) * TOKEN_COST)
            return self.inner.sample(prompt, num_samples, params).result()
        return ThreadFuture(self.worker.submit(work))

    def compute_logprobs(self, prompt: ModelInput) -> Any:
        return self.inner.compute_logprobs(prompt)

    def get_tokenizer(self) -> Any:
        return self.inner.get_tokenizer()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    """Raw HTTP to a server: any body, any content type."""

    def __init__(self, server: LocalTinker) -> None:
        parts = urlsplit(server.base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def call(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={"X-API-Key": KEY, "Content-Type": content_type})
            reply = connection.getresponse()
            raw = reply.read()
            headers = {k.lower(): v for k, v in reply.getheaders()}
        finally:
            connection.close()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return Answer(reply.status, headers, parsed)

    def post(self, route: str, body: Any) -> Answer:
        return self.call("POST", f"/api/v1/{route}", json.dumps(body).encode())

    def result(self, request_id: str, deadline: float = 30.0) -> Answer:
        end = time.monotonic() + deadline
        while True:
            answer = self.post("retrieve_future", {"request_id": request_id})
            if answer.status != 408 or time.monotonic() > end:
                return answer

    def done(self, route: str, body: Any) -> Any:
        """Submit, wait, and return the result body (asserting each step went through)."""
        accepted = self.post(route, body)
        assert accepted.status == 200, accepted
        answer = self.result(accepted.body["request_id"])
        assert answer.status == 200, answer
        return answer.body


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., tuple[LocalTinker, Client]]]:
    running: list[tuple[LocalTinker, Any]] = []

    def make(service: Any = None, limits: ServeLimits | None = None) -> tuple[LocalTinker, Client]:
        service = service or NoopTrainingService()
        blobs = LocalBlobStore(tmp_path_factory.mktemp("hostile"))
        server = local_tinker(service, blobs, KEY, limits=limits).start()
        running.append((server, service))
        return server, Client(server)

    yield make
    for server, service in running:
        server.stop()
        if isinstance(service, SlowSamplingService):
            service.worker.shutdown(wait=True)


def session(client: Client) -> str:
    return client.post("create_session", {}).body["session_id"]


def model(client: Client, base_model: str = "tiny-llama3") -> str:
    body = {"session_id": session(client), "model_seq_id": 0, "base_model": base_model, "lora_config": {"rank": 4}}
    return client.done("create_model", body)["model_id"]


def sampling_session(client: Client) -> str:
    body = {"session_id": session(client), "sampling_session_seq_id": 0, "base_model": "tiny-llama3"}
    answer = client.post("create_sampling_session", body)
    assert answer.status == 200, answer
    return answer.body["sampling_session_id"]


def sample_body(num_samples: int = 1, max_tokens: int = 4, prompt: list[int] | None = None, **more: Any) -> dict:
    chunk = {"type": "encoded_text", "tokens": prompt or [1, 2, 3, 4]}
    return {"base_model": "tiny-llama3", "num_samples": num_samples, "prompt": {"chunks": [chunk]},
            "sampling_params": {"max_tokens": max_tokens, "temperature": 1.0}, **more}


def forward_backward_body(model_id: str, seq_id: int, datums: int = 1, tokens: int = 4) -> bytes:
    from tinker.proto import tinker_public_pb2 as pb

    msg = pb.ForwardBackwardRequest(model_id=model_id, seq_id=seq_id, loss_fn="cross_entropy")
    for _ in range(datums):
        datum = msg.data.add()
        datum.model_input.add().encoded_text.tokens = np.arange(1, tokens + 1, dtype=np.int32).tobytes()
        for name, dtype, kind in (("target_tokens", np.int64, pb.DTYPE_INT64), ("weights", np.float32,
                                                                                 pb.DTYPE_FLOAT32)):
            tensor = datum.loss_fn_inputs[name]
            tensor.dtype = kind
            tensor.dense = np.ones(tokens, dtype=dtype).tobytes()
    return msg.SerializeToString()


def post_proto(client: Client, body: bytes) -> Answer:
    return client.call("POST", "/api/v1/forward_backward", body, "application/x-protobuf")


# --- item 2: bounded work per request, fair sampling ------------------------------------------------


@pytest.mark.parametrize(("body", "limit", "value"), [
    (sample_body(num_samples=2_000_000, max_tokens=1), "max_samples", "num_samples=2000000"),
    (sample_body(max_tokens=10**9), "max_new_tokens", "sampling_params.max_tokens=1000000000"),
    (sample_body(prompt=[5] * 9000), "max_prompt_tokens", "prompt tokens=9000"),
])
def test_a_sample_request_over_a_limit_is_refused_naming_it(
    make_server: Callable[..., tuple[LocalTinker, Client]], body: dict, limit: str, value: str
) -> None:
    server, client = make_server()
    answer = client.post("asample", body)
    assert answer.status == 400
    assert value in answer.body["detail"] and limit in answer.body["detail"]
    assert f"--limit {limit}=N" in answer.body["detail"]
    assert len(server.api.futures) == 0  # nothing was queued


def test_limits_are_options_and_bound_training_requests_too(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    limits = ServeLimits(max_samples=2, max_datums=3, max_batch_tokens=20, max_lora_rank=8, max_models=2)
    _, client = make_server(limits=limits)
    assert client.post("asample", sample_body(num_samples=3)).status == 400
    assert len(client.done("asample", sample_body(num_samples=2))) > 0
    model_id = model(client)
    assert "max_datums=3" in post_proto(client, forward_backward_body(model_id, 1, datums=4)).body["detail"]
    assert "max_batch_tokens=20" in post_proto(client, forward_backward_body(model_id, 1, 3, 8)).body["detail"]
    assert post_proto(client, forward_backward_body(model_id, 1, 3, 4)).status == 200
    wide = {"session_id": session(client), "model_seq_id": 0, "base_model": "tiny-llama3",
            "lora_config": {"rank": 4096}}
    assert "max_lora_rank=8" in client.post("create_model", wide).body["detail"]
    model(client)
    third = client.post("create_model", {**wide, "lora_config": {"rank": 4}})
    assert third.status == 400 and "max_models=2" in third.body["detail"]


def test_bad_limit_options_are_config_errors() -> None:
    from tinkex_cookbook.errors import ConfigError

    assert ServeLimits().with_options(["max-samples=8"]).max_samples == 8
    for option in ("max_samples", "nope=3", "max_samples=lots", "max_samples=0"):
        with pytest.raises(ConfigError, match="max_samples|NAME=N|whole number"):
            ServeLimits().with_options([option])


def test_a_small_sample_request_is_answered_while_a_big_one_runs(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    """64 samples x 512 tokens take ~1.6 s of backend time; a 1 x 4 request from another client sent
    meanwhile waits for one chunk of it, not all of it."""
    server, client = make_server(SlowSamplingService(), ServeLimits(sample_chunk_tokens=1024))
    greedy, modest = sampling_session(client), sampling_session(client)
    big = client.post("asample", sample_body(num_samples=64, max_tokens=512, sampling_session_id=greedy, seq_id=1))
    assert big.status == 200
    time.sleep(0.1)
    start = time.monotonic()
    small = client.done("asample", sample_body(num_samples=1, max_tokens=4, sampling_session_id=modest, seq_id=1))
    waited = time.monotonic() - start
    pending = server.api.futures.get(big.body["request_id"])
    assert pending is not None and not pending.future.done(), "the big request should still be running"
    assert waited < 0.6 and small
    answer = client.result(big.body["request_id"])
    assert answer.status == 200 and len(answer.body) > 64 * 512  # protobuf: 64 sequences of 512 tokens


def test_a_chunked_request_gives_what_the_backend_gives_in_one_go_for_one_chunk(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    from tinker.proto import tinker_public_pb2 as pb

    _, client = make_server(limits=ServeLimits(sample_chunk_tokens=8))
    body = {**sample_body(num_samples=5), "sampling_params": {"max_tokens": 4, "seed": 7}}
    first, second = (pb.SampleResponse.FromString(client.done("asample", body)) for _ in range(2))
    assert len(first.sequences) == 5 and first == second  # same request, same samples
    assert len({seq.tokens for seq in first.sequences}) == 5  # later chunks draw their own samples


def test_past_max_queued_unfinished_requests_new_ones_get_429(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    from tinkex_cookbook.serve import Fault

    server, client = make_server(limits=ServeLimits(max_queued=2))
    server.faults.add(Fault("/api/v1/asample", "hang", times=2))
    assert [client.post("asample", sample_body()).status for _ in range(2)] == [200, 200]
    refused = client.post("asample", sample_body())
    assert refused.status == 429 and "max_queued=2" in refused.body["detail"]


def test_results_nobody_fetches_are_kept_only_up_to_a_bound() -> None:
    from tinkex_cookbook.ports import ResolvedFuture
    from tinkex_cookbook.serve.futures import FutureTable

    table = FutureTable(keep=2, unfetched=3)
    for _ in range(50):
        table.submit("/api/v1/asample", None, lambda: ResolvedFuture(1), lambda r: r)
    assert len(table) <= 2 + 2 * 3 + 1


# --- item 3: request identity ------------------------------------------------------------------------


def test_requests_without_a_seq_id_all_run_and_answer_for_themselves(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    service = NoopTrainingService()
    _, client = make_server(service)
    model_id = model(client)
    first = client.done("save_weights", {"model_id": model_id, "path": "first"})
    second = client.done("save_weights", {"model_id": model_id, "path": "second"})
    assert first["path"].endswith("/weights/first") and second["path"].endswith("/weights/second")
    step = client.done("optim_step", {"model_id": model_id, "adam_params": {"learning_rate": 1e-3}})
    assert step == {"type": "optim_step", "metrics": {"grad_norm": 1.0, "optim_steps": 1.0}}
    assert [c for c, _ in service.calls].count("optim_step") == 1


def test_a_retry_gets_the_first_reply_and_a_reused_seq_id_is_a_conflict(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    _, client = make_server()
    model_id = model(client)
    save = {"model_id": model_id, "path": "a", "seq_id": 5}
    first = client.post("save_weights", save)
    assert client.post("save_weights", save).body["request_id"] == first.body["request_id"]
    for route, body in (("save_weights", {**save, "path": "b"}),
                        ("optim_step", {"model_id": model_id, "adam_params": {}, "seq_id": 5})):
        clash = client.post(route, body)
        assert clash.status == 409 and clash.headers["x-should-retry"] == "false"
        assert first.body["request_id"] in clash.body["detail"] and "save_weights" in clash.body["detail"]
    assert client.result(first.body["request_id"]).body["path"].endswith("/weights/a")


def test_reusing_a_seq_id_after_its_entry_expired_starts_anew(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    server, client = make_server()
    server.api.futures.keep = 4
    model_id = model(client)
    body = {"model_id": model_id, "adam_params": {}, "seq_id": 1}
    first = client.done("optim_step", body)
    for seq in range(2, 10):
        client.done("optim_step", {**body, "seq_id": seq})
    again = client.post("optim_step", body)  # 500 KeyError before: the key outlived its entry
    assert again.status == 200 and client.result(again.body["request_id"]).body != first


def test_request_ids_of_an_earlier_run_are_gone_not_someone_elses(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    _, before = make_server()
    old = before.post("asample", sample_body()).body["request_id"]
    _, after = make_server()
    new = after.post("asample", sample_body()).body["request_id"]
    assert old != new and old.split("-")[:2] != new.split("-")[:2]
    gone = after.post("retrieve_future", {"request_id": old})
    assert gone.status == 410 and old in gone.body["detail"]


# --- item 4: client mistakes are 4xx -----------------------------------------------------------------


def test_client_mistakes_are_4xx_with_a_message(make_server: Callable[..., tuple[LocalTinker, Client]]) -> None:
    _, client = make_server()
    model_id = model(client)
    cases = [
        client.call("POST", "/api/v1/optim_step", b"[1, 2]"),
        client.call("POST", "/api/v1/get_info", b"[" * 5000 + b"]" * 5000),
        client.call("POST", "/api/v1/optim_step", b"\xff\xfe"),
        post_proto(client, b"\x0a\xff\xff\xff\xff\xff"),
        post_proto(client, forward_backward_body(model_id, 1)[:-3]),
        client.post("optim_step", {"model_id": model_id, "adam_params": {"learning_rate": "fast"}}),
        client.post("optim_step", {"model_id": model_id, "adam_params": {"learning_rate": float("nan")}}),
        client.post("load_weights", {"path": "tinker://../weights/x", "optimizer": True, "model_id": model_id}),
        client.post("load_weights", {"path": "tinker://a/weights/..", "optimizer": True, "model_id": model_id}),
        client.post("load_weights", {"path": "tinker://a\\b/weights/x", "optimizer": True, "model_id": model_id}),
        client.post("save_weights", {"model_id": model_id, "path": "../escape"}),
        client.post("save_weights", {"model_id": model_id, "path": "a\x00b"}),
        client.post("create_model", {"session_id": "../up", "model_seq_id": 0, "base_model": "tiny-llama3"}),
        client.post("asample", sample_body(num_samples=0)),
        client.post("asample", {**sample_body(), "sampling_params": {"max_tokens": 4, "seed": -1}}),
        client.post("asample", sample_body(prompt=[-5, 2])),
        client.post("get_info", {"model_id": 7}),
    ]
    for answer in cases:
        assert 400 <= answer.status < 500 and answer.body["detail"], answer


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["model_id", "seq_id", "path", "session_id", "model_seq_id", "base_model", "adam_params", "request_id",
          "num_samples", "prompt", "sampling_params", "optimizer", "lora_config", "sampling_session_id"]
"""The names the routes read, so generated objects reach past "missing field" into the handlers."""
OBJECTS = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)


@pytest.fixture(scope="module")
def sweep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTinker, Client, list[str]]]:
    limits = ServeLimits(max_models=4)
    server = local_tinker(NoopTrainingService(), LocalBlobStore(tmp_path_factory.mktemp("sweep")), KEY,
                          limits=limits).start()
    routes = [path for path in server.api.post_routes() if "retrieve_future" not in path]
    yield server, Client(server), [*routes, "/api/v1/retrieve_future", "/api/v1/sessions/x/finish"]
    server.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON | OBJECTS, raw=st.binary(max_size=64), index=st.integers(0, 100))
def test_no_body_makes_any_route_answer_5xx(
    sweep_server: tuple[LocalTinker, Client, list[str]], value: Any, raw: bytes, index: int
) -> None:
    _, client, routes = sweep_server
    route = routes[index % len(routes)]
    for body, kind in ((json.dumps(value).encode(), "application/json"), (raw, "application/json"),
                       (raw, "application/x-protobuf")):
        answer = client.call("POST", route, body, kind)
        assert answer.status < 500, (route, body, answer)


# --- item 5: model names stay in the models folder ---------------------------------------------------


@pytest.mark.parametrize("name", ["../outside/evilmodel", "/etc/passwd", "org/../../x", "a\\..\\b", "~root/m", "org//m",
                                  "", ".hidden/m"])
def test_a_model_name_that_is_a_path_is_refused_with_400(
    make_server: Callable[..., tuple[LocalTinker, Client]], name: str
) -> None:
    service = NoopTrainingService()
    _, client = make_server(service)
    body = {"session_id": session(client), "model_seq_id": 0, "base_model": name}
    answer = client.post("create_model", body)
    assert answer.status == 400 and "base_model" in answer.body["detail"]
    sampled = client.post("asample", {**sample_body(), "base_model": name})
    assert sampled.status == 400
    assert service.calls == []  # refused before the backend saw the name


# --- the server stays responsive under attack --------------------------------------------------------


def healthz_under(server: LocalTinker, attacks: list[Callable[[], None]]) -> Latencies:
    """``healthz`` latencies while each attack runs in a loop on its own thread (``hostile_http``); an attack
    whose own assertion fails ends the test."""
    failures: list[BaseException] = []

    def looping(attack: Callable[[], None]) -> Attack:
        def run(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    attack()
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    failures.append(exc)
                    return
        return run

    latencies = healthz_under_attack(server.base_url, *map(looping, attacks), probes=60)
    assert not failures, failures
    return latencies


def test_healthz_stays_fast_while_clients_ask_for_too_much_work(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    server, client = make_server(SlowSamplingService(), ServeLimits(max_new_tokens=256))

    def beyond_limits() -> None:
        assert client.post("asample", sample_body(num_samples=2_000_000, max_tokens=1)).status == 400
        assert client.post("asample", sample_body(max_tokens=10**6)).status == 400

    def within_limits() -> None:
        accepted = client.post("asample", sample_body(num_samples=64, max_tokens=256))
        assert accepted.status in (200, 429)

    sessions = [sampling_session(client) for _ in range(3)]
    seq = iter(range(10**9))

    def in_sessions() -> None:
        for sampler in sessions:
            body = sample_body(num_samples=64, max_tokens=256, sampling_session_id=sampler, seq_id=next(seq))
            assert client.post("asample", body).status in (200, 429)

    latencies = healthz_under(server, [beyond_limits, beyond_limits, *[within_limits] * 4, in_sessions, in_sessions])
    assert latencies.failures == 0 and latencies.median < 0.1 and latencies.worst < 2, latencies
    assert server.api.futures.unfinished() <= server.api.limits.max_queued


def test_healthz_stays_fast_during_seq_id_storms_and_stale_polls(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    server, client = make_server()
    model_id = model(client)
    counter = iter(range(10**9))

    def reuse_storm() -> None:
        n = next(counter)
        answer = client.post("save_weights", {"model_id": model_id, "path": f"p{n}", "seq_id": n % 7})
        assert answer.status in (200, 409)

    def stale_polls() -> None:
        assert client.post("retrieve_future", {"request_id": f"req-0ld0ld0ld0ld-{next(counter)}"}).status == 410

    latencies = healthz_under(server, [reuse_storm, reuse_storm, stale_polls, stale_polls])
    assert latencies.failures == 0 and latencies.median < 0.1 and latencies.worst < 2, latencies



# --- models and sampling sessions are freed: finish, idle sessions, per-client eviction ------------


def _model_of(client: Client, session_id: str, seq: int = 0) -> Answer:
    body = {"session_id": session_id, "model_seq_id": seq, "base_model": "tiny-llama3", "lora_config": {"rank": 4}}
    accepted = client.post("create_model", body)
    return accepted if accepted.status != 200 else client.result(accepted.body["request_id"])


def test_finishing_a_session_frees_its_models_and_sampling_sessions(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    _, client = make_server(limits=ServeLimits(max_models=2))
    first = session(client)
    models = [_model_of(client, first, seq).body["model_id"] for seq in (0, 1)]
    opened = client.post("create_sampling_session", {"session_id": first, "sampling_session_seq_id": 0,
                                                     "base_model": "tiny-llama3"}).body["sampling_session_id"]
    assert "max_models=2" in _model_of(client, session(client)).body["detail"]
    assert client.post(f"sessions/{first}/finish", {}).status == 200
    assert _model_of(client, session(client)).status == 200
    assert client.post("get_info", {"model_id": models[0]}).status == 404
    assert client.call("GET", f"/api/v1/samplers/{opened}").status == 404


def test_models_of_idle_sessions_make_room_least_recently_seen_first(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    _, client = make_server(limits=ServeLimits(max_models=2, session_idle_seconds=1))
    older, newer = session(client), session(client)
    old_model = _model_of(client, older).body["model_id"]
    new_model = _model_of(client, newer).body["model_id"]
    assert "max_models=2" in _model_of(client, session(client)).body["detail"]  # nobody idle yet
    time.sleep(1.2)
    assert client.post("session_heartbeat", {"session_id": newer, "type": "session_heartbeat"}).status == 200
    assert _model_of(client, session(client)).status == 200
    assert client.post("get_info", {"model_id": old_model}).status == 404
    assert client.post("get_info", {"model_id": new_model}).status == 200


def test_a_client_opening_many_sampling_sessions_closes_its_own(
    make_server: Callable[..., tuple[LocalTinker, Client]]
) -> None:
    _, client = make_server(limits=ServeLimits(max_samplers=4))
    quiet = sampling_session(client)
    greedy = session(client)
    body = {"session_id": greedy, "sampling_session_seq_id": 0, "base_model": "tiny-llama3"}
    opened = [client.post("create_sampling_session", body).body["sampling_session_id"] for _ in range(10)]
    assert client.call("GET", f"/api/v1/samplers/{quiet}").status == 200
    assert [client.call("GET", f"/api/v1/samplers/{s}").status for s in opened] == [404] * 7 + [200] * 3


def test_an_equivalent_retry_is_not_a_conflict(make_server: Callable[..., tuple[LocalTinker, Client]]) -> None:
    _, client = make_server()
    model_id = model(client)
    first = client.post("save_weights", {"model_id": model_id, "path": "a", "seq_id": 5})
    for retry in ({"model_id": model_id, "path": "a", "seq_id": 5.0},
                  {"model_id": model_id, "path": "a", "seq_id": 5, "type": "save_weights"}):
        again = client.post("save_weights", retry)
        assert again.status == 200 and again.body["request_id"] == first.body["request_id"], again


def test_a_huge_value_is_not_echoed_back_in_full(make_server: Callable[..., tuple[LocalTinker, Client]]) -> None:
    _, client = make_server()
    huge = "x" * 5000
    answers = [
        client.post("create_model", {"session_id": session(client), "model_seq_id": 0, "base_model": "/" + huge}),
        client.post("create_model", {"session_id": huge, "model_seq_id": 0, "base_model": "tiny-llama3"}),
        client.post("retrieve_future", {"request_id": huge}),
        client.post("get_info", {"model_id": huge}),
        client.post("save_weights", {"model_id": model(client), "seq_id": [huge]}),
        client.post("load_weights", {"path": "tinker://" + huge, "model_id": "m"}),
    ]
    for answer in answers:
        assert 400 <= answer.status < 500 and len(json.dumps(answer.body)) < 2500, (answer.status, len(str(answer.body)))
        assert "'input'" not in answer.body["detail"]
