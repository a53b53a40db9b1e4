"""Replies from a sampling client: what a user reads to judge a model, before and after training.

A prompt is a conversation; its reply is sampled with the renderer's generation prompt and
stop sequences, and read back with the renderer's parser. Several prompts are submitted
before any result is awaited, so a remote backend works on them together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.errors import DatasetError, RendererError
from tinkex_cookbook.ports import ModelInput, SamplingClient, SamplingParams
from tinkex_cookbook.train.renderers import Message, Renderer, get_text_content, validate_conversation
from tinkex_cookbook.train.types import stop_tuple


@dataclass(frozen=True)
class Prompt:
    """A conversation to continue, and the reply the data holds for it (if any)."""

    messages: list[Message]
    reference: str | None = None


def held_out_prompt(row: Mapping[str, Any], index: int) -> Prompt | None:
    """A dataset row as a prompt: the conversation before its last assistant message, which becomes the
    reference; ``None`` for a row with no assistant message after some other message."""
    messages = validate_conversation(dict(row), index)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 1:
        return None
    return Prompt(messages[:last], get_text_content(messages[last]))


def prompt_from_line(data: Any, index: int) -> Prompt:
    """A prompts-file line: ``{"messages": [...]}`` (a trailing assistant message is the reference) or
    ``{"prompt": "text"}`` (one user message)."""
    if isinstance(data, Mapping) and isinstance(data.get("prompt"), str):
        return Prompt([{"role": "user", "content": data["prompt"]}])
    if isinstance(data, Mapping) and "messages" in data:
        messages = validate_conversation(dict(data), index)
        if messages[-1]["role"] == "assistant" and len(messages) > 1:
            return Prompt(messages[:-1], get_text_content(messages[-1]))
        return Prompt(messages)
    raise DatasetError(f"line {index + 1}: expected {{\"prompt\": \"text\"}} or {{\"messages\": [...]}}, "
                       f"got {str(data)[:80]!r}")


def sampling_params(renderer: Renderer, max_tokens: int, temperature: float = 0.0,
                    seed: int | None = None) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed,
                          stop=stop_tuple(renderer.get_stop_sequences()))


def parse_reply(renderer: Renderer, tokens: Sequence[int]) -> str:
    """The reply's visible text: cut at the first stop token, parsed by the renderer (raw text if it
    cannot parse it, e.g. a reply cut off by max_tokens)."""
    stops = [s for s in renderer.get_stop_sequences() if isinstance(s, int)]
    cut = list(tokens)
    for position, token in enumerate(cut):
        if token in stops:
            cut = cut[: position + 1]
            break
    try:
        message, _ = renderer.parse_response(cut)
    except RendererError:
        return renderer.tokenizer.decode(cut)
    return get_text_content(message)


def replies(sampler: SamplingClient, renderer: Renderer, prompts: Sequence[Prompt], params: SamplingParams) -> list[str]:
    """One reply per prompt; all are submitted before the first is awaited."""
    futures = [sampler.sample(renderer.build_generation_prompt(p.messages), 1, params) for p in prompts]
    return [parse_reply(renderer, future.result().sequences[0].tokens) for future in futures]


def stream_reply(
    sampler: SamplingClient, renderer: Renderer, messages: Sequence[Message], params: SamplingParams,
    chunk_tokens: int = 12,
) -> Iterator[str]:
    """A reply as text pieces, a few tokens at a time, so a terminal shows it as it is written.

    Each piece continues the prompt with the tokens so far; it ends at a stop token, at the
    renderer's stop, or at ``params.max_tokens``.
    """
    prompt = renderer.build_generation_prompt(messages).to_ints()
    budget = params.max_tokens or 256
    tokens: list[int] = []
    shown = ""
    while len(tokens) < budget:
        step = SamplingParams(max_tokens=min(chunk_tokens, budget - len(tokens)), temperature=params.temperature,
                              top_p=params.top_p, top_k=params.top_k, stop=params.stop,
                              seed=None if params.seed is None else params.seed + len(tokens))
        sequence = sampler.sample(ModelInput.from_ints([*prompt, *tokens]), 1, step).result().sequences[0]
        tokens += list(sequence.tokens)
        text = parse_reply(renderer, tokens).rstrip("\ufffd")  # a character cut mid-bytes waits for the rest
        if text.startswith(shown) and len(text) > len(shown):
            yield text[len(shown):]
            shown = text
        if sequence.stop_reason == "stop" or not sequence.tokens:
            return
