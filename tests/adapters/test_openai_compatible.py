"""OpenAI-compatible LLM and embedding adapters, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

httpx = pytest.importorskip("httpx")  # the optional `llm` extra

from tinkex_cookbook.adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddingClient
from tinkex_cookbook.adapters.llm.openai_compatible import (
    MAX_RETRY_AFTER,
    LLMServiceError,
    OpenAICompatibleLLMClient,
)
from tinkex_cookbook.adapters.retry import MAX_BACKOFF, backoff_delay
from tinkex_cookbook.errors import ConfigError, CookbookError
from tinkex_cookbook.ports.llm import Completion, EmbeddingClient, LLMClient

KEY = "sk-test-SECRET-0123456789"
BASE = "https://llm.example.test/v1"

CHAT_OK = {
    "id": "chatcmpl-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                 "finish_reason": "length"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
              "prompt_tokens_details": {"cached_tokens": 0}},
}


class Recorder:
    """A MockTransport handler that replays scripted responses and records requests."""

    def __init__(self, *script: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.script: Iterator = iter(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self.script)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step


class SleepFake:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def llm(recorder: Recorder, sleep: SleepFake | None = None, **kwargs) -> OpenAICompatibleLLMClient:
    kwargs.setdefault("model", "gpt-test")
    return OpenAICompatibleLLMClient(BASE, api_key=KEY, transport=httpx.MockTransport(recorder),
                                     sleep=sleep or SleepFake(), **kwargs)


def embedder(recorder: Recorder, **kwargs) -> OpenAICompatibleEmbeddingClient:
    return OpenAICompatibleEmbeddingClient(BASE, api_key=KEY, model="embed-test",
                                           transport=httpx.MockTransport(recorder),
                                           sleep=SleepFake(), **kwargs)


# -- happy paths ---------------------------------------------------------------------------


def test_complete_sends_openai_body_and_parses_response() -> None:
    rec = Recorder(httpx.Response(200, json=CHAT_OK))
    client = llm(rec)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]
    result = client.complete(messages, model="override-model", max_tokens=7, temperature=0.3)
    client.close()

    assert result == Completion("Paris.", "length",
                                {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "override-model", "messages": messages, "max_tokens": 7, "temperature": 0.3,
    }


def test_complete_uses_default_model_and_omits_unset_max_tokens() -> None:
    rec = Recorder(httpx.Response(200, json={"choices": [{"message": {"content": None}}]}))
    with llm(rec) as client:
        result = client.complete([{"role": "user", "content": "hi"}])
    body = json.loads(rec.requests[0].content)
    assert body["model"] == "gpt-test" and "max_tokens" not in body and body["temperature"] == 0.0
    assert result == Completion("", "stop", {})


def test_no_api_key_sends_no_authorization_header() -> None:
    rec = Recorder(httpx.Response(200, json=CHAT_OK))
    client = OpenAICompatibleLLMClient(BASE + "/", transport=httpx.MockTransport(rec))
    client.complete([{"role": "user", "content": "hi"}])
    client.close()
    assert "authorization" not in rec.requests[0].headers
    assert str(rec.requests[0].url) == f"{BASE}/chat/completions"  # trailing slash stripped
    assert "model" not in json.loads(rec.requests[0].content)


def test_embeddings_are_ordered_by_index() -> None:
    shuffled = {"data": [{"index": 2, "embedding": [2.0, 2.0]}, {"index": 0, "embedding": [0.0, 0.5]},
                         {"index": 1, "embedding": [1, 1.5]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    rec = Recorder(httpx.Response(200, json=shuffled))
    with embedder(rec) as client:
        vectors = client.embed(["a", "b", "c"])
    assert vectors == [[0.0, 0.5], [1.0, 1.5], [2.0, 2.0]]
    request = rec.requests[0]
    assert str(request.url) == f"{BASE}/embeddings"
    assert json.loads(request.content) == {"input": ["a", "b", "c"], "model": "embed-test"}
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_embed_empty_input_makes_no_request() -> None:
    rec = Recorder()
    with embedder(rec) as client:
        assert client.embed([]) == []
    assert rec.requests == []


@pytest.mark.parametrize("data", [
    [{"index": 0, "embedding": [1.0]}],                                      # too few
    [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}],    # duplicate index
    [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [2.0, 3.0]}],  # ragged
    [{"index": 0, "embedding": [1.0]}, {"embedding": [2.0]}],                # no index
])
def test_bad_embedding_payloads_raise_service_error(data: list) -> None:
    rec = Recorder(httpx.Response(200, json={"data": data}))
    with embedder(rec) as client, pytest.raises(LLMServiceError, match="/embeddings"):
        client.embed(["a", "b"])


def test_adapters_satisfy_the_ports() -> None:
    rec = Recorder()
    with llm(rec) as chat, embedder(rec) as emb:
        assert isinstance(chat, LLMClient)
        assert isinstance(emb, EmbeddingClient)
        assert not isinstance(emb, LLMClient)


# -- retries ---------------------------------------------------------------------------------


def test_429_honours_retry_after_then_succeeds() -> None:
    sleep = SleepFake()
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"}),
                   httpx.Response(429, headers={"Retry-After": "9999"}),
                   httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                   httpx.Response(200, json=CHAT_OK))
    with llm(rec, sleep, backoff=0.5) as client:
        assert client.complete([{"role": "user", "content": "hi"}]).text == "Paris."
    assert len(rec.requests) == 4
    # seconds honoured; huge value capped; an HTTP-date falls back to backoff (3rd attempt: 0.5*4)
    assert sleep.calls == [2.0, MAX_RETRY_AFTER, 2.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retried_with_exponential_backoff_then_succeeds(status: int) -> None:
    sleep = SleepFake()
    rec = Recorder(httpx.Response(status), httpx.Response(503, text="upstream down"),
                   httpx.Response(200, json=CHAT_OK))
    with llm(rec, sleep, backoff=0.25) as client:
        assert client.complete([{"role": "user", "content": "hi"}]).finish_reason == "length"
    assert len(rec.requests) == 3
    assert sleep.calls == [0.25, 0.5]


def test_exhausted_retries_name_path_status_attempts_and_hide_key() -> None:
    sleep = SleepFake()
    rec = Recorder(*[httpx.Response(503, text=f"overloaded, your key {KEY} is fine")] * 3)
    client = llm(rec, sleep, max_attempts=3)
    with pytest.raises(LLMServiceError) as info:
        client.complete([{"role": "user", "content": "hi"}])
    client.close()
    err = info.value
    text = str(err)
    assert "/chat/completions" in text and "503" in text and "3 attempt" in text
    assert (err.path, err.status, err.attempts) == ("/chat/completions", 503, 3)
    assert KEY not in text and KEY not in repr(err)
    assert KEY not in repr(client) and repr(client) == (
        f"OpenAICompatibleLLMClient(base_url={BASE!r}, model='gpt-test')")
    assert len(rec.requests) == 3 and len(sleep.calls) == 2
    assert isinstance(err, CookbookError) and isinstance(err, RuntimeError)
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == text and clone.attempts == 3


def test_exhausted_429_without_retry_after_uses_backoff() -> None:
    sleep = SleepFake()
    rec = Recorder(*[httpx.Response(429)] * 2)
    with llm(rec, sleep, max_attempts=2, backoff=1.0) as client, \
            pytest.raises(LLMServiceError, match=r"429.*2 attempt|2 attempt.*429"):
        client.complete([{"role": "user", "content": "hi"}])
    assert sleep.calls == [1.0]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_a_config_error_naming_the_env_vars(status: int) -> None:
    sleep = SleepFake()
    rec = Recorder(httpx.Response(status, text=f"invalid key {KEY}"))
    with llm(rec, sleep) as client, pytest.raises(ConfigError) as info:
        client.complete([{"role": "user", "content": "hi"}])
    text = str(info.value)
    assert "TINKEX_LLM_API_KEY" in text and "OPENAI_API_KEY" in text and str(status) in text
    assert KEY not in text
    assert len(rec.requests) == 1 and sleep.calls == []  # never retried


def test_other_4xx_fails_at_once() -> None:
    rec = Recorder(httpx.Response(400, json={"error": {"message": "bad model"}}))
    with llm(rec) as client, pytest.raises(LLMServiceError, match="400.*1 attempt|1 attempt.*400"):
        client.complete([{"role": "user", "content": "hi"}])
    assert len(rec.requests) == 1


def test_timeouts_are_retried_then_raise() -> None:
    sleep = SleepFake()
    rec = Recorder(*[httpx.ReadTimeout("read timed out")] * 4)
    with llm(rec, sleep) as client, pytest.raises(LLMServiceError) as info:
        client.complete([{"role": "user", "content": "hi"}])
    assert len(rec.requests) == 4 and sleep.calls == [0.5, 1.0, 2.0]
    assert "ReadTimeout" in str(info.value) and "4 attempt" in str(info.value)
    assert "/chat/completions" in str(info.value)


def test_connection_error_then_success() -> None:
    sleep = SleepFake()
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json=CHAT_OK))
    with llm(rec, sleep) as client:
        assert client.complete([{"role": "user", "content": "hi"}]).text == "Paris."
    assert len(rec.requests) == 2 and sleep.calls == [0.5]


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>not json</html>"),
    httpx.Response(200, json=["a", "list"]),
    httpx.Response(200, json={"choices": []}),
    httpx.Response(200, json={"choices": [{"message": {"content": 42}}]}),
])
def test_malformed_bodies_raise_service_error(response: httpx.Response) -> None:
    rec = Recorder(response)
    with llm(rec) as client, pytest.raises(LLMServiceError, match="/chat/completions") as info:
        client.complete([{"role": "user", "content": "hi"}])
    assert len(rec.requests) == 1 and KEY not in str(info.value)


# -- client ownership and construction -------------------------------------------------------


def test_close_closes_only_an_owned_client() -> None:
    owned = llm(Recorder())
    owned.close()
    assert owned._client.is_closed

    injected = httpx.Client(transport=httpx.MockTransport(Recorder(httpx.Response(200, json=CHAT_OK))))
    client = OpenAICompatibleEmbeddingClient(BASE, api_key=KEY, http_client=injected)
    client.close()
    assert not injected.is_closed
    injected.close()


def test_injected_client_still_gets_the_bearer_header() -> None:
    rec = Recorder(httpx.Response(200, json=CHAT_OK))
    with httpx.Client(transport=httpx.MockTransport(rec)) as injected:
        OpenAICompatibleLLMClient(BASE, api_key=KEY, http_client=injected).complete(
            [{"role": "user", "content": "hi"}])
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("kwargs", [
    {"base_url": ""}, {"max_attempts": 0}, {"backoff": -1.0}, {"timeout": 0},
    {"http_client": "x", "transport": "y"},
])
def test_bad_construction_is_a_config_error(kwargs: dict) -> None:
    args = {"base_url": BASE, "api_key": KEY} | kwargs
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleLLMClient(**args)
    assert KEY not in str(info.value)


# -- backoff schedule -------------------------------------------------------------------------


@given(backoff=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
       attempts=st.integers(min_value=1, max_value=200))
def test_backoff_schedule_is_non_decreasing_and_capped(backoff: float, attempts: int) -> None:
    schedule = [backoff_delay(n, backoff) for n in range(1, attempts + 1)]
    assert all(0.0 <= d <= MAX_BACKOFF for d in schedule)
    assert all(a <= b for a, b in pairwise(schedule))
    if backoff and backoff <= MAX_BACKOFF:
        assert schedule[0] == backoff
