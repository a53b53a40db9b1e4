"""Plain ChatML, token for token what SmolLM2-Instruct's chat template produces.

    <|im_start|>system\\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>
    <|im_start|>user\\nHi<|im_end|>
    <|im_start|>assistant\\nHello!<|im_end|>

The template ends every message with ``<|im_end|>\\n``. Here the ``\\n`` opens
the next message's header instead, so what the model produces ends at its stop
token: a supervised example is ``apply_chat_template(messages)`` without its
single trailing ``\\n`` token, as the reference cookbook's renderers end examples
at the end-of-turn token. Generation prompts equal
``apply_chat_template(messages, add_generation_prompt=True)`` exactly.

When the first message is not a system message the template writes a default
one; the renderer reads that prompt off the tokenizer's ``chat_template`` and
inserts it the same way, weighted as a real system message would be.

Special-token text inside messages stays text, as ``apply_chat_template(...,
sanitize_control_tokens=True)`` keeps it (the default there turns it into
control tokens, so a message could forge ``<|im_end|>``). The template has no
tools and no reasoning, so tool calls and thinking parts are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.ports import EncodedTextChunk, ModelInput, Tokenizer
from tinkex_cookbook.train.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    TrainOnWhat,
    literal_encoder,
    parse_response_for_stop_token,
)

_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.DOTALL)
_TEMPLATE_CODE = re.compile(r"['\"]\s*[+~]|[+~]\s*['\"]|\{\{|\{%|\}\}|%\}")
_JINJA_ESCAPE = re.compile(r"\\(.)")
_JINJA_ESCAPES = {"n": "\n", "t": "\t"}


def default_system_prompt(chat_template: str | None) -> str:
    """The system message a ChatML template writes for conversations without one; ``""`` when it writes none.

    Only a literal message counts: ``'<|im_start|>system\\n' + messages[0]['content'] + ...``
    splices the conversation's own system message in, which is no default.
    """
    for match in _DEFAULT_SYSTEM.finditer(chat_template or ""):
        if not _TEMPLATE_CODE.search(match.group(1)):
            return _JINJA_ESCAPE.sub(lambda m: _JINJA_ESCAPES.get(m.group(1), m.group(1)), match.group(1))
    return ""


def _control_tokens(tokenizer: Tokenizer) -> list[str]:
    """The added tokens ``sanitize_control_tokens`` keeps as text: special ones, those the template writes."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_backend", None)
    added = getattr(backend, "get_added_tokens_decoder", None)
    if added is None:
        return []
    template = getattr(tokenizer, "chat_template", None) or ""
    return [
        token.content for token in added().values()
        if token.special or (token.content in template and not token.content.isspace())
    ]


def _splitter(tokens: Sequence[str]) -> re.Pattern[str] | None:
    """Longest first, so a control token wins over one it contains."""
    if not tokens:
        return None
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")


def _content_text(message: Message) -> str:
    """String content, or text parts joined; anything the template cannot write is refused."""
    role = message["role"]
    if message.get("tool_calls"):
        raise RendererError(
            f"chatml: a message with role {role!r} carries tool_calls, but SmolLM2's ChatML template has no "
            "tool-call format; use a renderer with tool support, or write the call into the content"
        )
    content = message["content"]
    if isinstance(content, str):
        return content
    kinds = sorted({part["type"] for part in content} - {"text"})
    if kinds:
        raise RendererError(
            f"chatml: a message with role {role!r} has {', '.join(kinds)} parts, but SmolLM2's ChatML "
            "template writes only text (no reasoning or tool blocks); drop those parts or use a renderer "
            "that supports them"
        )
    return "".join(part["text"] for part in content)


class ChatMLRenderer(Renderer):
    """ChatML as SmolLM2-Instruct's template writes it, default system prompt included.

    ``system_prompt`` replaces the default read off the tokenizer's ``chat_template``;
    ``""`` (or a tokenizer without a template) means no system message is inserted.
    """

    special_tokens = ("<|im_start|>", "<|im_end|>")
    renders_by_position = True

    def __init__(self, tokenizer: Tokenizer, system_prompt: str | None = None) -> None:
        super().__init__(tokenizer)
        template = getattr(tokenizer, "chat_template", None)
        self.system_prompt = default_system_prompt(template) if system_prompt is None else system_prompt
        self._literal: Callable[[str], list[int]] = literal_encoder(tokenizer)
        self._control = _splitter(_control_tokens(tokenizer))
        self._headers: dict[str, tuple[int, ...]] = {}
        end = self.encode("<|im_end|>")
        self._end_message_token = end[0] if len(end) == 1 else -1  # -1: get_renderer refuses such a tokenizer

    @property
    def has_extension_property(self) -> bool:
        return True

    def _with_system_prompt(
        self, messages: Sequence[Message], mode: TrainOnWhat | None = None
    ) -> list[Message]:
        """Insert the default system message where the template would (``customized`` needs it marked
        untrained, since it is no message of the dataset's)."""
        if not messages or not self.system_prompt or messages[0]["role"] == "system":
            return list(messages)
        system: Message = {"role": "system", "content": self.system_prompt}
        if mode is TrainOnWhat.CUSTOMIZED:
            system["trainable"] = False
        return [system, *messages]

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        return super().build_generation_prompt(self._with_system_prompt(messages), role, prefill)

    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE
    ) -> tuple[ModelInput, list[float]]:
        mode = TrainOnWhat(train_on_what)
        return super().build_supervised_example(self._with_system_prompt(messages, mode), mode)

    def _encode_body(self, text: str) -> list[int]:
        """``role\\ncontent`` as ``sanitize_control_tokens`` encodes it: control-token text on its own and
        literally, the text around it as it stands.

        Role and content are one string, because the BPE merges the header's ``\\n`` with
        content that opens with whitespace (``"\\n "`` and ``"\\n\\n"`` are single tokens).
        """
        if self._control is None or not self._control.search(text):
            return self.encode(text)
        ids: list[int] = []
        for index, piece in enumerate(self._control.split(text)):
            if piece:
                ids.extend(self._literal(piece) if index % 2 else self.encode(piece))
        return ids

    def _header_length(self, tokens: Sequence[int], header: str) -> int:
        """How many leading tokens lie wholly inside ``header``; one straddling into the content is output.

        Usually the header's own tokens lead unchanged; only a merge with the content needs decoding.
        """
        alone = self._headers.get(header)
        if alone is None:
            encoded = self.encode(header)
            alone = self._headers[header] = tuple(encoded) if self.tokenizer.decode(encoded) == header else ()
        if alone and tuple(tokens[: len(alone)]) == alone:
            return len(alone)
        count = 0
        while count < len(tokens) and header.startswith(self.tokenizer.decode(tokens[: count + 1])):
            count += 1
        return count

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        head = f"{message['role']}\n"
        tokens = self._encode_body(head + _content_text(message))
        split = self._header_length(tokens, head)
        opening = self.encode(("\n" if ctx.idx > 0 else "") + "<|im_start|>")
        return RenderedMessage(
            header=EncodedTextChunk((*opening, *tokens[:split])),
            output=[EncodedTextChunk(tuple(tokens[split:])), EncodedTextChunk((self._end_message_token,))],
        )

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        return parse_response_for_stop_token(response, self.tokenizer, self._end_message_token)
