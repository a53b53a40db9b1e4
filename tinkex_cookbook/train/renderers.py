"""Chat renderers: conversations -> tokens, with per-token training weights.

A renderer turns each message into a header (role markers, never trained
unless ``all_tokens``) and a body (content plus end-of-turn marker, trained
when ``TrainOnWhat`` selects the message). Renderers are looked up by name;
``register_renderer`` adds your own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from tinkex_cookbook.errors import DatasetError, UnknownNameError, choices
from tinkex_cookbook.ports import ModelInput, Tokenizer

Message = dict[str, Any]


class TrainOnWhat(str, Enum):
    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


class Renderer(Protocol):
    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    ) -> tuple[ModelInput, list[float]]: ...

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput: ...

    def get_stop_sequences(self) -> list[int] | list[str]: ...


def message_is_trained(messages: Sequence[Message], index: int, mode: TrainOnWhat) -> bool:
    """Whether ``messages[index]``'s body carries weight 1 under ``mode``."""
    role = messages[index]["role"]
    if mode in (TrainOnWhat.ALL_MESSAGES, TrainOnWhat.ALL_TOKENS):
        return True
    if mode is TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        return role == "assistant"
    if mode is TrainOnWhat.LAST_ASSISTANT_MESSAGE:
        return role == "assistant" and index == len(messages) - 1
    if mode is TrainOnWhat.LAST_ASSISTANT_TURN:
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        return role == "assistant" and index > last_user
    if mode is TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
        return role in ("user", "system")
    return bool(messages[index].get("trainable", False))


@dataclass
class TemplateRenderer:
    """A renderer defined by string templates; special tokens are encoded as text."""

    tokenizer: Tokenizer
    bos: str
    header: str
    body: str
    stop: str

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def build_supervised_example(
        self, messages: Sequence[Message], train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    ) -> tuple[ModelInput, list[float]]:
        all_tokens = train_on_what is TrainOnWhat.ALL_TOKENS
        tokens = self._encode(self.bos)
        weights = [float(all_tokens)] * len(tokens)
        for index, message in enumerate(messages):
            header = self._encode(self.header.format(role=message["role"]))
            body = self._encode(self.body.format(content=message["content"]))
            trained = float(message_is_trained(messages, index, train_on_what))
            tokens += header + body
            weights += [float(all_tokens)] * len(header) + [trained] * len(body)
        return ModelInput.from_ints(tokens), weights

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        tokens = self._encode(self.bos)
        for message in messages:
            tokens += self._encode(self.header.format(role=message["role"]))
            tokens += self._encode(self.body.format(content=message["content"]))
        tokens += self._encode(self.header.format(role=role)) + self._encode(prefill or "")
        return ModelInput.from_ints(tokens)

    def get_stop_sequences(self) -> list[int]:
        return self._encode(self.stop)


def llama3(tokenizer: Tokenizer) -> TemplateRenderer:
    return TemplateRenderer(
        tokenizer,
        bos="<|begin_of_text|>",
        header="<|start_header_id|>{role}<|end_header_id|>\n\n",
        body="{content}<|eot_id|>",
        stop="<|eot_id|>",
    )


def role_colon(tokenizer: Tokenizer) -> TemplateRenderer:
    return TemplateRenderer(tokenizer, bos="", header="{role}:", body=" {content}\n\n", stop="\n\nUser:")


RendererFactory = Callable[[Tokenizer], Renderer]
_RENDERERS: dict[str, RendererFactory] = {"llama3": llama3, "role_colon": role_colon}


def renderer_names() -> list[str]:
    return sorted(_RENDERERS)


def register_renderer(name: str, factory: RendererFactory) -> None:
    """Make ``name`` usable as ``renderer_name`` in every recipe config."""
    _RENDERERS[name] = factory


def get_renderer(name: str, tokenizer: Tokenizer) -> Renderer:
    if name not in _RENDERERS:
        raise UnknownNameError(
            f"unknown renderer {name!r}; valid renderers: {choices(_RENDERERS)} "
            "(add your own with register_renderer())"
        )
    return _RENDERERS[name](tokenizer)


def validate_conversation(row: Any, index: int) -> list[Message]:
    """The row's ``messages``, checked; a ``DatasetError`` names the row index and the problem."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"row {index}: expected a non-empty 'messages' list, got {messages!r:.80}")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise DatasetError(f"row {index}, message {position}: missing string 'role'")
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"row {index}, message {position}: 'content' must be a string")
    return messages
