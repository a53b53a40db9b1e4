"""Dataset row formats: the shapes chat data comes in, each read into one training example.

Fine-tuning data is shared in a few shapes, and TRL, Axolotl, torchtune and
tinker-cookbook all read them, so a file made for one of them trains here as it is:

    messages           {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    sharegpt           {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    alpaca             {"instruction": "Say hi", "input": "", "output": "Hello"}
    prompt_completion  {"prompt": "Say hi", "completion": "Hello"}   (strings or message lists)
    text               {"text": "Plain text, trained on every token."}

``RowFormat`` says which shape a dataset has ("auto": detected from the first row's keys)
and how its columns map (``messages_field``, ``role_map``, ``text_field``). A row reads into
an ``Example``: a conversation in the ``messages`` form (rendered with the chat template)
or plain text (trained on every token, no template). ``resolve_format`` fixes the format
and reads every row once, before any model is loaded, so a file that cannot train fails
first, naming the row, the keys it has and the config key that fixes it.
``rows_to_datums`` turns a chunk of raw rows into datums; the training loop calls it per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tinkex_cookbook.errors import DatasetError, choices
from tinkex_cookbook.json_values import text_problem
from tinkex_cookbook.ports import Datum
from tinkex_cookbook.train.datum import (
    KNOWN_ROLES,
    Reduction,
    check_conversation,
    messages_to_datum,
    text_to_datum,
)
from tinkex_cookbook.train.renderers import Message, Renderer, TrainOnWhat

FormatName = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"]
CHAT_FORMATS: tuple[FormatName, ...] = ("messages", "sharegpt", "alpaca", "prompt_completion")
FORMATS: tuple[FormatName, ...] = (*CHAT_FORMATS, "text")
SHAPES = {
    "messages": "'messages': [{role, content}, ...]",
    "sharegpt": "'conversations': [{from, value}, ...]",
    "alpaca": "'instruction', optional 'input', 'output', optional 'system'",
    "prompt_completion": "'prompt' and 'completion' (strings or message lists)",
    "text": "'text': a string",
}
"""Each format's columns, as errors list them."""
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "chatgpt": "assistant",
    "bing": "assistant", "bard": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}
"""ShareGPT's usual speaker names (the ones FastChat, Axolotl and LLaMA-Factory read); ``role_map`` adds to them."""


@dataclass(frozen=True)
class RowFormat:
    """How to read one dataset's rows: a format name ("auto" until resolved) and its column mapping."""

    name: FormatName = "auto"
    messages_field: str | None = None
    """The column holding the message list (messages, sharegpt); default ``messages`` / ``conversations``."""
    role_map: Mapping[str, str] = field(default_factory=dict)
    """The data's role names -> ours; for sharegpt, merged over ``SHAREGPT_ROLES``."""
    text_field: str = "text"

    def list_field(self, name: str) -> str:
        return self.messages_field or ("conversations" if name == "sharegpt" else "messages")


def check_role_map(roles: Mapping[str, str]) -> Mapping[str, str]:
    """A ``role_map`` maps to roles the renderers know; anything else is a config mistake, caught before a run."""
    bad = {name: role for name, role in roles.items() if role not in KNOWN_ROLES}
    if bad:
        raise ValueError(f"role_map maps to unknown roles {bad}; map each name to one of {choices(KNOWN_ROLES)}")
    return roles


@dataclass(frozen=True)
class Example:
    """A row in canonical form: a conversation, or plain text (``messages`` is then ``None``).

    ``completion_start``: prompt_completion rows train only the messages from there on.
    """

    messages: list[Message] | None = None
    text: str | None = None
    completion_start: int | None = None


def resolve_format(rows: Sequence[Any], row_format: RowFormat, indices: Sequence[int] | None = None) -> RowFormat:
    """``row_format`` with its name fixed (detected from the first row when "auto"), once every row has read
    as an ``Example`` under it: a bad row fails here, before any model is loaded."""
    positions = list(indices) if indices is not None else list(range(len(rows)))
    if row_format.name == "auto" and rows:
        row_format = replace(row_format, name=detect_format(rows[0], row_format, positions[0]))
    for index, row in zip(positions, rows, strict=True):
        to_example(row, row_format, index)
    return row_format


def detect_format(row: Any, row_format: RowFormat, index: int = 0) -> FormatName:
    """The one format whose columns the row has; none or several is a ``DatasetError`` saying what to set.

    ``text`` is chosen only when no chat format matches: datasets often carry a rendered copy of each
    conversation in a ``text`` column beside it.
    """
    if not isinstance(row, Mapping):
        raise DatasetError(f"row {index}: expected a JSON object, got {type(row).__name__}")
    keys = sorted(row)
    if row_format.messages_field is not None and row_format.messages_field not in row:
        raise DatasetError(f"row {index} has no column messages_field={row_format.messages_field!r}; its keys: "
                           f"{keys}. Fix: set messages_field= to the column holding the message list")
    found: list[FormatName] = [name for name in CHAT_FORMATS if _has_columns(row, name, row_format)]
    if not found and row_format.text_field in row:
        return "text"
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetError(
            f"row {index} matches several dataset formats ({', '.join(found)}); its keys: {keys}. "
            f"Fix: set dataset_format= to the one to train on, e.g. dataset_format={found[0]}")
    lists = [key for key, value in row.items() if isinstance(value, list) and value and isinstance(value[0], Mapping)]
    guess = f" Column {lists[0]!r} holds a list of objects: if they are the messages, set messages_field={lists[0]}." \
        if lists else ""
    raise DatasetError(f"row {index}: no known dataset format in its keys {keys}.{guess} {accepted()}")


def accepted() -> str:
    """The formats and the config keys that map columns, for error messages."""
    shapes = "; ".join(f"{name} ({shape})" for name, shape in SHAPES.items())
    return (f"Accepted formats: {shapes}. Fix: rename the columns, or set messages_field=COLUMN (the column "
            "holding the message list), text_field=COLUMN, or dataset_format=NAME (see docs/datasets.md)")


def _has_columns(row: Mapping[str, Any], name: str, row_format: RowFormat) -> bool:
    if name in ("messages", "sharegpt"):
        column = row_format.list_field(name)
        if column not in row:
            return False
        if row_format.messages_field is None:
            return True
        first = row[column][0] if isinstance(row[column], list) and row[column] else None
        is_sharegpt = isinstance(first, Mapping) and "from" in first and "role" not in first
        return is_sharegpt == (name == "sharegpt")
    if name == "alpaca":
        return "instruction" in row and "output" in row
    return "prompt" in row and "completion" in row


def to_example(row: Any, row_format: RowFormat, index: int) -> Example:
    """``row`` read under ``row_format`` (a resolved one); a row that does not fit names its index, the
    format, the keys it has, and what to fix."""
    if not isinstance(row, Mapping):
        raise DatasetError(f"row {index}: expected a JSON object, got {type(row).__name__}")
    name = row_format.name if row_format.name != "auto" else detect_format(row, row_format, index)
    if name == "text":
        text = row.get(row_format.text_field)
        if not isinstance(text, str) or not text:
            raise _mismatch(index, row, name, f"expected a non-empty string in {row_format.text_field!r}, got "
                            f"{text!r:.60}", "text_field=COLUMN")
        wrong = text_problem(text)
        if wrong is not None:
            raise DatasetError(f"row {index}, field {row_format.text_field!r}: the value {wrong}")
        return Example(text=text)
    if name == "prompt_completion":
        prompt = _turns(row, "prompt", "user", index)
        return Example(_checked(prompt + _turns(row, "completion", "assistant", index), index),
                       completion_start=len(prompt))
    messages = _alpaca(row, index) if name == "alpaca" else _conversation(row, name, row_format, index)
    return Example(_checked(messages, index))


def _checked(messages: list[Message], index: int) -> list[Message]:
    return check_conversation({"messages": messages}, index)


def _mismatch(index: int, row: Mapping[str, Any], name: str, problem: str, key: str) -> DatasetError:
    return DatasetError(f"row {index} (dataset_format={name}): {problem}; the row's keys: {sorted(row)}. "
                        f"Fix: correct the row, or set {key} or dataset_format= to match the data")


def _conversation(row: Mapping[str, Any], name: str, row_format: RowFormat, index: int) -> list[Message]:
    column = row_format.list_field(name)
    items = row.get(column)
    if not isinstance(items, list) or not items:
        raise _mismatch(index, row, name, f"expected a non-empty message list in {column!r}, got {items!r:.60}",
                        "messages_field=COLUMN")
    roles = {**SHAREGPT_ROLES, **row_format.role_map} if name == "sharegpt" else dict(row_format.role_map)
    return [_message(item, roles, index, position) for position, item in enumerate(items)]


def _message(item: Any, roles: Mapping[str, str], index: int, position: int) -> Message:
    """A message of either spelling (``role``/``content`` or ShareGPT's ``from``/``value``), its role mapped;
    ``check_conversation`` then checks it as it checks any conversation."""
    if not isinstance(item, Mapping):
        raise DatasetError(f"row {index}, message {position}: expected an object with 'role' and 'content', "
                           f"got {item!r:.60}")
    if "from" in item and "role" not in item:
        rest = {k: v for k, v in item.items() if k not in ("from", "value", "weight")}
        return {**rest, "role": roles.get(item["from"], item["from"]), "content": item.get("value")}
    role = item.get("role")
    return {**item, "role": roles.get(role, role)} if isinstance(role, str) else dict(item)


def _alpaca(row: Mapping[str, Any], index: int) -> list[Message]:
    """Instruction and input (joined by a blank line) as the user's message, output as the reply."""
    parts = {key: row.get(key) for key in ("instruction", "input", "output", "system")}
    for key, value in parts.items():
        required = key in ("instruction", "output")
        if (required and not (isinstance(value, str) and value)) or not isinstance(value, str | None):
            kind = "a non-empty string" if required else "a string"
            raise _mismatch(index, row, "alpaca", f"{key!r} must be {kind}, got {value!r:.60}", "dataset_format")
    prompt = "\n\n".join(p for p in (parts["instruction"], parts["input"]) if p)
    system = [{"role": "system", "content": parts["system"]}] if parts["system"] else []
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": parts["output"]}]


def _turns(row: Mapping[str, Any], key: str, role: str, index: int) -> list[Message]:
    """A prompt or completion: a string is one message of ``role``, a list holds messages."""
    value = row.get(key)
    if isinstance(value, str) and value:
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value:
        return [_message(item, {}, index, position) for position, item in enumerate(value)]
    raise _mismatch(index, row, "prompt_completion", f"{key!r} must be a non-empty string or message list, got "
                    f"{value!r:.60}", "dataset_format")


def example_to_datum(
    example: Example, index: int, renderer: Renderer, max_length: int | None, train_on_what: TrainOnWhat,
    reduction: Reduction,
) -> Datum:
    """Text trains every token; a prompt-completion trains its completion, whatever ``train_on_what`` says:
    one assistant message as ``last_assistant_message`` does, several by marking them ``trainable``."""
    if example.messages is None:
        return text_to_datum(example.text or "", index, renderer.tokenizer, max_length, reduction)
    messages, mode = example.messages, TrainOnWhat(train_on_what)
    start = example.completion_start
    if start is not None:
        if start == len(messages) - 1 and messages[-1]["role"] == "assistant":
            mode = TrainOnWhat.LAST_ASSISTANT_MESSAGE
        else:
            mode = TrainOnWhat.CUSTOMIZED
            messages = [{**m, "trainable": position >= start} for position, m in enumerate(messages)]
    return messages_to_datum(messages, index, renderer, max_length, mode, reduction)


def rows_to_datums(
    rows: Sequence[Any], row_format: RowFormat, renderer: Renderer, max_length: int | None,
    train_on_what: TrainOnWhat, reduction: Reduction, indices: Sequence[int] | None = None,
) -> list[Datum]:
    """Raw dataset rows -> datums, one per row, in order; ``indices`` are the rows' positions in the dataset
    file, so an error names the row to fix."""
    positions = indices if indices is not None else range(len(rows))
    return [
        example_to_datum(to_example(row, row_format, index), index, renderer, max_length, train_on_what, reduction)
        for index, row in zip(positions, rows, strict=True)
    ]


def chat_row(row: Any, row_format: RowFormat, index: int) -> dict[str, Any] | None:
    """The row as ``{"messages": [...]}`` (what held-out prompts are read from); ``None`` for plain text."""
    messages = to_example(row, row_format, index).messages
    return None if messages is None else {"messages": messages}


__all__ = [
    "CHAT_FORMATS", "FORMATS", "SHAREGPT_ROLES", "Example", "FormatName", "RowFormat", "accepted", "chat_row",
    "check_role_map",
    "detect_format", "example_to_datum", "resolve_format", "rows_to_datums", "to_example",
]
