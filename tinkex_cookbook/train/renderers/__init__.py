"""Chat renderers by name: conversations -> tokens and loss weights, responses -> messages.

``get_renderer(name, tokenizer)`` builds one; ``register_renderer`` adds yours.
Built-in renderers are imported when first asked for, so naming one costs
nothing until it is used.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from tinkex_cookbook.errors import DatasetError, RendererError, UnknownNameError, choices
from tinkex_cookbook.ports import Tokenizer
from tinkex_cookbook.train.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    ToolCall,
    TrainOnWhat,
    UnparsedToolCall,
    get_text_content,
)

RendererFactory = Callable[[Tokenizer], Renderer]

_BUILTIN: dict[str, tuple[str, str, dict[str, Any]]] = {
    "role_colon": ("role_colon", "RoleColonRenderer", {}),
    "llama3": ("llama3", "Llama3Renderer", {}),
    "qwen3": ("qwen3", "Qwen3Renderer", {}),
    "qwen3_disable_thinking": ("qwen3", "Qwen3DisableThinkingRenderer", {}),
    "deepseekv3": ("deepseek_v3", "DeepSeekV3DisableThinkingRenderer", {}),
    "deepseekv3_disable_thinking": ("deepseek_v3", "DeepSeekV3DisableThinkingRenderer", {}),
    "deepseekv3_thinking": ("deepseek_v3", "DeepSeekV3ThinkingRenderer", {}),
    "gpt_oss": ("gpt_oss", "GptOssRenderer", {}),
    "gpt_oss_no_sysprompt": ("gpt_oss", "GptOssRenderer", {}),
    "gpt_oss_low_reasoning": ("gpt_oss", "GptOssRenderer", {"use_system_prompt": True, "reasoning_effort": "low"}),
    "gpt_oss_medium_reasoning": (
        "gpt_oss", "GptOssRenderer", {"use_system_prompt": True, "reasoning_effort": "medium"}
    ),
    "gpt_oss_high_reasoning": ("gpt_oss", "GptOssRenderer", {"use_system_prompt": True, "reasoning_effort": "high"}),
    "kimi_k2": ("kimi_k2", "KimiK2Renderer", {}),
    "chatml": ("chatml", "ChatMLRenderer", {}),
}
_CUSTOM: dict[str, RendererFactory] = {}


def renderer_names() -> list[str]:
    return sorted({*_BUILTIN, *_CUSTOM})


def register_renderer(name: str, factory: RendererFactory) -> None:
    """Make ``name`` usable as ``renderer_name`` in every recipe config."""
    _CUSTOM[name] = factory


def unknown_renderer(name: str) -> str:
    """Why ``name`` is no renderer: the valid ones, and the closest when it looks like a typo."""
    valid = renderer_names()
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "add your own with register_renderer()"
    return f"unknown renderer {name!r}; valid renderers: {choices(valid)} ({hint})"


def get_renderer(name: str, tokenizer: Tokenizer) -> Renderer:
    """Renderer ``name`` over ``tokenizer``; one whose special tokens the tokenizer lacks is refused, since
    it would train the model on its template spelled out as ordinary text."""
    if name in _CUSTOM:
        renderer = _CUSTOM[name](tokenizer)
    elif name in _BUILTIN:
        module, cls, kwargs = _BUILTIN[name]
        renderer = getattr(importlib.import_module(f"{__name__}.{module}"), cls)(tokenizer, **kwargs)
    else:
        raise UnknownNameError(unknown_renderer(name))
    missing = renderer.missing_special_tokens()
    if missing:
        raise RendererError(mismatch_message(name, tokenizer, missing))
    return renderer


def mismatch_message(name: str, tokenizer: Tokenizer, missing: list[str]) -> str:
    from tinkex_cookbook.train.models import recommended_renderer

    model = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return (
        f"renderer {name!r} writes special tokens {', '.join(missing)} that the tokenizer of {model!r} does "
        f"not have, so its chat template would become plain text; use this model's own renderer "
        f"(renderer_name={recommended_renderer(model)!r}, the default when renderer_name is unset)"
    )


def validate_conversation(row: Any, index: int) -> list[Message]:
    """The row's ``messages``, checked; a ``DatasetError`` names the row index and the problem."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"row {index}: expected a non-empty 'messages' list, got {messages!r:.80}")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise DatasetError(f"row {index}, message {position}: missing string 'role'")
        if not isinstance(message.get("content"), str | list):
            raise DatasetError(f"row {index}, message {position}: 'content' must be a string or a list of parts")
    return messages


__all__ = [
    "Message", "ParseTermination", "RenderContext", "RenderedMessage", "Renderer", "ToolCall",
    "TrainOnWhat", "UnparsedToolCall", "get_renderer", "get_text_content", "register_renderer",
    "renderer_names", "validate_conversation",
]
