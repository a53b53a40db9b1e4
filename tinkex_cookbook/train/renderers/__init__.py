"""Chat renderers by name: conversations -> tokens and loss weights, responses -> messages.

``get_renderer(name, tokenizer)`` builds one; ``register_renderer`` adds yours.
Built-in renderers are imported when first asked for, so naming one costs
nothing until it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinkex_cookbook.errors import DatasetError, RendererError
from tinkex_cookbook.ports import Tokenizer
from tinkex_cookbook.registry import Registry
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

RENDERERS: Registry[RendererFactory] = Registry(
    "renderer",
    builtins={name: f"{__name__}.{target}" for name, target in {
        "role_colon": "role_colon:RoleColonRenderer",
        "llama3": "llama3:Llama3Renderer",
        "qwen3": "qwen3:Qwen3Renderer",
        "qwen3_disable_thinking": "qwen3:Qwen3DisableThinkingRenderer",
        "deepseekv3": "deepseek_v3:DeepSeekV3DisableThinkingRenderer",
        "deepseekv3_disable_thinking": "deepseek_v3:DeepSeekV3DisableThinkingRenderer",
        "deepseekv3_thinking": "deepseek_v3:DeepSeekV3ThinkingRenderer",
        "gpt_oss": "gpt_oss:GptOssRenderer",
        "gpt_oss_no_sysprompt": "gpt_oss:GptOssRenderer",
        "gpt_oss_low_reasoning": "gpt_oss:low_reasoning",
        "gpt_oss_medium_reasoning": "gpt_oss:medium_reasoning",
        "gpt_oss_high_reasoning": "gpt_oss:high_reasoning",
        "kimi_k2": "kimi_k2:KimiK2Renderer",
        "chatml": "chatml:ChatMLRenderer",
    }.items()},
    group="tinkex_cookbook.renderers",
    hint="add your own with register_renderer()",
)
"""Renderer factories (``factory(tokenizer) -> Renderer``) by name; a renderer's module is imported
when the name is first asked for, plugins come from the ``tinkex_cookbook.renderers`` group."""


def renderer_names() -> list[str]:
    return RENDERERS.names()


def register_renderer(name: str, factory: RendererFactory, replace: bool = False) -> None:
    """Make ``name`` usable as ``renderer_name`` in every recipe config."""
    RENDERERS.register(name, factory, replace)


def unknown_renderer(name: str) -> str:
    """Why ``name`` is no renderer: the valid ones, and the closest when it looks like a typo."""
    return RENDERERS.describe_unknown(name)


def get_renderer(name: str, tokenizer: Tokenizer) -> Renderer:
    """Renderer ``name`` over ``tokenizer``; one whose special tokens the tokenizer lacks is refused, since
    it would train the model on its template spelled out as ordinary text."""
    renderer = RENDERERS.get(name)(tokenizer)
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
    "RENDERERS", "Message", "ParseTermination", "RenderContext", "RenderedMessage", "Renderer", "ToolCall",
    "TrainOnWhat", "UnparsedToolCall", "get_renderer", "get_text_content", "register_renderer",
    "renderer_names", "validate_conversation",
]
