"""Moonshot AI's Kimi K2 chat format (ported from tinker-cookbook 0.6.1).

    <|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>
    <|im_user|>user<|im_middle|>What can you help me with?<|im_end|>
    <|im_assistant|>assistant<|im_middle|><think>reasoning</think>I can help you with...<|im_end|>

Historical assistant messages get an empty ``<think></think>``; the messages after the
last assistant message that did not call a tool keep their reasoning. Like the
HuggingFace template, a default system message is injected when none is given.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports import ModelInput, Tokenizer
from tinkex_cookbook.train.renderers.base import (
    ContentPart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ToolCall,
    TrainOnWhat,
    UnparsedToolCall,
    as_tool_call,
    detect_unterminated_tool_block,
    ensure_list,
    ensure_text,
    parse_response_for_stop_token,
    parse_think_blocks,
)

_TOOL_CALLS_SECTION_RE = re.compile(
    r"<\|tool_calls_section_begin\|>(.*?)<\|tool_calls_section_end\|>"
    r"|<\|tool_call_section_begin\|>(.*?)<\|tool_call_section_end\|>",
    re.DOTALL,
)
_TOOL_CALL_RE = re.compile(
    r"<\|tool_call_begin\|>\s*([^<]+:\d+)\s*<\|tool_call_argument_begin\|>\s*(.*?)\s*<\|tool_call_end\|>",
    re.DOTALL,
)
_TOOL_BLOCK_MARKERS = (
    ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    ("<|tool_call_section_begin|>", "<|tool_call_section_end|>"),
    ("<|tool_call_begin|>", "<|tool_call_end|>"),
)
_ROLE_TOKENS = {"user": "<|im_user|>", "assistant": "<|im_assistant|>"}


def _split_tool_calls_section(content: str) -> tuple[str, str | None]:
    """Text before the first tool-calls section, and that section's body (None if absent)."""
    match = _TOOL_CALLS_SECTION_RE.search(content)
    if not match:
        return content, None
    section = match.group(1) if match.group(1) is not None else match.group(2)
    return content[: match.start()], section


def _detect_dangling_tool_block(content: str) -> UnparsedToolCall | None:
    """First dangling section or call, so a cut-off tool-call intent is reported, not lost."""
    return detect_unterminated_tool_block(content, _TOOL_BLOCK_MARKERS)


def _extract_tool_name(tool_id: str) -> str:
    """``functions.get_weather:0`` -> ``get_weather``: ids carry the name, calls do not."""
    if not tool_id:
        return ""
    name = tool_id.split(":", 1)[0]
    return name.split(".", 1)[1] if "." in name else name


def _parse_tool_call(match: re.Match[str]) -> ToolCall | UnparsedToolCall:
    """One ``<|tool_call_begin|>`` block; arguments must be valid JSON to count as a call."""
    tool_id, arguments = match.group(1).strip(), match.group(2).strip()
    wrong = problem(arguments)[1]  # deep nesting and huge integers too, not only bad syntax
    if wrong is not None:
        return UnparsedToolCall(raw_text=match.group(0), error=f"Invalid JSON: the arguments {wrong}")
    return ToolCall(
        function=ToolCall.FunctionBody(name=_extract_tool_name(tool_id), arguments=arguments),
        id=tool_id or None,
    )


def _parse_tool_calls_section(section: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    """Every call in a section, split into the parsed and the unparseable."""
    results = [_parse_tool_call(match) for match in _TOOL_CALL_RE.finditer(section)]
    parsed = [r for r in results if isinstance(r, ToolCall)]
    return parsed, [r for r in results if isinstance(r, UnparsedToolCall)]


def _render_tool_calls(tool_calls: Sequence[ToolCall | Mapping[str, Any]]) -> str:
    """The tool-calls section; calls without an id get ``functions.<name>:<index>`` as HF does."""
    text = "<|tool_calls_section_begin|>"
    for index, raw in enumerate(tool_calls):
        call = as_tool_call(raw)
        tool_id = call.id or f"functions.{call.function.name}:{index}"
        arguments = call.function.arguments
        text += f"<|tool_call_begin|>{tool_id}<|tool_call_argument_begin|>{arguments}<|tool_call_end|>"
    return text + "<|tool_calls_section_end|>"


def _tool_header(message: Message) -> str:
    """Tool results speak as their function and name the call they answer."""
    name = message.get("name")
    if not name:
        warnings.warn(
            "Tool message missing 'name' field. Using 'tool' as fallback. "
            "Consider setting 'name' to match the tool function name for better context.",
            UserWarning,
            stacklevel=5,
        )
        name = "tool"
    tool_call_id = message.get("tool_call_id", "")
    if not tool_call_id:
        warnings.warn(
            "Tool message missing 'tool_call_id' field. KimiK2Renderer requires 'tool_call_id' "
            "to render tool results correctly. The value should match ToolCall.id from the "
            "assistant's tool_calls.",
            UserWarning,
            stacklevel=5,
        )
    return f"<|im_system|>{name}<|im_middle|>## Return of {tool_call_id}\n"


def _header_text(message: Message) -> str:
    """Role marker; system, tool_declare and unknown roles all use the system token."""
    role = message["role"]
    if role == "tool":
        return _tool_header(message)
    return f"{_ROLE_TOKENS.get(role, '<|im_system|>')}{role}<|im_middle|>"


def _parse_content(message: Message, content: str) -> None:
    """Move tool calls and think blocks out of decoded text into structured fields, in place."""
    text, section = _split_tool_calls_section(content)
    if section is not None:
        tool_calls, unparsed = _parse_tool_calls_section(section)
        if tool_calls:
            message["tool_calls"] = tool_calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
    dangling = _detect_dangling_tool_block(content)
    if dangling is not None:
        message["unparsed_tool_calls"] = [*message.get("unparsed_tool_calls", []), dangling]
    parts = parse_think_blocks(text)
    message["content"] = parts if parts is not None else text


class KimiK2Renderer(Renderer):
    special_tokens = ("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>")
    DEFAULT_SYSTEM_PROMPT = "You are Kimi, an AI assistant created by Moonshot AI."

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True) -> None:
        """``strip_thinking_from_history=False`` keeps old reasoning, for multi-turn RL."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history

    def _default_system(self) -> Message:
        return {"role": "system", "content": self.DEFAULT_SYSTEM_PROMPT}

    def _ensure_system_message(self, messages: Sequence[Message]) -> list[Message]:
        """Inject the default system message where HF's template would (after a tool_declare)."""
        messages = list(messages)
        if not messages:
            return [self._default_system()]
        first_role = messages[0]["role"]
        if first_role == "tool_declare":
            if len(messages) >= 2 and messages[1]["role"] == "system":
                return messages
            return [messages[0], self._default_system(), *messages[1:]]
        if first_role != "system":
            return [self._default_system(), *messages]
        return messages

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """Header is the role marker; output is the content through ``<|im_end|>``."""
        header = self.chunk(_header_text(message))
        if message["role"] == "assistant":
            return RenderedMessage(header=header, output=[self.chunk(self._assistant_text(message, ctx))])
        content = message["content"]
        if isinstance(content, list) and not (len(content) == 1 and content[0]["type"] == "text"):
            raise RendererError("Multipart/Image content encoding is not supported for Kimi K2 renderer")
        return RenderedMessage(header=header, output=[self.chunk(ensure_text(content) + "<|im_end|>")])

    def _assistant_text(self, message: Message, ctx: RenderContext) -> str:
        """Reasoning is kept only in the produced turn (or everywhere when not stripping history)."""
        parts: list[ContentPart] = ensure_list(message["content"])
        thinking = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        keep = ctx.in_last_assistant_turn or not self.strip_thinking_from_history
        result = (f"<think>{thinking}</think>" if keep and thinking else "<think></think>") + text
        if message.get("tool_calls"):
            result += _render_tool_calls(message["tool_calls"])
        return result + "<|im_end|>"

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        """Prompt with the default system message injected, as HF's template does at inference."""
        with_system = self._ensure_system_message(messages)
        return super().build_generation_prompt(with_system, role=role, prefill=prefill)

    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE
    ) -> tuple[ModelInput, list[float]]:
        """Same injection as the prompt, so training sees what inference sees."""
        return super().build_supervised_example(self._ensure_system_message(messages), train_on_what)

    def build_supervised_examples(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_TURN
    ) -> list[tuple[ModelInput, list[float]]]:
        """One example per user turn: history loses its reasoning, so one sequence cannot serve all."""
        mode = TrainOnWhat(train_on_what)
        if mode in (TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.LAST_ASSISTANT_TURN):
            return [self.build_supervised_example(messages, mode)]
        if mode is not TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            warnings.warn(
                "WARNING: Using train_on_what=ALL_MESSAGES/ALL_TOKENS/ALL_USER_AND_SYSTEM_MESSAGES/"
                "CUSTOMIZED with a renderer that does not satisfy the extension property "
                "(has_extension_property=False). The behavior is we apply the same `train_on_what` "
                "to all turns. This may not be the desired behavior.",
                UserWarning,
                stacklevel=2,
            )
        per_turn = TrainOnWhat.LAST_ASSISTANT_TURN if mode is TrainOnWhat.ALL_ASSISTANT_MESSAGES else mode
        user_indices = [i for i, m in enumerate(messages) if m["role"] == "user"]
        ends = [*user_indices[1:], len(messages)]
        return [self.build_supervised_example(messages[:end], per_turn) for end in ends]

    def _last_assistant_turn_start_index(self, messages: Sequence[Message]) -> int:
        """The turn starts after the last assistant message that called no tool.

        Kimi keeps the reasoning of every assistant message after that point, so a turn
        spans the whole assistant/tool exchange, not just the messages after the last user.
        """
        for index in range(len(messages) - 1, -1, -1):
            if messages[index]["role"] == "assistant" and not messages[index].get("tool_calls"):
                return index + 1
        return 0

    @property
    def _end_message_token(self) -> int:
        tokens = self.encode("<|im_end|>")
        if len(tokens) != 1:
            raise RendererError(f"Expected single token for <|im_end|>, got {len(tokens)}")
        return tokens[0]

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Cut at ``<|im_end|>``, then lift think blocks and tool calls; truncated text stays raw."""
        stop = self._end_message_token
        message, termination = parse_response_for_stop_token(response, self.tokenizer, stop)
        if termination.is_clean:
            _parse_content(message, message["content"])
        return message, termination

    def create_conversation_prefix_with_tools(
        self, tools: list[Mapping[str, Any]], system_prompt: str = ""
    ) -> list[Message]:
        """tool_declare (sorted-key compact JSON, as Kimi's own template) before the system message."""
        messages: list[Message] = []
        if tools:
            payload = [{"type": "function", "function": tool} for tool in tools]
            declaration = json.dumps(payload, separators=(",", ":"), sort_keys=True)
            messages.append({"role": "tool_declare", "content": declaration})
        messages.append({"role": "system", "content": system_prompt or self.DEFAULT_SYSTEM_PROMPT})
        return messages
