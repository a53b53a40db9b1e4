"""The ``llm_judge`` evaluator: replies of a model on the ``test`` manifest, rated by a judge served over
OpenAI-compatible HTTP on 127.0.0.1 (the ``openai_compatible`` adapter bound as ``llm_client``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.local_server import LocalServer
from tinkex_cookbook.adapters.llm.noop import NoopLLMClient
from tinkex_cookbook.errors import ConfigError, CookbookError, DatasetError
from tinkex_cookbook.eval import EVALUATORS, TASKS, EvalEnv, EvalTarget, resolve_task, run_tasks
from tinkex_cookbook.eval.evaluators.llm_judge import (
    DEFAULT_RUBRIC,
    NO_REFERENCE,
    LlmJudgeConfig,
    LlmJudgeEvaluator,
    fill_rubric,
    find_score,
    parse_score,
)
from tinkex_cookbook.eval.metrics import example_seed
from tinkex_cookbook.eval.report import records_jsonl
from tinkex_cookbook.ports import Ports
from tinkex_cookbook.ports.llm import ChatMessage, Completion
from tinkex_cookbook.runtime import Runtime
from tinkex_cookbook.train.renderers import get_renderer
from tinkex_cookbook.train.replies import parse_reply, sampling_params

pytest.importorskip("httpx")  # the openai_compatible adapter's extra

KEY = "sk-judge-SECRET-0123456789"
RUBRIC = "Q=<{question}> REPLY=<{reply}> REF=<{reference}> scale {scale_min}-{scale_max}; end with Score: N"

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class JudgeHandler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: records each request and answers with the server's ``answer``."""

    server: JudgeHTTPServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        status, payload = self.server.answer(body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class JudgeHTTPServer(ThreadingHTTPServer):
    answer: Answer
    requests: list[tuple[str, str | None, dict[str, Any]]]
    lock: threading.Lock


def chat(text: str, finish_reason: str = "stop") -> tuple[int, dict[str, Any]]:
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                              "finish_reason": finish_reason}]}


def by_row(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A judge whose verdict depends on the row (the noop store's questions are 'Question N: ...')."""
    match = re.search(r"Question (\d+):", body["messages"][0]["content"])
    assert match, body
    verdicts = ["Off topic.\nScore: 3", "Decent reply.\nRating: [[8]]", "Partly right; I'd say 7.5/10",
                "I cannot rate this reply."]
    return chat(verdicts[int(match.group(1)) % 4])


@contextmanager
def judge_server(answer: Answer) -> Iterator[JudgeHTTPServer]:
    local = LocalServer(JudgeHandler, "judge", server_class=JudgeHTTPServer, poll_interval=0.05)
    server = local.server
    assert isinstance(server, JudgeHTTPServer)
    server.answer, server.requests, server.lock = answer, [], threading.Lock()
    with local:
        yield server


def judge_port(server: JudgeHTTPServer, **options: Any) -> dict[str, Any]:
    host, port = server.server_address[:2]
    return {"adapter": "openai_compatible", "base_url": f"http://{host!s}:{port}/v1", "model": "judge-default",
            "max_attempts": 1, **options}


@contextmanager
def opened(llm_client: object) -> Iterator[tuple[Ports, EvalTarget]]:
    """The ``test`` manifest with ``llm_client`` bound as given, and a target on its noop backend."""
    with Runtime.open("test", {"llm_client": llm_client}) as ports:
        sampler = ports.training_client.create_sampling_client(base_model="tiny-llama3")
        yield ports, EvalTarget("base", sampler, get_renderer("llama3", sampler.get_tokenizer()))


def judge(config: dict[str, Any], llm_client: object, seed: int = 0):
    evaluator = LlmJudgeEvaluator(LlmJudgeConfig.model_validate({"dataset": "chitchat", **config}))
    with opened(llm_client) as (ports, target):
        return evaluator.evaluate(target, EvalEnv(ports, seed=seed))


@pytest.fixture
def llm_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TINKEX_LLM_API_KEY", KEY)
    return KEY


# -- the judge over HTTP --------------------------------------------------------------------------------------


def test_judge_gets_the_filled_rubric_and_its_scores_are_parsed(llm_key: str) -> None:
    with judge_server(by_row) as server:
        result = judge({"limit": 8, "rubric": RUBRIC, "judge_model": "judge-big", "judge_max_tokens": 64,
                        "max_tokens": 12}, judge_port(server))
    records = result.records
    assert [r["score"] for r in records] == [3.0, 8.0, 7.5, None, 3.0, 8.0, 7.5, None]
    assert result.metrics == pytest.approx({"score": 37 / 6, "score_normalized": (37 / 6 - 1) / 9,
                                            "unparsed": 2.0, "examples": 8.0})
    assert [r["problem"] for r in records if r["score"] is None] == ["no score found"] * 2
    assert "problem" not in records[0]
    assert records[1]["reasoning"] == "Decent reply.\nRating: [[8]]"  # the judge's full text is kept

    assert len(server.requests) == 8
    sent = {re.search(r"Question (\d+):", body["messages"][0]["content"]).group(1): (path, auth, body)  # type: ignore[union-attr]
            for path, auth, body in server.requests}
    for record in records:
        path, auth, body = sent[str(record["index"])]
        assert path == "/v1/chat/completions" and auth == f"Bearer {llm_key}"
        assert body["model"] == "judge-big" and body["max_tokens"] == 64 and body["temperature"] == 0.0
        assert re.fullmatch(rf"Question {record['index']}: what should I know about [a-z ]+\?", record["prompt"])
        assert record["reference"].startswith("A short note on")
        assert body["messages"] == [{"role": "user", "content": (
            f"Q=<{record['prompt']}> REPLY=<{record['reply']}> REF=<{record['reference']}> "
            "scale 1-10; end with Score: N")}]
    assert llm_key not in json.dumps([result.records, result.details, result.metrics])


def test_replies_are_the_targets_greedy_replies_seeded_per_example(llm_key: str) -> None:
    with judge_server(lambda body: chat("Score: 5")) as server, opened(judge_port(server)) as (ports, target):
        evaluator = LlmJudgeEvaluator(LlmJudgeConfig(dataset="chitchat", limit=3, max_tokens=10))
        result = evaluator.evaluate(target, EvalEnv(ports, seed=7))
        expected = []
        for index in range(3):
            messages = [{"role": "user", "content": result.records[index]["prompt"]}]
            params = sampling_params(target.renderer, 10, 0.0, example_seed(7, "chitchat", index))
            sample = target.sampler.sample(target.renderer.build_generation_prompt(messages), 1, params).result()
            expected.append(parse_reply(target.renderer, sample.sequences[0].tokens))
    assert [r["reply"] for r in result.records] == expected
    assert result.metrics["score"] == 5.0 and result.metrics["score_normalized"] == pytest.approx(4 / 9)


def test_the_default_rubric_shows_question_reply_reference_and_the_scale(llm_key: str) -> None:
    with judge_server(lambda body: chat("Fine.\nScore: 9")) as server:
        result = judge({"limit": 1, "max_tokens": 8, "scale_max": 9}, judge_port(server))
    (_, _, body), = server.requests
    content = body["messages"][0]["content"]
    record = result.records[0]
    for part in (record["prompt"], record["reply"], record["reference"], "from 1 (worst) to 9 (best)"):
        assert part in content
    assert "{" not in content
    assert body["model"] == "judge-default"  # no judge_model: the adapter's own
    assert result.metrics["score_normalized"] == 1.0


def test_a_failing_judge_endpoint_is_an_error_naming_it_never_a_zero_and_never_the_key(llm_key: str) -> None:
    def broken(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 500, {"error": f"upstream exploded (auth was Bearer {KEY})"}

    with judge_server(broken) as server, pytest.raises(CookbookError) as caught:
        judge({"limit": 3, "max_tokens": 8}, judge_port(server))
    message = str(caught.value)
    host, port = server.server_address[:2]
    assert "/chat/completions" in message and f"{host!s}:{port}" in message and "500" in message
    assert any("llm_judge" in note and "llm_client" in note for note in caught.value.__notes__)
    assert KEY not in message and all(KEY not in note for note in caught.value.__notes__)


def test_a_rejected_key_is_a_config_error(llm_key: str) -> None:
    with judge_server(lambda body: (401, {"error": "bad key"})) as server, \
            pytest.raises(ConfigError, match="rejected the API key") as caught:
        judge({"limit": 2, "max_tokens": 8}, judge_port(server))
    assert KEY not in str(caught.value)


def test_a_judge_cut_at_its_token_limit_is_unparsed_and_says_why(llm_key: str) -> None:
    with judge_server(lambda body: chat("The reply is long and I am still think", "length")) as server:
        result = judge({"limit": 2, "max_tokens": 8}, judge_port(server))
    assert result.metrics["unparsed"] == 2.0 and result.metrics["score"] != result.metrics["score"]  # nan
    assert all("cut at judge_max_tokens" in r["problem"] for r in result.records)


# -- without HTTP: fakes and the noop adapter -------------------------------------------------------------------


def test_noop_judge_with_a_fixed_reply_runs_the_shipped_task_end_to_end() -> None:
    task = TASKS.get("chitchat_judge")
    assert task.evaluator == "llm_judge" and EVALUATORS.get("llm_judge") is LlmJudgeEvaluator
    small = resolve_task({"task": "chitchat_judge", "limit": 3, "max_tokens": 8})
    with opened({"adapter": "noop", "reply": "Reasonable.\nScore: 6"}) as (ports, target):
        (outcome,) = run_tasks([small], [target], EvalEnv(ports))
        noop = ports.llm_client
        assert isinstance(noop, NoopLLMClient)
        prompts = noop.prompts  # the noop adapter records what it was asked
    assert outcome.result.metrics == {"score": 6.0, "score_normalized": 5 / 9, "unparsed": 0.0, "examples": 3.0}
    assert len(prompts) == 3 and all("[Assistant's reply]" in p[0]["content"] for p in prompts)
    lines = [json.loads(line) for line in records_jsonl(outcome.result.records).decode().splitlines()]
    assert [(r["score"], r["reasoning"]) for r in lines] == [(6.0, "Reasonable.\nScore: 6")] * 3


def test_noop_echo_judge_gives_no_score_rather_than_a_made_up_one() -> None:
    """The noop adapter's echo repeats the default rubric, whose 'Score: <number>' has no number."""
    result = judge({"limit": 2, "max_tokens": 8}, "noop")
    assert result.metrics["unparsed"] == 2.0
    assert all(r["reasoning"].startswith("noop: ") for r in result.records)


class BarrierJudge:
    """A fake judge whose calls wait for ``width`` of them to be in flight at once."""

    def __init__(self, width: int) -> None:
        self.barrier = threading.Barrier(width, timeout=10)
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0

    def complete(self, messages: list[ChatMessage], *, model: str | None = None, max_tokens: int | None = None,
                 temperature: float = 0.0) -> Completion:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        self.barrier.wait()
        with self.lock:
            self.in_flight -= 1
        return Completion(f"ok\nScore: {len(messages[0]['content']) % 10 + 1}")


def test_judge_calls_run_concurrently_up_to_the_limit() -> None:
    fake = BarrierJudge(3)
    result = judge({"limit": 6, "max_tokens": 8, "concurrency": 3}, fake)
    assert fake.peak == 3 and result.metrics["unparsed"] == 0.0 and result.metrics["examples"] == 6.0


def test_every_prompt_is_submitted_before_any_reply_is_awaited() -> None:
    events: list[str] = []

    class Watched:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def sample(self, *args: Any, **kwargs: Any) -> Any:
            events.append("submit")
            future = self.inner.sample(*args, **kwargs)

            class Awaited:
                def result(self) -> Any:
                    events.append("await")
                    return future.result()

            return Awaited()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    with opened({"adapter": "noop", "reply": "Score: 4"}) as (ports, target):
        watched = EvalTarget("base", Watched(target.sampler), target.renderer)  # type: ignore[arg-type]
        LlmJudgeEvaluator(LlmJudgeConfig(dataset="chitchat", limit=4, max_tokens=8)).evaluate(watched, EvalEnv(ports))
    assert events == ["submit"] * 4 + ["await"] * 4


def test_an_error_from_any_judge_port_is_raised_with_the_row_named() -> None:
    class Down:
        def complete(self, *args: Any, **kwargs: Any) -> Completion:
            raise ConnectionError("judge unreachable")

    with pytest.raises(ConnectionError, match="judge unreachable") as caught:
        judge({"limit": 2, "max_tokens": 8}, Down())
    assert "row 0 of 'chitchat'" in caught.value.__notes__[0]


# -- rows and config ------------------------------------------------------------------------------------------


def evaluator(**config: Any) -> LlmJudgeEvaluator:
    return LlmJudgeEvaluator(LlmJudgeConfig.model_validate({"dataset": "d", **config}))


def test_rows_give_prompt_question_and_reference() -> None:
    conversation = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                 {"role": "user", "content": "how are you?"}, {"role": "assistant", "content": "well"}]}
    prompt = evaluator()._prompt(0, conversation)
    assert prompt.messages == conversation["messages"][:3] and prompt.reference == "well"
    assert prompt.question == "user: hi\nassistant: hello\nuser: how are you?"

    open_ended = evaluator()._prompt(1, {"messages": [{"role": "user", "content": "tell me a joke"}]})
    assert (open_ended.question, open_ended.reference) == ("tell me a joke", None)
    assert evaluator()._prompt(2, {"prompt": "p?", "question": "q?"}).question == "p?"
    plain = evaluator(system_prompt="Be kind.")._prompt(3, {"question": "q?", "reference": 42})
    assert plain.messages == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "q?"}]
    assert (plain.question, plain.reference) == ("q?", "42")
    own = evaluator(question_field="ask", reference_field="gold")._prompt(4, {"ask": "a?", "gold": "b", "prompt": "x"})
    assert (own.question, own.reference) == ("a?", "b")
    with pytest.raises(DatasetError, match=r"row 5 of 'd'.*found keys \['text'\]"):
        evaluator()._prompt(5, {"text": "no prompt here"})


def test_a_missing_reference_is_said_so_to_the_judge() -> None:
    judge_ = evaluator()
    content = judge_.judge_messages(judge_._prompt(0, {"prompt": "q?"}), "r")[0]["content"]
    assert f"[Reference answer]\n{NO_REFERENCE}\n" in content


def test_fill_rubric_fills_each_placeholder_once_and_leaves_other_braces() -> None:
    values = {"question": "{reply}", "reply": "{reference}", "reference": "ref", "scale_min": "1", "scale_max": "5"}
    assert fill_rubric('{"q": "{question}"} {reply} {other} {reference}', values) == \
        '{"q": "{reply}"} {reference} {other} ref'


@pytest.mark.parametrize(("config", "problem"), [
    ({"rubric": "Rate {question} please"}, "put {reply} in it"),
    ({"scale_min": 5, "scale_max": 5}, "must be below scale_max"),
    ({"concurrency": 0}, "concurrency"),
    ({"judge_max_token": 9}, "unknown config key 'judge_max_token'"),
])
def test_bad_configs_are_config_errors_naming_the_key(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        resolve_task({"task": "chitchat_judge", **config}).build()


def test_the_default_rubric_has_every_placeholder_and_no_score_of_its_own() -> None:
    for name in ("question", "reply", "reference", "scale_min", "scale_max"):
        assert "{" + name + "}" in DEFAULT_RUBRIC
    assert find_score(DEFAULT_RUBRIC) is None


# -- the score parser -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "score"), [
    ("Good.\nScore: 7", 7.0), ("**Score:** 8", 8.0), ("Rating: [[9]]", 9.0), ("I'd give it 7.5/10.", 7.5),
    ("Score (1-10): 6", 6.0), ("score = 4", 4.0), ("6 out of 10", 6.0), ("Score: 8/10", 8.0),
    ("An early score: 3. On reflection...\nFinal Score: 9", 9.0), ("Score: 7.", 7.0), ("SCORE:10", 10.0),
])
def test_parse_score_reads_the_last_stated_score(text: str, score: float) -> None:
    assert parse_score(text).score == score and parse_score(text).problem is None


@pytest.mark.parametrize(("text", "problem"), [
    ("No idea.", "no score found"), ("Score: N", "no score found"), ("Score: 1e3", "no score found"),
    ("3/100 of it", "no score found"), ("Score: 11", "score 11 is outside the scale 1..10"),
    ("Score: 0.5", "score 0.5 is outside the scale 1..10"), ("Score: -2", "score -2 is outside the scale 1..10"),
    ("Score: 9\nActually, Score: 12", "score 12 is outside the scale 1..10"),
])
def test_parse_score_refuses_what_is_missing_or_off_the_scale(text: str, problem: str) -> None:
    assert parse_score(text).score is None and parse_score(text).problem == problem


@given(st.text())
def test_parse_score_never_raises_and_stays_on_the_scale(text: str) -> None:
    verdict = parse_score(text, 1, 10)
    assert (verdict.score is None) != (verdict.problem is None)
    assert verdict.score is None or 1 <= verdict.score <= 10


scores = st.one_of(st.integers(1, 10).map(float), st.integers(10, 100).map(lambda n: n / 10))
forms = st.sampled_from(["Score: {}", "score:{}", "**Score:** {}", "Rating: [[{}]]", "{}/10", "Final score = {}"])
no_digits = st.text(st.characters(blacklist_categories=("Nd",)), max_size=40)


@given(st.text(max_size=200), forms, scores, no_digits)
def test_parse_score_finds_a_final_score_after_any_text(before: str, form: str, score: float, after: str) -> None:
    written = f"{score:g}"
    assert parse_score(f"{before}\n{form.format(written)}\n{after}").score == float(written)
