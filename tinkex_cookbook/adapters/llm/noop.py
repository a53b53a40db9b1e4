"""Noop LLM: answers deterministically from the prompt, so judge and grader code runs offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tinkex_cookbook.ports.llm import ChatMessage, Completion


@dataclass
class NoopLLMClient:
    """Replies with ``reply`` if set, else an echo of the last message; records prompts."""

    reply: str | None = None
    prompts: list[list[ChatMessage]] = field(default_factory=list)

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        self.prompts.append(list(messages))
        last = str(messages[-1].get("content", "")) if messages else ""
        text = self.reply if self.reply is not None else f"noop: {last}"
        text = text[:max_tokens] if max_tokens else text
        return Completion(text, "stop", {"prompt_messages": len(messages)})
