"""Renderer base: conversations -> tokens with per-token loss weights, and back.

A renderer splits each message into a *header* (role markers: seen, never
trained unless ``all_tokens``) and an *output* (what the model writes for that
turn, end-of-turn marker included: trained when ``TrainOnWhat`` selects the
message). The assembly rules here are the reference cookbook's (tinker-cookbook
0.6.x), so a datum built here is token for token the one it builds; golden
tests hold us to that.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports import EncodedTextChunk, ModelInput, Tokenizer

Message = dict[str, Any]
ContentPart = dict[str, Any]


class ParseTermination(StrEnum):
    """How a sampled response ended: the renderer's stop signal, EOS, or neither."""

    STOP_SEQUENCE = "stop_sequence"
    EOS = "eos"
    MALFORMED = "malformed"

    @property
    def is_clean(self) -> bool:
        return self is not ParseTermination.MALFORMED

    @property
    def is_stop_sequence(self) -> bool:
        return self is ParseTermination.STOP_SEQUENCE


class TrainOnWhat(StrEnum):
    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


class _Strict(BaseModel):
    # Built on first use: most runs never see a tool call.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ToolCall(_Strict):
    """A tool invocation in OpenAI form; ``arguments`` is a JSON string."""

    class FunctionBody(BaseModel):
        model_config = ConfigDict(defer_build=True)

        name: str
        arguments: str

    type: Literal["function"] = "function"
    id: str | None = None
    function: FunctionBody


class UnparsedToolCall(_Strict):
    """Model output that looked like a tool call but did not parse; kept for debugging."""

    raw_text: str
    error: str


def as_tool_call(value: ToolCall | Mapping[str, Any]) -> ToolCall:
    """Accept tool calls as objects or as the plain dicts a dataset row holds."""
    return value if isinstance(value, ToolCall) else ToolCall.model_validate(value)


def ensure_text(content: str | list[ContentPart]) -> str:
    if isinstance(content, str):
        return content
    if len(content) == 1 and content[0]["type"] == "text":
        return content[0]["text"]
    raise RendererError(f"expected text content, got structured content with {len(content)} parts")


def ensure_list(content: str | list[ContentPart]) -> list[ContentPart]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def has_thinking(content: str | list[ContentPart]) -> bool:
    if isinstance(content, list):
        return any(part["type"] == "thinking" for part in content)
    return "<think>" in content


def remove_thinking(parts: list[ContentPart]) -> list[ContentPart]:
    return [part for part in parts if part["type"] != "thinking"]


def get_text_content(message: Message) -> str:
    """The visible text of a message, without its reasoning."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def message_to_jsonable(message: Message) -> dict[str, Any]:
    """A message as plain JSON data: tool calls as dicts, content parts as fresh dicts."""
    content = message["content"]
    result: dict[str, Any] = {
        "role": message["role"],
        "content": content if isinstance(content, str) else [
            {"type": "text", "text": p["text"]} if p["type"] == "text" else {"type": p["type"], p["type"]: p[p["type"]]}
            for p in content
        ],
    }
    for key in ("tool_calls", "unparsed_tool_calls"):
        if key in message:
            result[key] = [c.model_dump(mode="json") if isinstance(c, BaseModel) else dict(c) for c in message[key]]
    for key in ("trainable", "tool_call_id", "name"):
        if key in message:
            result[key] = message[key]
    return result


def _parse_tool_call_json(body: str, raw_text: str) -> ToolCall | UnparsedToolCall:
    call, wrong = problem(body.strip())  # deep nesting and huge integers too, not only bad syntax
    if wrong is not None:
        return UnparsedToolCall(raw_text=raw_text, error=f"Invalid JSON: the call {wrong}")
    if not isinstance(call, dict):
        return UnparsedToolCall(raw_text=raw_text, error="Tool call is not a JSON object")
    name, arguments, call_id = call.get("name"), call.get("arguments"), call.get("id")
    if not isinstance(name, str):
        return UnparsedToolCall(raw_text=raw_text, error="Missing or invalid 'name' field")
    if not isinstance(arguments, dict):
        return UnparsedToolCall(raw_text=raw_text, error="Missing or invalid 'arguments' field")
    return ToolCall(
        function=ToolCall.FunctionBody(name=name, arguments=json.dumps(arguments)),
        id=call_id if isinstance(call_id, str) else None,
    )


UNTERMINATED_TOOL_BLOCK_ERROR = "unterminated tool block"
PARSE_FAILURE_DETAIL_MAX_CHARS = 16384
"""How much of a dangling block's text an ``UnparsedToolCall`` keeps."""


def detect_unterminated_tool_block(
    content: str, markers: Sequence[tuple[str, str]]
) -> UnparsedToolCall | None:
    """The first block opened more often than closed, so a cut-off tool call is reported, not read as text."""
    for open_marker, close_marker in markers:
        opens = content.count(open_marker)
        if opens and opens > content.count(close_marker):
            return UnparsedToolCall(
                raw_text=content[content.rfind(open_marker) :][:PARSE_FAILURE_DETAIL_MAX_CHARS],
                error=f"{UNTERMINATED_TOOL_BLOCK_ERROR}: '{open_marker}' opened without a matching '{close_marker}'",
            )
    return None


_BLOCKS = re.compile(r"<think>(.*?)</think>|<tool_call>(.*?)</tool_call>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def parse_content_blocks(content: str) -> tuple[list[ContentPart], list[ToolCall | UnparsedToolCall]] | None:
    """Split ``<think>`` and ``<tool_call>`` blocks out of text; None when there are none."""
    if "<think>" not in content and "<tool_call>" not in content:
        return None
    parts: list[ContentPart] = []
    calls: list[ToolCall | UnparsedToolCall] = []
    position = 0
    for match in _BLOCKS.finditer(content):
        if content[position : match.start()]:
            parts.append({"type": "text", "text": content[position : match.start()]})
        if match.group(1) is not None:
            if match.group(1):
                parts.append({"type": "thinking", "thinking": match.group(1)})
        else:
            calls.append(_parse_tool_call_json(match.group(2), match.group(0)))
        position = match.end()
    if content[position:]:
        parts.append({"type": "text", "text": content[position:]})
    return parts, calls


def parse_think_blocks(content: str) -> list[ContentPart] | None:
    """Split only ``<think>`` blocks out of text; None when there are none."""
    if "<think>" not in content:
        return None
    parts: list[ContentPart] = []
    position = 0
    for match in _THINK.finditer(content):
        if content[position : match.start()]:
            parts.append({"type": "text", "text": content[position : match.start()]})
        if match.group(1):
            parts.append({"type": "thinking", "thinking": match.group(1)})
        position = match.end()
    if content[position:]:
        parts.append({"type": "text", "text": content[position:]})
    return parts


def literal_encoder(tokenizer: Tokenizer) -> Callable[[str], list[int]]:
    """Encode message content so special-token text in it stays text, as the template's output does.

    Uses a private copy of the ``tokenizers`` backend with ``encode_special_tokens``
    set once, so the shared tokenizer is never mutated (concurrent encodes would
    race on that flag). Tokenizers without such a backend encode content as usual.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_backend", None)
    if backend is None or not hasattr(backend, "encode_special_tokens"):
        return lambda text: tokenizer.encode(text, add_special_tokens=False)
    literal = copy.deepcopy(backend)
    literal.encode_special_tokens = True
    return lambda text: literal.encode(text, add_special_tokens=False).ids


SHORT_TEXT = 48
"""Strings up to this many characters are encoded once per renderer and kept."""
SHORT_TEXTS_KEPT = 4096

_RENDER_MEMO: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("render_memo", default=None)
"""Rendered messages by (message, place) while one supervised example is being built."""


@dataclass
class RenderedMessage:
    """One message as header + output chunks (+ ``stop_overlap``, used only by role_colon)."""

    output: list[EncodedTextChunk]
    header: EncodedTextChunk | None = None
    stop_overlap: EncodedTextChunk | None = None


@dataclass
class RenderContext:
    """Where a message sits in its conversation, for templates that look around."""

    idx: int
    is_last: bool
    prev_message: Message | None = None
    next_message: Message | None = None
    last_user_index: int = -1
    in_last_assistant_turn: bool = False


def last_user_index(messages: Sequence[Message]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


def parse_response_for_stop_token(
    response: list[int], tokenizer: Tokenizer, stop_token: int
) -> tuple[Message, ParseTermination]:
    """Split a response on its single stop token; no stop token means it was cut off."""
    count = response.count(stop_token)
    if count == 0:
        return {"role": "assistant", "content": tokenizer.decode(response)}, ParseTermination.MALFORMED
    if count == 1:
        text = tokenizer.decode(response[: response.index(stop_token)])
        return {"role": "assistant", "content": text}, ParseTermination.STOP_SEQUENCE
    raise RendererError(
        f"response holds {count} stop tokens, expected at most 1: sample with this renderer's "
        "get_stop_sequences() so sampling stops at the first"
    )


class Renderer:
    """Base renderer: subclasses implement ``render_message``, ``get_stop_sequences``, ``parse_response``.

    The default prompt and supervised-example assembly concatenate rendered
    messages; renderers whose history differs from the produced turn (Qwen3
    strips old reasoning) override them, as the reference does.
    """

    disables_thinking: bool = False
    renders_by_position: bool = False
    """``render_message`` reads only the message and its index, and the generation prompt of ``messages[:k]``
    is the example's tokens through message ``k - 1`` plus the generation suffix (llama3, chatml,
    role_colon): the example's own pieces then answer the generation-prompt check. A subclass that
    adds to its prompt (a prefill) must leave this ``False``."""
    special_tokens: tuple[str, ...] = ()
    """Special tokens the template writes; a tokenizer that lacks one would spell it out as plain text."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def missing_special_tokens(self) -> list[str]:
        """The template's special tokens this tokenizer does not encode as one token each."""
        return [t for t in self.special_tokens if len(self.tokenizer.encode(t, add_special_tokens=False)) != 1]

    @property
    def has_extension_property(self) -> bool:
        """Whether each turn's prompt is a prefix of the next turn's (no rewritten history)."""
        return False

    @property
    def _bos_tokens(self) -> list[int]:
        return []

    def encode(self, text: str) -> list[int]:
        """``text``'s tokens; short strings (role headers, special tokens, stock phrases) are kept, as a
        renderer encodes the same few of them for every message."""
        if len(text) > SHORT_TEXT:
            return self.tokenizer.encode(text, add_special_tokens=False)
        known = self.__dict__.setdefault("_short_encodings", {})
        tokens = known.get(text)
        if tokens is None:
            if len(known) >= SHORT_TEXTS_KEPT:
                known.clear()
            tokens = known[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return list(tokens)

    def _render(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """``render_message``, reused within one ``build_supervised_example``: its generation-prompt check
        renders the same messages in the same places again."""
        memo = _RENDER_MEMO.get()
        if memo is None:
            return self.render_message(message, ctx)
        key: tuple[Any, ...] = (id(message), ctx.idx) if self.renders_by_position else (
            id(message), ctx.idx, ctx.is_last, id(ctx.prev_message), id(ctx.next_message),
            ctx.last_user_index, ctx.in_last_assistant_turn)
        rendered = memo.get(key)
        if rendered is None:
            rendered = memo[key] = self.render_message(message, ctx)
        return rendered

    def chunk(self, text: str) -> EncodedTextChunk:
        return EncodedTextChunk(tuple(self.encode(text)))

    def get_stop_sequences(self) -> list[str] | list[int]:
        raise NotImplementedError

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        raise NotImplementedError

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        raise NotImplementedError

    def _get_generation_suffix(self, role: str, ctx: RenderContext) -> list[int]:
        if self.renders_by_position:  # the same few headers, over and over: keep them
            kept = self.__dict__.setdefault("_suffixes", {})
            if (role, ctx.idx) not in kept and len(kept) < SHORT_TEXTS_KEPT:
                kept[role, ctx.idx] = self._header_of_empty(role, ctx)
            return list(kept.get((role, ctx.idx)) or self._header_of_empty(role, ctx))
        return list(self._header_of_empty(role, ctx))

    def _header_of_empty(self, role: str, ctx: RenderContext) -> tuple[int, ...]:
        rendered = self.render_message({"role": role, "content": ""}, ctx)
        return rendered.header.tokens if rendered.header else ()

    def _contexts(self, messages: Sequence[Message], turn_start: int) -> list[RenderContext]:
        last_user = last_user_index(messages)
        return [
            RenderContext(
                idx=i, is_last=i == len(messages) - 1,
                prev_message=messages[i - 1] if i > 0 else None,
                next_message=messages[i + 1] if i + 1 < len(messages) else None,
                last_user_index=last_user, in_last_assistant_turn=i >= turn_start,
            )
            for i in range(len(messages))
        ]

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        """The tokens to sample the next ``role`` message from (optionally prefilled)."""
        chunks = [EncodedTextChunk(tuple(self._bos_tokens))] if self._bos_tokens else []
        turn_start = self._last_assistant_turn_start_index(messages)
        for message, ctx in zip(messages, self._contexts(messages, turn_start), strict=True):
            rendered = self._render(message, ctx)
            if rendered.header and rendered.header.tokens:
                chunks.append(rendered.header)
            chunks.extend(chunk for chunk in rendered.output if chunk.tokens)
        suffix_ctx = RenderContext(
            idx=len(messages), is_last=True, prev_message=messages[-1] if messages else None,
            last_user_index=last_user_index(messages), in_last_assistant_turn=True,
        )
        suffix = self._get_generation_suffix(role, suffix_ctx)
        if suffix:
            chunks.append(EncodedTextChunk(tuple(suffix)))
        if prefill:
            chunks.append(self.chunk(prefill))
        return ModelInput(tuple(chunks))

    def build_supervised_examples(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_TURN
    ) -> list[tuple[ModelInput, list[float]]]:
        """One example, or one per trained assistant turn when history is rewritten."""
        if self.has_extension_property:
            return [self.build_supervised_example(messages, train_on_what)]
        mode = TrainOnWhat(train_on_what)
        if mode is TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            candidates = range(len(messages) - 1, len(messages))
        elif mode is TrainOnWhat.LAST_ASSISTANT_TURN:
            candidates = range(self._last_assistant_turn_start_index(messages), len(messages))
        elif mode is TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            candidates = range(len(messages))
        else:
            raise RendererError(
                f"cannot split {mode.value} into per-turn examples for a renderer that rewrites history"
            )
        return [
            self.build_supervised_example(messages[: i + 1], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
            for i in candidates if messages[i]["role"] == "assistant"
        ]

    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE
    ) -> tuple[ModelInput, list[float]]:
        """Tokens of the whole conversation and a 0/1 weight per token."""
        if _RENDER_MEMO.get() is not None:
            return self._build_supervised_example(messages, train_on_what)
        token = _RENDER_MEMO.set({})
        try:
            return self._build_supervised_example(messages, train_on_what)
        finally:
            _RENDER_MEMO.reset(token)

    def _build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat
    ) -> tuple[ModelInput, list[float]]:
        mode = TrainOnWhat(train_on_what)
        pieces: list[tuple[EncodedTextChunk, float]] = []
        if self._bos_tokens:
            pieces.append((EncodedTextChunk(tuple(self._bos_tokens)), 0.0))
        turn_start = self._last_assistant_turn_start_index(messages[:-1])
        ends: list[int] = []  # pieces through each message
        for message, ctx in zip(messages, self._contexts(messages, turn_start), strict=True):
            _check_trainable_field(message, ctx.idx, mode)
            rendered = self._render(message, ctx)
            if rendered.header:
                pieces.append((rendered.header, float(mode is TrainOnWhat.ALL_TOKENS)))
            trained = float(self._output_is_trained(message, ctx, mode))
            pieces.extend((chunk, trained) for chunk in rendered.output if chunk.tokens)
            ends.append(len(pieces))
            if ctx.is_last and rendered.stop_overlap:
                pieces.append((rendered.stop_overlap, trained))
        weights: list[float] = []
        for chunk, weight in pieces:
            weights += [weight] * chunk.length
        model_input = ModelInput(tuple(chunk for chunk, _ in pieces))
        offsets = [0, *accumulate(chunk.length for chunk, _ in pieces)]
        token_ends = [offsets[end] for end in ends]
        return model_input, self._train_after_the_generation_prompt(messages, mode, model_input, weights, token_ends)

    def _prompt_tokens(self, messages: Sequence[Message], tokens: list[int], ends: Sequence[int]) -> list[int]:
        """The generation prompt for ``messages``: read off the example (``tokens``; ``ends``: the tokens
        through each message) when the renderer renders by position, else built."""
        if not (self.renders_by_position and messages):
            return self.build_generation_prompt(messages).to_ints()
        ctx = RenderContext(idx=len(messages), is_last=True, prev_message=messages[-1],
                            last_user_index=last_user_index(messages), in_last_assistant_turn=True)
        return [*tokens[: ends[len(messages) - 1]], *self._get_generation_suffix("assistant", ctx)]

    def _train_after_the_generation_prompt(
        self, messages: Sequence[Message], mode: TrainOnWhat, model_input: ModelInput, weights: list[float],
        ends: Sequence[int],
    ) -> list[float]:
        """Zero the weights of whatever the generation prompt would have supplied (e.g. a prefilled ``<think>``)."""
        boundary = self._first_trained_message_index(messages, mode)
        if boundary is None:
            return weights
        tokens = model_input.to_ints()
        prompt = self._prompt_tokens(messages[:boundary], tokens, ends)
        if tokens[: len(prompt)] != prompt:
            if self.disables_thinking:
                raise RendererError(
                    f"{type(self).__name__} has thinking turned off, but this turn contains "
                    "reasoning; use the thinking version of this renderer or remove the reasoning"
                )
            return weights
        return [0.0] * len(prompt) + weights[len(prompt) :]

    def _output_is_trained(self, message: Message, ctx: RenderContext, mode: TrainOnWhat) -> bool:
        is_assistant = message["role"] == "assistant"
        if mode is TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            return ctx.is_last and is_assistant
        if mode is TrainOnWhat.LAST_ASSISTANT_TURN:
            return is_assistant and ctx.in_last_assistant_turn
        if mode is TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            return is_assistant
        if mode in (TrainOnWhat.ALL_MESSAGES, TrainOnWhat.ALL_TOKENS):
            return True
        if mode is TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
            return message["role"] in ("user", "system")
        return bool(message.get("trainable", False))

    def _last_assistant_turn_start_index(self, messages: Sequence[Message]) -> int:
        return last_user_index(messages) + 1

    def _first_trained_message_index(self, messages: Sequence[Message], mode: TrainOnWhat) -> int | None:
        if mode is TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            boundary = len(messages) - 1
        elif mode is TrainOnWhat.LAST_ASSISTANT_TURN:
            boundary = last_user_index(messages) + 1
        else:
            return None
        if not 0 <= boundary < len(messages):
            return None
        return boundary if messages[boundary]["role"] == "assistant" else None


def _check_trainable_field(message: Message, index: int, mode: TrainOnWhat) -> None:
    """``trainable`` flags belong to ``customized`` mode only, and it needs one on every message."""
    if mode is TrainOnWhat.CUSTOMIZED and "trainable" not in message:
        raise RendererError(f"message {index}: train_on_what=customized needs a 'trainable' field on every message")
    if mode is not TrainOnWhat.CUSTOMIZED and "trainable" in message:
        raise RendererError(
            f"message {index} has a 'trainable' field, which only train_on_what=customized reads; "
            "remove it or switch to customized"
        )
