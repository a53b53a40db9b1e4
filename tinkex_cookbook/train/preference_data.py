"""Preference pairs for DPO: every common row shape parsed into one ``PreferencePair``.

A pair is a shared ``prompt`` conversation and two continuations of it, ``chosen`` (preferred)
and ``rejected``. ``parse_preference_row`` accepts the row shapes public preference sets use:

1. ``{"prompt": str, "chosen": str, "rejected": str}``: the prompt becomes one user message,
   each reply one assistant message.
2. ``{"prompt": str | [messages], "chosen": [messages], "rejected": [messages]}``: each side is
   either the full conversation, starting with the prompt (UltraFeedback-binarized style; the
   prompt is stripped off), or only the continuation after it.
3. ``{"chosen": [messages], "rejected": [messages]}``: two full conversations; the prompt is
   their longest common prefix of messages, the continuations are the rest.
4. ``{"chosen": str, "rejected": str}`` with HH-RLHF text (``"\\n\\nHuman: ...\\n\\nAssistant:
   ..."``): split into user/assistant messages on those markers, then as shape 3.

Other keys (``score_chosen``, ``prompt_id``, ``messages`` ...) are ignored. A malformed row
raises ``DatasetError`` naming the row index, the field, what was found and the fix; unlike
the reference cookbook, which skips rows it cannot pair (and warns that a DPO batch may then
hold an odd number of datums), nothing is dropped silently.

Messages are plain dicts (``Message``) with a known ``role`` (``datum.KNOWN_ROLES``: a typo such
as ``Assistant`` is an error, not a new role) and string ``content``; other keys of a message are
kept, and messages compare equal only when every key does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.errors import DatasetError, choices
from tinkex_cookbook.train.datum import KNOWN_ROLES
from tinkex_cookbook.train.renderers.base import Message

HH_MARKER = re.compile(r"\n\n(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass(frozen=True)
class PreferencePair:
    """A prompt and two continuations of it; ``chosen`` is preferred over ``rejected``.

    ``prompt`` has at least one message and does not end with an assistant message; ``chosen``
    and ``rejected`` each have at least one message, start with an assistant message, and
    differ. Constructing a pair that breaks these rules raises ``DatasetError``.
    """

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_pair("PreferencePair", self.prompt, self.chosen, self.rejected)

    @property
    def chosen_conversation(self) -> list[Message]:
        """``prompt + chosen``: the conversation a DPO datum trains towards."""
        return [*self.prompt, *self.chosen]

    @property
    def rejected_conversation(self) -> list[Message]:
        """``prompt + rejected``: the conversation a DPO datum trains away from."""
        return [*self.prompt, *self.rejected]


def parse_preference_rows(rows: Sequence[Mapping[str, Any]]) -> list[PreferencePair]:
    """Every row parsed with ``parse_preference_row``; its position is its index in errors."""
    return [parse_preference_row(row, index) for index, row in enumerate(rows)]


def parse_preference_row(row: Mapping[str, Any], index: int) -> PreferencePair:
    """One row, in any of the shapes in the module docstring, as a ``PreferencePair``."""
    if not isinstance(row, Mapping):
        raise DatasetError(
            f"row {index}: expected a JSON object with 'chosen' and 'rejected', got "
            f"{_describe(row)}. Fix: make each row an object such as "
            '{"prompt": "...", "chosen": "...", "rejected": "..."}'
        )
    for field in ("chosen", "rejected"):
        if field not in row:
            raise _fail(
                index, field, "is missing", f"keys {sorted(map(str, row))}",
                "give every row both 'chosen' (the preferred reply) and 'rejected' (the dispreferred "
                "one), as strings or lists of messages",
            )
    if "prompt" in row:
        prompt = _prompt(row["prompt"], index)
        chosen = _continuation(row["chosen"], prompt, "chosen", index)
        rejected = _continuation(row["rejected"], prompt, "rejected", index)
    else:
        prompt, chosen, rejected = _split_common_prefix(
            _conversation(row["chosen"], "chosen", index),
            _conversation(row["rejected"], "rejected", index),
            index,
        )
    _check_pair(f"row {index}", prompt, chosen, rejected)
    return PreferencePair(prompt, chosen, rejected)


# --- fields -----------------------------------------------------------------------------------


def _prompt(value: Any, index: int) -> tuple[Message, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise _fail(index, "prompt", "is empty", repr(value), "give the prompt's text, or drop 'prompt' "
                        "and put the full conversations in 'chosen' and 'rejected'")
        return ({"role": "user", "content": value},)
    if isinstance(value, list):
        if not value:
            raise _fail(index, "prompt", "is empty", "[]", "give at least one message, or drop 'prompt' "
                        "and put the full conversations in 'chosen' and 'rejected'")
        return _messages(value, "prompt", index)
    raise _fail(index, "prompt", "must be a string or a list of messages", _describe(value),
                'write it as "text" or [{"role": "user", "content": "text"}]')


def _continuation(value: Any, prompt: tuple[Message, ...], field: str, index: int) -> tuple[Message, ...]:
    """A reply given a prompt: a string, the continuation itself, or the full conversation."""
    if isinstance(value, str):
        if not value.strip():
            raise _fail(index, field, "is empty", repr(value), f"give the {field} reply's text")
        return ({"role": "assistant", "content": value},)
    if not isinstance(value, list):
        raise _fail(index, field, "must be a string or a list of messages", _describe(value),
                    'write it as "reply" or [{"role": "assistant", "content": "reply"}]')
    messages = _messages(value, field, index)
    if messages[: len(prompt)] == prompt:
        if len(messages) == len(prompt):
            raise _fail(index, field, "has no reply after the prompt",
                        f"only the prompt's {len(prompt)} message(s)",
                        "append the assistant reply to the conversation")
        return messages[len(prompt):]
    return messages


def _conversation(value: Any, field: str, index: int) -> tuple[Message, ...]:
    """A full conversation without a separate prompt: a list of messages or HH-RLHF text."""
    if isinstance(value, str):
        return _hh_messages(value, field, index)
    if isinstance(value, list):
        if not value:
            raise _fail(index, field, "is empty", "[]", "give the full conversation, prompt included")
        return _messages(value, field, index)
    raise _fail(index, field, "must be a list of messages or HH-RLHF text", _describe(value),
                "give the full conversation, prompt included, as a list of messages")


def _hh_messages(text: str, field: str, index: int) -> tuple[Message, ...]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` as user/assistant messages, contents stripped."""
    parts = HH_MARKER.split("\n\n" + text.lstrip())
    if len(parts) < 3 or parts[0]:
        raise _fail(
            index, field, "is a string but not HH-RLHF text", repr(text[:60]),
            "without 'prompt', a string must be a whole conversation in HH-RLHF form "
            "('\\n\\nHuman: ...\\n\\nAssistant: ...'); for a plain reply, add the row's 'prompt'",
        )
    return tuple(
        {"role": HH_ROLES[marker], "content": content.strip()}
        for marker, content in zip(parts[1::2], parts[2::2], strict=True)
    )


def _messages(values: list[Any], field: str, index: int) -> tuple[Message, ...]:
    messages = []
    for position, message in enumerate(values):
        where = f"{field}[{position}]"
        if not isinstance(message, Mapping):
            raise _fail(index, where, "must be a message object", _describe(message),
                        'write each message as {"role": "...", "content": "..."}')
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise _fail(index, f"{where}.role", "must be a non-empty string", _describe(role),
                        'give every message a role such as "user" or "assistant"')
        if role not in KNOWN_ROLES:
            raise _fail(index, f"{where}.role", "is not a known role", repr(role),
                        f"use one of {choices(KNOWN_ROLES)}" + (
                            f", here {role.strip().lower()!r}" if role.strip().lower() in KNOWN_ROLES else ""))
        if not isinstance(message.get("content"), str):
            raise _fail(index, f"{where}.content", "must be a string", _describe(message.get("content")),
                        "give the message's text as one string (join text parts; preference rows "
                        "carry text only)")
        messages.append(dict(message))
    return tuple(messages)


# --- pairing ----------------------------------------------------------------------------------


def _split_common_prefix(
    chosen: tuple[Message, ...], rejected: tuple[Message, ...], index: int
) -> tuple[tuple[Message, ...], tuple[Message, ...], tuple[Message, ...]]:
    shared = 0
    for ours, theirs in zip(chosen, rejected, strict=False):
        if ours != theirs:
            break
        shared += 1
    if shared == 0:
        raise _fail(
            index, "chosen", "shares no leading message with 'rejected'",
            f"chosen[0] {_brief(chosen[0])} vs rejected[0] {_brief(rejected[0])}",
            "both conversations must start with the same prompt; or give the prompt in a "
            "'prompt' field and only the replies in 'chosen' and 'rejected'",
        )
    if shared == len(chosen) == len(rejected):
        raise _fail(index, "rejected", "is identical to 'chosen'", f"{shared} equal messages",
                    "drop the row: a pair needs two different replies")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if shared == len(messages):
            raise _fail(
                index, field, "has no reply after the shared prompt",
                f"all {shared} message(s) are a prefix of the other side",
                f"end '{field}' with its own assistant reply after the prompt",
            )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _check_pair(
    where: str, prompt: tuple[Message, ...], chosen: tuple[Message, ...], rejected: tuple[Message, ...]
) -> None:
    """The shape rules every pair obeys; ``where`` is ``row N`` or ``PreferencePair``."""
    if not prompt:
        raise DatasetError(f"{where}, field 'prompt': is empty (found no messages). Fix: give at least one message")
    if prompt[-1].get("role") == "assistant":
        raise DatasetError(
            f"{where}, field 'prompt': ends with an assistant message (found {_brief(prompt[-1])}). "
            "Fix: the prompt must end where the compared replies begin, usually with a user message; "
            "put that assistant reply in 'chosen' and 'rejected', or check that both sides "
            "differ from their first assistant reply on"
        )
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages:
            raise DatasetError(f"{where}, field {field!r}: is empty (found no messages). Fix: give its reply")
        if messages[0].get("role") != "assistant":
            raise DatasetError(
                f"{where}, field {field!r}: must start with an assistant message after the prompt "
                f"(found {_brief(messages[0])}). Fix: give either the full conversation starting with "
                f"the prompt's {len(prompt)} message(s) exactly, or only the assistant reply that follows them"
            )
    if chosen == rejected:
        raise DatasetError(
            f"{where}, field 'rejected': is identical to 'chosen' (found {_brief(chosen[0])}). "
            "Fix: drop the row: a pair needs two different replies"
        )


def _fail(index: int, field: str, problem: str, found: str, fix: str) -> DatasetError:
    return DatasetError(f"row {index}, field {field!r}: {problem} (found {found}). Fix: {fix}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def _brief(message: Message) -> str:
    return f"{message.get('role')!r} message {str(message.get('content'))!r:.50}"


__all__ = ["PreferencePair", "parse_preference_row", "parse_preference_rows"]
