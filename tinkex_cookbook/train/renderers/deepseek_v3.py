"""DeepSeek V3 chat format, with reasoning on or off (port of tinker-cookbook 0.6.1).

    <｜begin▁of▁sentence｜>system<｜User｜>Hi<｜Assistant｜></think>Hello<｜end▁of▁sentence｜>

A system message is only allowed first and has no role token. Tool results sit
between ``<｜tool▁output▁begin｜>``/``<｜tool▁output▁end｜>`` and the assistant
reply that follows one has no role token. Tool calls are written as

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>name<｜tool▁sep｜>{args}<｜tool▁call▁end｜>...
    ...more calls...<｜tool▁calls▁end｜>
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports import EncodedTextChunk, ModelInput, Tokenizer
from tinkex_cookbook.train.renderers.base import (
    ContentPart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ToolCall,
    UnparsedToolCall,
    as_tool_call,
    detect_unterminated_tool_block,
    ensure_text,
    has_thinking,
    parse_response_for_stop_token,
    parse_think_blocks,
)

_TOOL_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
_TOOL_CALLS_END = "<｜tool▁calls▁end｜>"
_TOOL_CALL_BEGIN = "<｜tool▁call▁begin｜>"
_TOOL_CALL_END = "<｜tool▁call▁end｜>"
_TOOL_SEP = "<｜tool▁sep｜>"
_TOOL_OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
_TOOL_OUTPUT_END = "<｜tool▁output▁end｜>"

_CALLS_SECTION = re.compile(f"{_TOOL_CALLS_BEGIN}(.*?){_TOOL_CALLS_END}", re.DOTALL)
_ONE_CALL = re.compile(f"{_TOOL_CALL_BEGIN}(\\w+){_TOOL_SEP}(.*?){_TOOL_CALL_END}", re.DOTALL)
_CALLS_SECTION_WITH_SPACE = re.compile(f"\\s*{_TOOL_CALLS_BEGIN}.*?{_TOOL_CALLS_END}", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)

_FORMAT_EXAMPLE = (
    f"{_TOOL_CALLS_BEGIN}{_TOOL_CALL_BEGIN}tool_call_name{_TOOL_SEP}tool_call_arguments{_TOOL_CALL_END}"
    f"{_TOOL_CALLS_END}"
)
_TOOLS_INSTRUCTIONS = f"""IMPORTANT: ALWAYS adhere to this exact format for tool use:
{_FORMAT_EXAMPLE}

Where:
- `tool_call_name` must be an exact match to one of the available tools
- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema
- For multiple tool calls, chain them directly without separators or spaces"""


def _follows_tool(ctx: RenderContext) -> bool:
    """An assistant reply to a tool result continues the tool turn, so it gets no role token."""
    return ctx.prev_message is not None and ctx.prev_message["role"] == "tool"


def _tool_calls_text(calls: Sequence[ToolCall | Mapping[str, Any]]) -> str:
    body = "".join(
        f"{_TOOL_CALL_BEGIN}{call.function.name}{_TOOL_SEP}{call.function.arguments}{_TOOL_CALL_END}"
        for call in map(as_tool_call, calls)
    )
    return f"{_TOOL_CALLS_BEGIN}{body}{_TOOL_CALLS_END}"


def _assistant_text(content: str | list[ContentPart], strip_thinking: bool) -> str:
    """Parts in order, so interleaved reasoning and text round-trip; strings pass through as-is."""
    if isinstance(content, str):
        return content
    rendered = []
    for part in content:
        if part["type"] == "thinking" and not strip_thinking:
            rendered.append(f"<think>{part['thinking']}</think>")
        elif part["type"] == "text":
            rendered.append(part["text"])
    return "".join(rendered)


def _parse_tool_calls(content: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    """Calls inside the first complete tool-calls section; bad JSON is kept as unparsed."""
    parsed: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    section = _CALLS_SECTION.search(content)
    if not section:
        return parsed, unparsed
    for match in _ONE_CALL.finditer(section.group(1)):
        name, arguments = match.group(1), match.group(2).strip()
        wrong = problem(arguments)[1]  # deep nesting and huge integers too, not only bad syntax
        if wrong is not None:
            unparsed.append(UnparsedToolCall(raw_text=match.group(0), error=f"Invalid JSON: the arguments {wrong}"))
            continue
        parsed.append(ToolCall(function=ToolCall.FunctionBody(name=name, arguments=arguments)))
    return parsed, unparsed


def _dangling_tool_block(content: str) -> UnparsedToolCall | None:
    return detect_unterminated_tool_block(
        content, ((_TOOL_CALLS_BEGIN, _TOOL_CALLS_END), (_TOOL_CALL_BEGIN, _TOOL_CALL_END))
    )


def _with_header_suffix(rendered: RenderedMessage, tokens: list[int]) -> RenderedMessage:
    header = list(rendered.header.tokens) if rendered.header else []
    return RenderedMessage(header=EncodedTextChunk(tuple(header + tokens)), output=rendered.output)


class _DeepSeekV3BaseRenderer(Renderer):
    special_tokens = ("<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>")
    """Shared DeepSeek V3 rendering; use the thinking or disable-thinking subclass.

    ``strip_thinking_from_history`` (default, as Hugging Face does) drops old
    reasoning; turn it off for multi-turn RL so prompts extend each other.
    ``system_role_as_user`` lets system messages after the first become user turns.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        system_role_as_user: bool = False,
        strip_thinking_from_history: bool = True,
    ) -> None:
        super().__init__(tokenizer)
        self.system_role_as_user = system_role_as_user
        self.strip_thinking_from_history = strip_thinking_from_history

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header, text = self._header_and_text(message, ctx)
        if message.get("tool_calls"):
            text += _tool_calls_text(message["tool_calls"])
        tokens = self.encode(text)
        if message["role"] == "assistant" and message["content"]:
            tokens.append(self._end_message_token)
        output = [EncodedTextChunk(tuple(tokens))]
        if header:
            return RenderedMessage(header=EncodedTextChunk(tuple(header)), output=output)
        return RenderedMessage(output=output)

    def _header_and_text(self, message: Message, ctx: RenderContext) -> tuple[list[int], str]:
        role = message["role"]
        if role == "system":
            return self._system_header(ctx), ensure_text(message["content"])
        if role == "user":
            return [self._special_token("User")], ensure_text(message["content"])
        if role == "assistant":
            return self._assistant_header_and_text(message, ctx)
        if role == "tool":
            return self.encode(_TOOL_OUTPUT_BEGIN), ensure_text(message["content"]) + _TOOL_OUTPUT_END
        raise RendererError(f"Unsupported role: {role}")

    def _system_header(self, ctx: RenderContext) -> list[int]:
        """The template gathers the system prompt at the very start, with no role token."""
        if ctx.idx == 0:
            return []
        if self.system_role_as_user:
            return [self._special_token("User")]
        raise RendererError(
            "DeepSeek only supports system message at start. "
            "Use system_role_as_user=True to convert later system messages to user role."
        )

    def _assistant_header_and_text(self, message: Message, ctx: RenderContext) -> tuple[list[int], str]:
        strip = self.strip_thinking_from_history and not message.get("tool_calls") and not ctx.is_last
        text = _assistant_text(message["content"], strip)
        return ([] if _follows_tool(ctx) else [self._special_token("Assistant")]), text

    def _special_token(self, name: str) -> int:
        text = f"<｜{name}｜>"
        tokens = self.encode(text)
        if len(tokens) != 1:
            raise RendererError(f"expected {text} to be a single token, got {tokens}")
        return tokens[0]

    @property
    def _bos_tokens(self) -> list[int]:
        return [self._special_token("begin▁of▁sentence")]

    @property
    def _end_message_token(self) -> int:
        return self._special_token("end▁of▁sentence")

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Restore whatever the generation prompt prefilled; nothing by default."""
        return response

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Reasoning into thinking parts, tool-call tokens into tool calls; cut-off text stays raw."""
        message, termination = parse_response_for_stop_token(
            self._normalize_response_tokens(response), self.tokenizer, self._end_message_token
        )
        if not termination.is_clean:
            return message, termination
        content = self._extract_tool_calls(message, message["content"])
        parts = parse_think_blocks(content)
        message["content"] = parts if parts is not None else content
        return message, termination

    def _extract_tool_calls(self, message: Message, content: str) -> str:
        """Move tool calls from ``content`` onto ``message``; return the content left."""
        calls, unparsed = _parse_tool_calls(content)
        dangling = _dangling_tool_block(content)
        if dangling is not None:
            unparsed.append(dangling)
        if calls:
            message["tool_calls"] = calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        if calls or unparsed:
            content = _CALLS_SECTION_WITH_SPACE.sub("", content).strip()
        return content

    def create_conversation_prefix_with_tools(
        self, tools: Sequence[Mapping[str, Any]], system_prompt: str = ""
    ) -> list[Message]:
        """A system message describing ``tools`` the way DeepSeek V3.1 was trained to read them."""
        if not tools:
            return [{"role": "system", "content": system_prompt}]
        blocks = "\n".join(
            f"### {tool['name']}\nDescription: {tool['description']}\n\n"
            f"Parameters: {json.dumps(tool['parameters'])}"
            for tool in tools
        )
        tools_text = (
            f"\n\n## Tools\nYou have access to the following tools:\n\n{blocks}\n\n{_TOOLS_INSTRUCTIONS}"
        )
        return [{"role": "system", "content": system_prompt + tools_text}]


class DeepSeekV3ThinkingRenderer(_DeepSeekV3BaseRenderer):
    """Reasoning on: prompts end in ``<think>``; past replies get ``</think>`` once reasoning is stripped."""

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        rendered = super().render_message(message, ctx)
        if message["role"] != "assistant" or _follows_tool(ctx):
            return rendered
        if self.strip_thinking_from_history and not ctx.is_last:
            return _with_header_suffix(rendered, self.encode("</think>"))
        content = message.get("content", "")
        if ctx.is_last and content and not has_thinking(content):
            return self._with_empty_think_block(rendered)
        return rendered

    def _with_empty_think_block(self, rendered: RenderedMessage) -> RenderedMessage:
        """A target with no reasoning still shows the closed think block the template writes."""
        first, *rest = rendered.output
        tokens = self.encode("<think></think>") + list(first.tokens)
        return RenderedMessage(header=rendered.header, output=[EncodedTextChunk(tuple(tokens)), *rest])

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        """Prefill ``<think>`` to start reasoning, except after a tool result (tool use does not reason)."""
        if messages and messages[-1]["role"] == "tool":
            return super().build_generation_prompt(messages, role, prefill)
        return super().build_generation_prompt(messages, role, "<think>" + (prefill or ""))

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Sampled tokens lack the prefilled ``<think>``; put it back when the reply closes one."""
        think_open, think_close = self._single_token_id("<think>"), self._single_token_id("</think>")
        starts_with_think = bool(response) and response[0] == think_open
        if think_open is not None and not starts_with_think and think_close in response:
            return [think_open, *response]
        return response

    def _single_token_id(self, text: str) -> int | None:
        """The vocabulary id of ``text`` when it is one token (DeepSeek V3.1), else None (V3)."""
        convert = getattr(self.tokenizer, "convert_tokens_to_ids", None)
        if convert is not None:
            return convert(text)
        tokens = self.encode(text)
        return tokens[0] if len(tokens) == 1 else None


class DeepSeekV3DisableThinkingRenderer(_DeepSeekV3BaseRenderer):
    """Reasoning off: every assistant header ends in ``</think>`` and reasoning in content is dropped."""

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        if message["role"] != "assistant" or _follows_tool(ctx):
            return super().render_message(message, ctx)
        message = {**message, "content": _without_thinking(message["content"])}
        return _with_header_suffix(super().render_message(message, ctx), self.encode("</think>"))


def _without_thinking(content: str | list[ContentPart]) -> str:
    if isinstance(content, list):
        return "".join(part["text"] for part in content if part["type"] == "text")
    return _THINK_BLOCK.sub("", content)
