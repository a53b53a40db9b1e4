"""GPT-OSS chat format (OpenAI Harmony), token for token as tinker-cookbook 0.6.1 renders it.

    <|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>analysis<|message|>...<|end|>
    <|start|>assistant<|channel|>final<|message|>Hello<|return|>

No newlines between messages; the last assistant message ends ``<|return|>``,
earlier ones ``<|end|>``. Reasoning goes in the ``analysis`` channel, answers in
``final``, tool calls in ``commentary`` addressed ``to=functions.NAME`` and ended
by ``<|call|>``. Tool results come back as
``<|start|>functions.NAME to=assistant<|channel|>commentary<|message|>...<|end|>``.
Like the reference, history keeps its analysis (nothing is stripped).
See https://cookbook.openai.com/articles/openai-harmony.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports import ModelInput, Tokenizer
from tinkex_cookbook.train.renderers.base import (
    UNTERMINATED_TOOL_BLOCK_ERROR,
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
    ensure_list,
    ensure_text,
)

logger = logging.getLogger(__name__)

ToolSpec = Mapping[str, Any]

_INTERNAL_SYSTEM_ROLE = "_gptoss_internal_system"
"""Renders as a real ``system`` message; a user's ``system`` message becomes ``developer``."""

_SYSTEM_PROMPT = (
    "You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: {current_date}\n\n"
    "Reasoning: {reasoning_effort}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)

_MESSAGE = "<|message|>"
_END_TOKENS = ("<|end|>", "<|call|>", "<|return|>")
_CHANNEL_RE = re.compile(r"<\|channel\|>([^<\s]+)")
_RECIPIENT_RE = re.compile(r"to=([^\s<]+)")
_CONSTRAIN_RE = re.compile(r"<\|constrain\|>\s*([^\s<]+)")


# --- TypeScript-style tool definitions (Harmony declares tools this way) ---------------------


def _json_type_to_typescript(schema: Mapping[str, Any]) -> str:
    """One JSON-schema type as TypeScript, since Harmony's developer message declares tools in it."""
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_json_type_to_typescript(s) for s in schema[key])
    json_type = schema.get("type", "any")
    if isinstance(json_type, list):
        return " | ".join(_json_type_to_typescript({"type": t}) for t in json_type)
    if json_type == "string" and "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    base_type = _base_typescript_type(json_type, schema)
    return f"{base_type} | null" if schema.get("nullable") else base_type


def _base_typescript_type(json_type: Any, schema: Mapping[str, Any]) -> str:
    """The non-union TypeScript name for a JSON type (objects and arrays recurse)."""
    if json_type in ("string", "boolean"):
        return json_type
    if json_type in ("number", "integer"):
        return "number"
    if json_type == "array":
        return f"{_json_type_to_typescript(schema.get('items', {}))}[]"
    if json_type == "object":
        return _json_schema_to_typescript(schema)
    return "any"


def _json_schema_to_typescript(schema: Mapping[str, Any]) -> str:
    """An object schema as an inline ``{ a: T, b?: U }`` type."""
    if schema.get("type") != "object":
        return "any"
    required = set(schema.get("required", []))
    fields = [
        f"{name}{'' if name in required else '?'}: {_json_type_to_typescript(prop)}"
        for name, prop in schema.get("properties", {}).items()
    ]
    return "{ " + ", ".join(fields) + " }"


def _schema_comments(schema: Mapping[str, Any]) -> list[str]:
    """A property's title, description and examples, shown to the model as ``//`` comments."""
    comments: list[str] = []
    if schema.get("title"):
        comments += [str(schema["title"]), ""]
    if schema.get("description"):
        comments.append(str(schema["description"]))
    if schema.get("examples"):
        comments.append("Examples:")
        comments += [f"- {json.dumps(example)}" for example in schema["examples"]]
    return comments


def _parameter_lines(name: str, prop: Mapping[str, Any], required: set[str]) -> list[str]:
    """One parameter's comment lines and its ``name?: type,`` line."""
    lines = [f"// {comment}" for comment in _schema_comments(prop)]
    default = f" // default: {json.dumps(prop['default'])}" if "default" in prop else ""
    optional = "" if name in required else "?"
    lines.append(f"{name}{optional}: {_json_type_to_typescript(prop)},{default}")
    return lines


def _format_parameters_block(schema: Mapping[str, Any]) -> str:
    """A function's parameters as the ``(_: { ... })`` block Harmony uses."""
    if schema.get("type") != "object" or not schema.get("properties"):
        return "()"
    header = "(_:" + (f" // {schema['description']}" if schema.get("description") else "")
    required = set(schema.get("required", []))
    lines = [header, "{"]
    for name, prop in schema.get("properties", {}).items():
        lines += _parameter_lines(name, prop, required)
    lines.append("})")
    return "\n".join(lines)


def _format_tool_definition(tool: ToolSpec) -> str:
    """``// description`` then ``type name = (...) => any;``."""
    lines = [f"// {tool['description']}"] if tool.get("description") else []
    lines.append(f"type {tool['name']} = {_format_parameters_block(tool.get('parameters') or {})} => any;")
    return "\n".join(lines)


# --- Parsing helpers ------------------------------------------------------------------------


def _first_end(content: str, start: int) -> tuple[int, str]:
    """Where the message body starting at ``start`` ends, and the token that ends it ("" if none)."""
    end_idx, end_token = len(content), ""
    for token in _END_TOKENS:
        token_idx = content.find(token, start)
        if token_idx != -1 and token_idx < end_idx:
            end_idx, end_token = token_idx, token
    return end_idx, end_token


def _match(pattern: re.Pattern[str], header: str) -> str | None:
    found = pattern.search(header)
    return found.group(1) if found else None


def _parse_harmony_messages(content: str) -> list[dict[str, str | None]]:
    """Split decoded Harmony text into messages (channel, recipient, body, raw text).

    Plain find/rfind rather than one regex, as the reference does, so a partial
    or oddly ordered header still yields what can be read from it.
    """
    messages: list[dict[str, str | None]] = []
    idx = 0
    while (message_idx := content.find(_MESSAGE, idx)) != -1:
        header_start = content.rfind("<|start|>", idx, message_idx)
        header_start = idx if header_start == -1 else header_start
        header = content[header_start:message_idx]
        end_idx, end_token = _first_end(content, message_idx + len(_MESSAGE))
        messages.append({
            "channel": _match(_CHANNEL_RE, header),
            "recipient": _match(_RECIPIENT_RE, header),
            "content_type": _match(_CONSTRAIN_RE, header),
            "content": content[message_idx + len(_MESSAGE) : end_idx],
            "raw_text": content[header_start : end_idx + len(end_token)],  # no end token: to the end
        })
        idx = end_idx + len(end_token)
    return messages


def _parse_tool_message(recipient: str, body: str, raw_text: str) -> ToolCall | UnparsedToolCall:
    """A ``to=functions.NAME`` message: a call if its body is JSON, else kept as unparsed."""
    wrong = problem(body)[1]  # deep nesting and huge integers too, not only bad syntax
    if wrong is not None:
        return UnparsedToolCall(raw_text=raw_text, error=f"Invalid JSON: the arguments {wrong}")
    name = recipient.split("functions.", 1)[1]
    return ToolCall(function=ToolCall.FunctionBody(name=name, arguments=body.strip()), id=None)


def _parse_harmony_output(
    content: str,
) -> tuple[list[ContentPart], list[ToolCall], list[UnparsedToolCall]]:
    """Analysis becomes thinking, final/commentary become text, ``functions.*`` messages tool calls."""
    parts: list[ContentPart] = []
    tool_calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for msg in _parse_harmony_messages(content):
        body, recipient, channel = msg["content"] or "", msg["recipient"], msg["channel"]
        if not body.strip():
            continue
        if recipient and recipient.startswith("functions."):
            call = _parse_tool_message(recipient, body, msg["raw_text"] or "")
            if isinstance(call, ToolCall):
                tool_calls.append(call)
            else:
                unparsed.append(call)
        elif channel == "analysis":
            parts.append({"type": "thinking", "thinking": body})
        elif channel in ("final", "commentary"):
            parts.append({"type": "text", "text": body})
    return parts, tool_calls, unparsed


def _detect_dangling_tool_block(
    content: str, tool_calls: list[ToolCall], unparsed: list[UnparsedToolCall]
) -> UnparsedToolCall | None:
    """A ``to=functions.`` header that yielded no call, so tool intent is not silently lost as text."""
    if content.count("to=functions.") <= len(tool_calls) + len(unparsed):
        return None
    start = content.rfind("<|start|>")
    return UnparsedToolCall(
        raw_text=content[start:] if start != -1 else content,
        error=(
            f"{UNTERMINATED_TOOL_BLOCK_ERROR}: 'to=functions.' tool-call header "
            "without a parsable arguments payload"
        ),
    )


# --- Renderer -------------------------------------------------------------------------------


class GptOssRenderer(Renderer):
    special_tokens = ("<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|return|>", "<|call|>")
    """Harmony format; optionally prepends OpenAI's system prompt (date + reasoning effort)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        use_system_prompt: bool = False,
        reasoning_effort: str | None = None,
        current_date: str | None = None,
    ) -> None:
        super().__init__(tokenizer)
        if use_system_prompt != (reasoning_effort is not None):
            raise RendererError("GptOssRenderer: set reasoning_effort if and only if use_system_prompt=True")
        self.use_system_prompt = use_system_prompt
        self.reasoning_effort = reasoning_effort
        self.current_date = current_date

    # --- rendering ---

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        if role == "tool":
            return self._render_tool_result(message)
        if role == "assistant":
            body, has_tool_calls = self._assistant_body(message)
            end = "" if has_tool_calls else ("<|return|>" if ctx.is_last else "<|end|>")
            return self._rendered(f"<|start|>{role}", body + end)
        text = ensure_text(message["content"])
        if role == "system":  # a user's system message is a developer message, per the HF template
            return self._rendered("<|start|>developer", f"<|message|># Instructions\n\n{text}\n\n<|end|>")
        header_role = "system" if role == _INTERNAL_SYSTEM_ROLE else role
        return self._rendered(f"<|start|>{header_role}", f"<|message|>{text}<|end|>")

    def _rendered(self, header: str, output: str) -> RenderedMessage:
        return RenderedMessage(header=self.chunk(header), output=[self.chunk(output)])

    def _assistant_body(self, message: Message) -> tuple[str, bool]:
        """Analysis, then either tool calls (with any text as a commentary preamble) or the final answer."""
        parts = ensure_list(message["content"])
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        thinking = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
        tool_calls = [as_tool_call(call) for call in message.get("tool_calls") or []]
        body = f"<|channel|>analysis<|message|>{thinking}<|end|><|start|>assistant" if thinking else ""
        if not tool_calls:
            return body + f"<|channel|>final<|message|>{text}", False
        if text:
            body += f"<|channel|>commentary<|message|>{text}<|end|><|start|>assistant"
        return body + self._render_tool_calls(tool_calls), True

    @staticmethod
    def _render_tool_calls(tool_calls: list[ToolCall]) -> str:
        """Each call its own commentary message ending ``<|call|>``, the header reopened between calls."""
        return "<|start|>assistant".join(
            f" to=functions.{call.function.name}<|channel|>commentary <|constrain|>json<|message|>"
            f"{call.function.arguments}<|call|>"
            for call in tool_calls
        )

    def _render_tool_result(self, message: Message) -> RenderedMessage:
        """The tool speaks as ``functions.NAME``; we are stateless, so ``name`` must be on the message."""
        name = message.get("name", "")
        if not name:
            warnings.warn(
                "tool message has no 'name': GptOssRenderer needs it to render the result "
                "(rendering functions.unknown); add {'role': 'tool', 'name': ..., ...}",
                UserWarning, stacklevel=3,
            )
            name = "unknown"
        if not name.startswith("functions."):
            name = f"functions.{name}"
        content = ensure_text(message["content"])
        output = f"<|channel|>commentary<|message|>{content}<|end|>"
        return self._rendered(f"<|start|>{name} to=assistant", output)

    # --- system prompt ---

    def _system_message(self) -> Message | None:
        """OpenAI's system prompt, when configured; dated today unless ``current_date`` pins it."""
        if not self.use_system_prompt:
            return None
        date = self.current_date if self.current_date is not None else datetime.date.today().isoformat()
        content = _SYSTEM_PROMPT.format(current_date=date, reasoning_effort=self.reasoning_effort)
        return {"role": _INTERNAL_SYSTEM_ROLE, "content": content}

    def _with_system_message(self, messages: Sequence[Message]) -> list[Message]:
        """Prepend the system prompt. The reference warns on a leading user system message;
        we log instead, since that warning would break callers (and tests) running ``-W error``."""
        system = self._system_message()
        if system is None:
            return list(messages)
        if messages and messages[0]["role"] == "system":
            logger.warning(
                "use_system_prompt=True but the messages already start with a system message; "
                "both will be rendered (set use_system_prompt=False or drop the system message)"
            )
        return [system, *messages]

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        return super().build_generation_prompt(self._with_system_message(messages), role, prefill)

    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE
    ) -> tuple[ModelInput, list[float]]:
        return super().build_supervised_example(self._with_system_message(messages), train_on_what)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A system message routing tools to commentary, then a developer message with
        the instructions and the tools declared TypeScript-style in ``namespace functions``."""
        messages: list[Message] = []
        if tools:
            messages.append({
                "role": _INTERNAL_SYSTEM_ROLE,
                "content": "Calls to these tools must go to the commentary channel: 'functions'.",
            })
        sections = [f"# Instructions\n\n{system_prompt}"] if system_prompt else []
        if tools:
            definitions = "\n\n".join(_format_tool_definition(tool) for tool in tools)
            sections.append(
                "# Tools\n\n## functions\n\nnamespace functions {\n\n"
                f"{definitions}\n\n}} // namespace functions"
            )
        if sections:
            messages.append({"role": "developer", "content": "\n\n".join(sections)})
        return messages

    # --- sampling and parsing ---

    def _special(self, text: str) -> int:
        tokens = self.encode(text)
        if len(tokens) != 1:
            raise RendererError(f"expected {text} to be a single token, got {len(tokens)}")
        return tokens[0]

    @property
    def _return_token(self) -> int:
        return self._special("<|return|>")

    @property
    def _call_token(self) -> int:
        return self._special("<|call|>")

    def get_stop_sequences(self) -> list[int]:
        """``<|return|>`` ends an answer, ``<|call|>`` a tool call; sampling stops at either."""
        return [self._return_token, self._call_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        stop_idx = self._stop_index(response)
        if stop_idx is None:
            cut_off: Message = {"role": "assistant", "content": self.tokenizer.decode(response)}
            return cut_off, ParseTermination.MALFORMED
        text = self.tokenizer.decode(response[:stop_idx])
        parts, tool_calls, unparsed = _parse_harmony_output(text)
        dangling = _detect_dangling_tool_block(text, tool_calls, unparsed)
        if dangling is not None:
            unparsed = [*unparsed, dangling]
        message: Message = {"role": "assistant", "content": parts if parts else text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        return message, ParseTermination.STOP_SEQUENCE

    def _stop_index(self, response: list[int]) -> int | None:
        """The first stop token; more than one of a kind means sampling ignored our stop sequences."""
        found = [i for i in (self._first_single(response, self._return_token, "<|return|>"),
                             self._first_single(response, self._call_token, "<|call|>")) if i is not None]
        return min(found, default=None)

    @staticmethod
    def _first_single(response: list[int], token: int, text: str) -> int | None:
        count = response.count(token)
        if count > 1:
            raise RendererError(
                f"response holds {count} {text} tokens, expected at most 1: sample with this "
                "renderer's get_stop_sequences() so sampling stops at the first"
            )
        return response.index(token) if count else None


def _with_reasoning(effort: str) -> Callable[[Tokenizer], GptOssRenderer]:
    """A factory for the Harmony renderer with OpenAI's system prompt at one reasoning effort."""
    return partial(GptOssRenderer, use_system_prompt=True, reasoning_effort=effort)


low_reasoning = _with_reasoning("low")
medium_reasoning = _with_reasoning("medium")
high_reasoning = _with_reasoning("high")
