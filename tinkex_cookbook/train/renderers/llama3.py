"""Llama 3 chat format (no tool calling: its bare-JSON tool calls cannot be told from content).

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>...
"""

from __future__ import annotations

from tinkex_cookbook.train.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ensure_text,
    parse_response_for_stop_token,
)


class Llama3Renderer(Renderer):
    renders_by_position = True
    special_tokens = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header = self.chunk(f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n")
        return RenderedMessage(header=header, output=[self.chunk(ensure_text(message["content"]) + "<|eot_id|>")])

    @property
    def _bos_tokens(self) -> list[int]:
        return self.encode("<|begin_of_text|>")

    @property
    def _end_message_token(self) -> int:
        (token,) = self.encode("<|eot_id|>")
        return token

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        return parse_response_for_stop_token(response, self.tokenizer, self._end_message_token)
