"""The ``tinkex`` model provider for inspect-ai: inspect's ``generate`` served by a sampling client.

This module imports inspect-ai at its top, so only ``inspect_bridge`` imports it, and only
once the ``[inspect]`` extra is known to be installed. A conversation from inspect is
rendered with the target's renderer, exactly as a cookbook evaluator would render it, and
the reply is read back with ``parse_reply``: a task scored through inspect sees the same
text the ``generation`` evaluator would grade.

Sampling calls block, so each runs on a worker thread; inspect runs samples concurrently,
and the sampling client (thread-safe by contract) receives several prompts at once, which
a remote backend works on together and the local one batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio.to_thread
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    StopReason,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo
from tenacity.wait import WaitBaseT, wait_none

from tinkex_cookbook.errors import ConfigError, RendererError
from tinkex_cookbook.eval.base import EvalTarget
from tinkex_cookbook.ports import SampleResponse, SamplingParams
from tinkex_cookbook.train.renderers import Message
from tinkex_cookbook.train.replies import parse_reply, sampling_params

PROVIDER = "tinkex"
DEFAULT_MAX_TOKENS = 256
"""Reply length when neither the task nor the eval sets ``max_tokens`` (the ``generation`` evaluator's)."""

_STOP_REASONS: dict[str, StopReason] = {"stop": "stop", "length": "max_tokens"}


def messages_from_inspect(messages: Sequence[ChatMessage]) -> list[Message]:
    """inspect's chat messages as the cookbook's message dicts; text only, since the renderers write text.

    A tool message, or content that is not text (an image, audio), is a ``RendererError`` naming the
    message: silently dropping it would score the model on a conversation the task never asked.
    """
    converted: list[Message] = []
    for position, message in enumerate(messages):
        if not isinstance(message, ChatMessageSystem | ChatMessageUser | ChatMessageAssistant):
            raise RendererError(f"message {position} has role {message.role!r}; the {PROVIDER!r} provider renders "
                                "system, user and assistant messages only (no tool use). Fix: use a task "
                                "without tools")
        if isinstance(message, ChatMessageAssistant) and message.tool_calls:
            raise RendererError(f"message {position} (assistant) calls tools; the {PROVIDER!r} provider renders "
                                "text only. Fix: use a task without tools")
        if not isinstance(message.content, str):
            other = sorted({part.type for part in message.content if part.type not in ("text", "reasoning")})
            if other:
                raise RendererError(f"message {position} ({message.role}) holds {', '.join(other)} content; the "
                                    f"{PROVIDER!r} provider renders text only")
        converted.append({"role": message.role, "content": message.text})
    return converted


def params_from_config(target: EvalTarget, config: GenerateConfig, seed: int | None) -> SamplingParams:
    """Greedy, at most ``DEFAULT_MAX_TOKENS``, unless the config says otherwise; the renderer's stops.

    inspect's ``stop_seqs`` are applied to the reply's text afterwards (``cut_at_stops``): a backend
    takes token-id stops or string stops, never a mix, and most renderers stop on token ids.
    """
    params = sampling_params(target.renderer, config.max_tokens or DEFAULT_MAX_TOKENS, config.temperature or 0.0,
                             config.seed if config.seed is not None else seed)
    return replace(params, top_p=params.top_p if config.top_p is None else config.top_p,
                   top_k=params.top_k if config.top_k is None else config.top_k)


def cut_at_stops(text: str, stops: Sequence[str] | None) -> str:
    """``text`` up to the first of ``stops`` (as a server would have stopped there)."""
    ends = [text.find(stop) for stop in stops or () if stop and stop in text]
    return text[: min(ends)] if ends else text


def output_from_response(target: EvalTarget, response: SampleResponse, prompt_tokens: int,
                         stop_seqs: Sequence[str] | None) -> ModelOutput:
    """One choice per sampled sequence, its text parsed by the renderer; usage counts tokens as sampled."""
    texts = [cut_at_stops(parse_reply(target.renderer, sequence.tokens), stop_seqs) for sequence in response.sequences]
    choices = [ChatCompletionChoice(message=ChatMessageAssistant(content=text, model=target.label, source="generate"),
                                    stop_reason=_STOP_REASONS.get(sequence.stop_reason, "unknown"))
               for text, sequence in zip(texts, response.sequences, strict=True)]
    output_tokens = sum(len(sequence.tokens) for sequence in response.sequences)
    usage = ModelUsage(input_tokens=prompt_tokens, output_tokens=output_tokens,
                       total_tokens=prompt_tokens + output_tokens)
    return ModelOutput(model=target.label, choices=choices, usage=usage)


@modelapi(name=PROVIDER)
class TinkexModelAPI(ModelAPI):
    """inspect's model API over an ``EvalTarget``; built by ``inspect_model``, which passes the target."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig | None = None, target: EvalTarget | None = None,
                 seed: int | None = None, **model_args: Any) -> None:
        super().__init__(model_name, base_url, api_key, [], config or GenerateConfig())
        if not isinstance(target, EvalTarget):  # e.g. `inspect eval --model tinkex/x`, or a retry from a log
            raise ConfigError(f"model {PROVIDER}/{model_name}: the {PROVIDER!r} provider samples from a model the "
                              "cookbook has opened, so a name alone means nothing to it. Fix: build the model "
                              "with tinkex_cookbook.eval.inspect_bridge.inspect_model(target)")
        if model_args:
            raise ConfigError(f"model {PROVIDER}/{model_name}: unknown model args {sorted(model_args)}; the "
                              f"{PROVIDER!r} provider takes 'target' and 'seed'")
        self.target = target
        self.seed = seed

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        if tools:
            raise RendererError(f"the task offers {len(tools)} tool(s); the {PROVIDER!r} provider renders text only "
                                "and cannot call tools. Fix: use a task without tools")
        prompt = self.target.renderer.build_generation_prompt(messages_from_inspect(input))
        params = params_from_config(self.target, config, self.seed)
        sampler, count = self.target.sampler, config.num_choices or 1
        response = await anyio.to_thread.run_sync(lambda: sampler.sample(prompt, count, params).result())
        return output_from_response(self.target, response, prompt.length, config.stop_seqs)

    async def count_text_tokens(self, text: str) -> int:
        """With the target's own tokenizer: inspect's default estimate needs tiktoken's vocabulary, a download."""
        return len(self.target.renderer.tokenizer.encode(text, add_special_tokens=False))

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    def should_retry(self, ex: Exception) -> bool:
        """Never: the sampling client's adapter retries transient failures itself, with its own backoff."""
        return False

    def retry_wait(self) -> WaitBaseT:
        """No wait, as inspect never retries here; inspect's default backoff is also built with a keyword
        tenacity 9.2 deprecates, a warning on every generate call."""
        return wait_none()
