"""Token-exact parity with the reference cookbook, on real tokenizers.

Each file in tests/goldens/renderers/ holds, for 34 varied conversations, what
tinker-cookbook 0.6.1 produced: tokens and weights for every TrainOnWhat mode
(or that it refused), generation prompts with and without a prefill, stop
sequences, and how it parsed the last assistant turn, whole and cut short.
Regenerate them with tests/goldens/make_renderer_goldens.py.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from tests.goldens.golden_tokenizers import GOLDEN_DATE, RENDERER_TOKENIZER, golden_tokenizer
from tinkex_cookbook.train.renderers import Renderer, TrainOnWhat, get_renderer
from tinkex_cookbook.train.renderers.base import message_to_jsonable

GOLDENS = Path(__file__).parent / "goldens" / "renderers"
NAMES = sorted(path.stem for path in GOLDENS.glob("*.json") if path.stem in RENDERER_TOKENIZER)
"""The reference cookbook's goldens; chatml.json comes from SmolLM2's template (test_chatml_renderer.py)."""


@lru_cache(maxsize=None)
def golden(name: str) -> dict:
    return json.loads((GOLDENS / f"{name}.json").read_text())


@lru_cache(maxsize=None)
def renderer(name: str) -> Renderer:
    if name == "gpt_oss_medium_reasoning":
        from tinkex_cookbook.train.renderers.gpt_oss import GptOssRenderer

        return GptOssRenderer(golden_tokenizer(name), use_system_prompt=True, reasoning_effort="medium",
                              current_date=GOLDEN_DATE)
    return get_renderer(name, golden_tokenizer(name))


def with_trainable(messages: list[dict]) -> list[dict]:
    return [dict(m, trainable=(i % 2 == 1 or m["role"] == "assistant")) for i, m in enumerate(messages)]


def cases(name: str) -> list[tuple[int, dict]]:
    return list(enumerate(golden(name)["cases"]))


def params() -> list:
    return [pytest.param(name, index, id=f"{name}-{index}") for name in NAMES for index in range(len(golden(name)["cases"]))]


def test_goldens_cover_the_required_renderers() -> None:
    required = {"llama3", "role_colon", "qwen3", "qwen3_disable_thinking", "deepseekv3", "kimi_k2",
                "gpt_oss_no_sysprompt"}
    assert required <= set(NAMES)
    assert all(len(golden(name)["cases"]) >= 30 for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stop_sequences_match(name: str) -> None:
    assert renderer(name).get_stop_sequences() == golden(name)["stop_sequences"]


@pytest.mark.parametrize(("name", "index"), params())
def test_supervised_examples_match(name: str, index: int) -> None:
    case = golden(name)["cases"][index]
    for mode, expected in case["examples"].items():
        messages = with_trainable(case["messages"]) if mode == "customized" else case["messages"]
        if "error" in expected:
            with pytest.raises(Exception):  # noqa: B017 - the reference refused; so must we
                renderer(name).build_supervised_example(messages, TrainOnWhat(mode))
            continue
        model_input, weights = renderer(name).build_supervised_example(messages, TrainOnWhat(mode))
        assert model_input.to_ints() == expected["tokens"], mode
        assert "".join(str(int(w)) for w in weights) == expected["weights"], mode


@pytest.mark.parametrize(("name", "index"), params())
def test_generation_prompts_match(name: str, index: int) -> None:
    case = golden(name)["cases"][index]
    history = case["messages"][:-1] if case["messages"][-1]["role"] == "assistant" else case["messages"]
    for prefill, expected in ((None, case["prompt"]), ("Sure,", case["prompt_prefill"])):
        if isinstance(expected, dict):
            with pytest.raises(Exception):  # noqa: B017
                renderer(name).build_generation_prompt(history, prefill=prefill)
            continue
        assert renderer(name).build_generation_prompt(history, prefill=prefill).to_ints() == expected


@pytest.mark.parametrize(("name", "index"), params())
def test_parsing_matches(name: str, index: int) -> None:
    parse = golden(name)["cases"][index]["parse"]
    if parse is None:
        return
    for label, expected in parse.items():
        if "error" in expected:
            with pytest.raises(Exception):  # noqa: B017
                renderer(name).parse_response(expected["tokens"])
            continue
        message, termination = renderer(name).parse_response(expected["tokens"])
        assert message_to_jsonable(message) == expected["message"], label
        assert termination.value == expected["termination"], label
