"""Qwen3 chat format (hybrid thinking), matching Hugging Face's ``apply_chat_template``.

    <|im_start|>system\\nBe brief.<|im_end|>
    <|im_start|>user\\nHi<|im_end|>
    <|im_start|>assistant\\n<think>\\nreasoning\\n</think>\\n\\nHello!<|im_end|>

Tool responses are written as user turns wrapped in ``<tool_response>``; tool
calls as JSON inside ``<tool_call>``. Reasoning is stripped from assistant turns
in history, as the template does, so the renderer lacks the extension property
unless ``strip_thinking_from_history=False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.jsonio import parse
from tinkex_cookbook.ports import EncodedTextChunk, Tokenizer
from tinkex_cookbook.train.renderers.base import (
    ContentPart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ToolCall,
    as_tool_call,
    detect_unterminated_tool_block,
    has_thinking,
    literal_encoder,
    parse_content_blocks,
    parse_response_for_stop_token,
    remove_thinking,
)

_TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tool_lines}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def _frame_thinking(reasoning: str) -> str:
    """The template pads the produced turn's block, and writes it even when empty."""
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"


def _unframe_thinking(parts: list[ContentPart]) -> list[ContentPart]:
    """Undo ``_frame_thinking`` so render -> parse is the identity; an empty block means no reasoning."""
    out: list[ContentPart] = []
    after_block = False
    for part in parts:
        if part["type"] == "thinking":
            reasoning = part["thinking"].strip("\n")
            if reasoning:
                out.append({"type": "thinking", "thinking": reasoning})
            after_block = True
        elif part["type"] == "text":
            out.append({"type": "text", "text": part["text"].lstrip("\n") if after_block else part["text"]})
            after_block = False
        else:
            out.append(part)
            after_block = False
    return out


def _tool_call_payload(call: ToolCall | Mapping[str, Any]) -> dict[str, object]:
    """The flat ``{"name", "arguments"}`` object Qwen writes inside ``<tool_call>``."""
    call = as_tool_call(call)
    where = f"tool call {call.function.name!r}: its arguments"
    return {"name": call.function.name, "arguments": parse(call.function.arguments, where, RendererError)}


def _render_tool_calls(calls: Sequence[ToolCall | Mapping[str, Any]]) -> str:
    return "\n".join(f"<tool_call>\n{json.dumps(_tool_call_payload(call))}\n</tool_call>" for call in calls)


def _render_parts(parts: list[ContentPart], frames: bool) -> str:
    """Structured content in order; text after a framed block loses the newlines the block supplies."""
    rendered: list[str] = []
    after_block = False
    for part in parts:
        if part["type"] == "thinking":
            thinking = part["thinking"]
            rendered.append(_frame_thinking(thinking) if frames else f"<think>{thinking}</think>")
            after_block = frames
        elif part["type"] == "text":
            rendered.append(part["text"].lstrip("\n") if after_block else part["text"])
            after_block = False
    return "".join(rendered)


class Qwen3Renderer(Renderer):
    """Qwen3 with thinking enabled (the template's default)."""

    frames_thinking = True
    special_tokens = ("<|im_start|>", "<|im_end|>")

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True) -> None:
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history
        self._encode_content = literal_encoder(tokenizer)

    @property
    def has_extension_property(self) -> bool:
        """Stripping reasoning from history rewrites earlier turns, so prompts stop being prefixes."""
        return not self.strip_thinking_from_history

    def _frames_produced_turn(self, message: Message, ctx: RenderContext) -> bool:
        """The template frames only turns after the last user message; with no user message, none.

        Keeping history's reasoning frames every assistant turn alike, so a turn
        renders the same wherever it sits (the extension property).
        """
        if not self.frames_thinking or message["role"] != "assistant" or ctx.last_user_index < 0:
            return False
        return ctx.is_last or not self.strip_thinking_from_history

    def _render_content(self, message: Message, ctx: RenderContext, frames: bool) -> str:
        content = message["content"]
        if isinstance(content, list):
            if self.strip_thinking_from_history and message["role"] == "assistant" and not ctx.is_last:
                content = remove_thinking(content)
            return _render_parts(content, frames)
        if frames and "</think>" in content:
            reasoning, _, rest = content.partition("</think>")
            return _frame_thinking(reasoning.rpartition("<think>")[2]) + rest.lstrip("\n")
        return content

    def _render_body(self, message: Message, ctx: RenderContext) -> str:
        """Content, then the empty block a produced turn gets, tool wrapping, and tool calls."""
        frames = self._frames_produced_turn(message, ctx)
        text = self._render_content(message, ctx, frames)
        body = text
        if frames and not has_thinking(message["content"]):
            body = _frame_thinking("") + text.lstrip("\n")
        if message["role"] == "tool":
            body = f"<tool_response>\n{body}\n</tool_response>"
        if "tool_calls" in message:
            body += ("\n" if text else "") + _render_tool_calls(message["tool_calls"])
        return body

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = "user" if message["role"] == "tool" else message["role"]
        newline = "\n" if ctx.idx > 0 else ""
        header = self.chunk(f"{newline}<|im_start|>{role}\n")
        body = EncodedTextChunk(tuple(self._encode_content(self._render_body(message, ctx))))
        return RenderedMessage(header=header, output=[body, EncodedTextChunk((self._end_message_token,))])

    @property
    def _end_message_token(self) -> int:
        (token,) = self.encode("<|im_end|>")
        return token

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Split reasoning and tool calls out of a cleanly ended response; a cut-off one stays raw text."""
        stop = self._end_message_token
        message, termination = parse_response_for_stop_token(response, self.tokenizer, stop)
        if not termination.is_clean:
            return message, termination
        content = message["content"]
        parsed = parse_content_blocks(content)
        if parsed is not None:
            parts, calls = parsed
            message["content"] = _unframe_thinking(parts) if self.frames_thinking else parts
            _add_calls(message, "tool_calls", [c for c in calls if isinstance(c, ToolCall)])
            _add_calls(message, "unparsed_tool_calls", [c for c in calls if not isinstance(c, ToolCall)])
        dangling = detect_unterminated_tool_block(content, (("<tool_call>", "</tool_call>"),))
        if dangling is not None:
            message["unparsed_tool_calls"] = [*message.get("unparsed_tool_calls", []), dangling]
        return message, termination

    def create_conversation_prefix_with_tools(
        self, tools: Sequence[Mapping[str, Any]], system_prompt: str = ""
    ) -> list[Message]:
        """A system message listing the tools the way Qwen3's template does (``tojson`` spacing).

        With no tools a system prompt still gets the blank-line separator, as the reference writes it.
        """
        tool_lines = "\n".join(
            json.dumps({"type": "function", "function": tool}, separators=(", ", ": ")) for tool in tools
        )
        tools_text = _TOOLS_PROMPT.format(tool_lines=tool_lines) if tools else ""
        content = f"{system_prompt}\n\n{tools_text}" if system_prompt else tools_text
        return [{"role": "system", "content": content}]


def _add_calls(message: Message, key: str, calls: list[Any]) -> None:
    if calls:
        message[key] = calls


class Qwen3DisableThinkingRenderer(Qwen3Renderer):
    """Qwen3 with ``enable_thinking=False``: the prompt closes an empty think block, so no reasoning."""

    disables_thinking = True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """Refuse a produced turn when no user message exists.

        The template then writes no empty block on that turn, but the generation
        prompt always does, so the example would train after a prompt it never contains.
        """
        produced = message["role"] == "assistant" and ctx.is_last and message.get("content")
        if produced and ctx.last_user_index < 0:
            raise RendererError(
                "this conversation has no user message, so Qwen3's template writes no empty think "
                "block on the produced turn, but the generation prompt always opens one; add a user "
                "message, or render with thinking enabled"
            )
        return super().render_message(message, ctx)

    def _get_generation_suffix(self, role: str, ctx: RenderContext) -> list[int]:
        """The empty block is part of the prompt, so sampling starts after it."""
        newline = "\n" if ctx.idx > 0 else ""
        return self.encode(f"{newline}<|im_start|>{role}\n<think>\n\n</think>\n\n")
