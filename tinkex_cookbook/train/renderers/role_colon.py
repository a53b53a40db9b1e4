"""``User: ...`` / ``Assistant: ...`` plain-text format, for base models.

The stop sequence ``\\n\\nUser:`` straddles two messages: ``\\n\\n`` ends the
assistant's output and ``User:`` is the next header, so ``User:`` is kept as a
``stop_overlap`` that only the last message of a supervised example appends.
"""

from __future__ import annotations

from tinkex_cookbook.train.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ensure_text,
)

PREFIX, SUFFIX, STOP = " ", "\n\n", "\n\nUser:"


class RoleColonRenderer(Renderer):
    renders_by_position = True

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        overlap = "User:" if message["role"] == "assistant" else "<UNUSED>"
        return RenderedMessage(
            header=self.chunk(message["role"].capitalize() + ":"),
            output=[self.chunk(PREFIX + ensure_text(message["content"]) + SUFFIX)],
            stop_overlap=self.chunk(overlap),
        )

    def get_stop_sequences(self) -> list[str]:
        return [STOP]

    @property
    def _bos_tokens(self) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        return self.encode(bos) if bos else []

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Stop sequence: clean; EOS without it: clean for base models; anything else: malformed."""
        eos = self.tokenizer.eos_token_id
        ended_with_eos = eos is not None and bool(response) and response[-1] == eos
        text = self.tokenizer.decode(response[:-1] if ended_with_eos else response)
        pieces = text.split(STOP)
        message = {"role": "assistant", "content": pieces[0].removeprefix(PREFIX).removesuffix(SUFFIX)}
        if len(pieces) == 1:
            return message, ParseTermination.EOS if ended_with_eos else ParseTermination.MALFORMED
        if len(pieces) == 2 and not ended_with_eos:
            return message, ParseTermination.STOP_SEQUENCE
        return message, ParseTermination.MALFORMED
