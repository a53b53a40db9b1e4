"""Renderer invariants on real tokenizers, for every built-in renderer (hypothesis).

Weights align with tokens; the generation prompt is a prefix of the supervised
example and carries no weight; parsing the tokens of a rendered assistant turn
gives the message back (for replies with text and no surrounding spaces: the
reference's templates treat empty and space-padded turns specially, and the
goldens pin those cases). Each renderer runs on its golden tokenizer, chatml on
SmolLM2's (converted once per session; skipped where that cannot be done).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.goldens.golden_tokenizers import golden_tokenizer
from tests.goldens.smollm2 import SmolLM2, session_smollm2
from tinkex_cookbook.train.renderers import Renderer, TrainOnWhat, get_renderer, get_text_content
from tinkex_cookbook.train.renderers.chatml import ChatMLRenderer

RENDERERS = ["role_colon", "llama3", "qwen3", "qwen3_disable_thinking", "deepseekv3", "gpt_oss_no_sysprompt", "kimi_k2"]
MODES = [m for m in TrainOnWhat if m is not TrainOnWhat.CUSTOMIZED]
EXAMPLES = settings(max_examples=20, deadline=None)
"""Per renderer, so the eight of them share what used to be 150 examples per property."""

text = st.text(st.sampled_from("abcXYZ019 .,!?'-é日🎉"), max_size=30)
history = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), text).map(lambda p: {"role": p[0], "content": p[1]}),
    min_size=0, max_size=4,
).map(lambda ms: [{"role": "system", "content": "Be brief."}, *ms, {"role": "user", "content": "Go."}])


@pytest.fixture(scope="session")
def smollm2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SmolLM2:
    return session_smollm2(request.config, tmp_path_factory)


@pytest.fixture(scope="module", params=[*RENDERERS, "chatml"])
def renderer(request: pytest.FixtureRequest) -> Renderer:
    if request.param == "chatml":
        return get_renderer("chatml", request.getfixturevalue("smollm2").tokenizer)
    return get_renderer(request.param, golden_tokenizer(request.param))


@given(st.sampled_from(MODES), history, text)
@EXAMPLES
def test_weights_align_with_tokens(renderer: Renderer, mode: TrainOnWhat, messages: list, reply: str) -> None:
    model_input, weights = renderer.build_supervised_example(
        [*messages, {"role": "assistant", "content": reply}], mode
    )
    assert len(weights) == model_input.length and set(weights) <= {0.0, 1.0}


@given(history, text)
@EXAMPLES
def test_generation_prompt_prefixes_the_example_and_is_untrained(
    renderer: Renderer, messages: list, reply: str
) -> None:
    """Not for chatml replies opening with whitespace: the BPE merges it with the prompt's final newline."""
    assume(not (isinstance(renderer, ChatMLRenderer) and reply[:1].isspace()))
    prompt = renderer.build_generation_prompt(messages).to_ints()
    full, weights = renderer.build_supervised_example(
        [*messages, {"role": "assistant", "content": reply}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    assert full.to_ints()[: len(prompt)] == prompt
    assert not any(weights[: len(prompt)])
    assert any(weights[len(prompt) :]) or not reply  # deepseekv3 writes nothing for an empty reply


@given(history, text.filter(lambda t: t.strip() == t and t))
@EXAMPLES
def test_parse_inverts_render(renderer: Renderer, messages: list, reply: str) -> None:
    prompt = renderer.build_generation_prompt(messages).to_ints()
    full, _ = renderer.build_supervised_example(
        [*messages, {"role": "assistant", "content": reply}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    message, termination = renderer.parse_response(full.to_ints()[len(prompt) :])
    assert termination.is_clean
    assert message["role"] == "assistant" and get_text_content(message) == reply
