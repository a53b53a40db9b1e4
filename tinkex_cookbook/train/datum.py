"""Datum building: rendered conversations -> next-token prediction examples.

Length: a row longer than ``max_length`` tokens is cut to its first ``max_length``
tokens, as the reference cookbook does, so datasets with a few long rows still
load. Weighted tokens past the cut are lost; a row cut before its first weighted
token keeps all-zero weights and adds nothing to the loss (``num_loss_tokens``
shows it). That is deliberate: ``max_length`` is the budget the run chose. A row
with no weighted token at all, before any cut (e.g. no assistant message under
``all_assistant_messages``), is a ``DatasetError`` instead: it could never teach
anything under that ``train_on_what``, so it is a data mistake, not a budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tinkex_cookbook.errors import DatasetError, choices
from tinkex_cookbook.json_values import unusable
from tinkex_cookbook.ports import Datum, ModelInput, TensorData, Tokenizer
from tinkex_cookbook.train.renderers import Message, Renderer, TrainOnWhat, validate_conversation

Reduction = Literal["none", "mean"]

KNOWN_ROLES = ("assistant", "developer", "system", "tool", "user")
"""Roles a dataset row may use: every shipped renderer knows them. A typo such as ``Assistant``
would otherwise render as a header no model was trained on, and carry no loss weight."""
TEXT_PARTS = ("text", "thinking")
"""Content part types whose payload, under the key of the same name, is text."""
MESSAGE_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "tool_calls": (list, type(None)), "name": (str,), "tool_call_id": (str,), "trainable": (bool,),
}


def datum_from_model_input_weights(
    model_input: ModelInput, weights: Sequence[float], max_length: int | None = None,
    reduction: Reduction = "none",
) -> Datum:
    """Truncate to ``max_length`` tokens, then shift: input = tokens[:-1], target = tokens[1:].

    ``weights[i]`` says how much predicting token i counts, so the target
    weights are ``weights[1:]``, aligned with ``target_tokens``. ``mean``
    scales them to sum to 1 per example, so long and short examples pull
    equally (the reference's default for supervised data).
    """
    tokens = model_input.to_ints()
    if len(tokens) != len(weights):
        raise ValueError(f"{len(tokens)} tokens but {len(weights)} weights; they must match")
    if max_length is not None:
        tokens = tokens[:max_length]
    if len(tokens) < 2:
        raise ValueError("a datum needs at least 2 tokens (one input, one target)")
    target_weights = np.asarray(weights[1 : len(tokens)], dtype=np.float32)
    if reduction == "mean" and target_weights.sum() > 0:
        target_weights = target_weights / target_weights.sum()
    elif reduction not in ("none", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; valid: 'none', 'mean'")
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(np.asarray(tokens[1:], dtype=np.int64)),
            "weights": TensorData.from_numpy(target_weights),
        },
    )


def conversation_to_datum(
    messages: Sequence[Message], renderer: Renderer, max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES, reduction: Reduction = "mean",
) -> Datum:
    model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat(train_on_what))
    return datum_from_model_input_weights(model_input, weights, max_length, reduction)


def conversations_to_datums(
    rows: Sequence[dict], renderer: Renderer, max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES, reduction: Reduction = "mean",
    indices: Sequence[int] | None = None,
) -> list[Datum]:
    """Render each row's ``messages``; a bad row raises ``DatasetError`` naming its index and field.

    ``indices`` are the rows' positions in the dataset the user knows (0-based,
    before any shuffle), so the error points at the row to fix. Long rows are
    truncated (see the module docstring); rows that carry no loss weight are errors.
    """
    mode = TrainOnWhat(train_on_what)
    return [
        messages_to_datum(check_conversation(row, index), index, renderer, max_length, mode, reduction)
        for index, row in zip(indices if indices is not None else range(len(rows)), rows, strict=True)
    ]


def messages_to_datum(
    messages: Sequence[Message], index: int, renderer: Renderer, max_length: int | None, mode: TrainOnWhat,
    reduction: Reduction,
) -> Datum:
    """One checked conversation (``check_conversation``) as a datum; errors name the row ``index``."""
    try:
        model_input, weights = renderer.build_supervised_example(messages, mode)
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"row {index}: {type(exc).__name__}: {exc}") from exc
    if not any(weight > 0 for weight in weights):
        raise _no_loss_weight(index, messages, mode)
    try:
        return datum_from_model_input_weights(model_input, weights, max_length, reduction)
    except ValueError as exc:
        raise DatasetError(f"row {index}: {exc}") from exc


def text_to_datum(text: str, index: int, tokenizer: Tokenizer, max_length: int | None, reduction: Reduction) -> Datum:
    """Plain text trained on every token, as pretraining does: the tokenizer's own special tokens (a BOS if
    the model's tokenizer adds one) and an EOS at the end (as TRL's language-modeling data does), so the
    model also learns where a document stops. No chat template."""
    tokens = tokenizer.encode(text, add_special_tokens=True)
    eos = tokenizer.eos_token_id
    if eos is not None and (not tokens or tokens[-1] != eos):
        tokens.append(eos)
    try:
        return datum_from_model_input_weights(ModelInput.from_ints(tokens), [1.0] * len(tokens), max_length,
                                              reduction)
    except ValueError as exc:
        raise DatasetError(f"row {index}: {exc}") from exc


def check_conversation(row: Any, index: int) -> list[Message]:
    """``validate_conversation`` plus what rendering needs: known roles, text parts, typed message fields."""
    messages = validate_conversation(row, index)
    for position, message in enumerate(messages):
        where = f"row {index}, message {position}"
        role = message["role"]
        if role not in KNOWN_ROLES:
            guess = role.strip().lower()
            hint = f"write {guess!r}" if guess in KNOWN_ROLES else (
                f"map the row's unknown roles with role_map='{json.dumps(_role_guesses(messages))}' (check the "
                "role each stands for), or drop those messages")
            raise DatasetError(f"{where}, field 'role': unknown role {role!r}; valid roles: {choices(KNOWN_ROLES)}. "
                               f"Fix: {hint}")
        if isinstance(message["content"], list):
            _check_parts(message["content"], where)
        for key, kinds in MESSAGE_FIELD_TYPES.items():
            if key in message and not isinstance(message[key], kinds):
                expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise DatasetError(f"{where}, field {key!r}: must be {expected}, got "
                                   f"{type(message[key]).__name__} {message[key]!r:.40}")
        found = unusable(message)
        if found is not None:  # rows from a store that does not check (memory, hf) or built in code
            raise DatasetError(f"{where}, field {found[0]!r}: the value {found[1]}")
    return messages


def _role_guesses(messages: Sequence[Message]) -> dict[str, str]:
    """A role_map to suggest: the row's unknown roles, in order of appearance, for the chat roles it lacks
    (a conversation's first speaker is usually the user)."""
    present = {m["role"] for m in messages}
    unknown = list(dict.fromkeys(m["role"] for m in messages if m["role"] not in KNOWN_ROLES))
    missing = [r for r in ("user", "assistant") if r not in present]
    return {role: missing[i] if i < len(missing) else "user|assistant|system|tool" for i, role in enumerate(unknown)}


def _check_parts(parts: list[Any], where: str) -> None:
    for number, part in enumerate(parts):
        at = f"{where}, field 'content[{number}]'"
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise DatasetError(f"{at}: a content part must be an object with a string 'type', got {part!r:.60}. "
                               'Fix: write {"type": "text", "text": "..."}, or make the content one string')
        kind = part["type"]
        if kind in TEXT_PARTS and not isinstance(part.get(kind), str):
            raise DatasetError(f"{at}: a {kind!r} part needs a string {kind!r} field, got {part.get(kind)!r:.40}. "
                               f'Fix: write {{"type": "{kind}", "{kind}": "..."}}')


def _no_loss_weight(index: int, messages: Sequence[Message], mode: TrainOnWhat) -> DatasetError:
    roles = [m["role"] for m in messages]
    if mode is TrainOnWhat.LAST_ASSISTANT_MESSAGE and roles[-1] != "assistant":
        why = f"its last message is a {roles[-1]!r} message, not the assistant's"
    elif "assistant" not in roles and "assistant" in mode.value:
        why = "it has no assistant message"
    else:
        why = f"no message is trained under this mode (roles: {', '.join(roles)})"
    return DatasetError(
        f"row {index}: no token carries loss weight with train_on_what={mode.value!r}: {why}. "
        "Fix: add the assistant reply, drop the row, or choose a train_on_what that trains on what the row holds"
    )


def weighted_nll(logprobs: Sequence[TensorData], data: Sequence[Datum]) -> tuple[float, float]:
    """(sum of -logprob * weight, sum of weights) over a batch."""
    total, weight_sum = 0.0, 0.0
    for output, datum in zip(logprobs, data, strict=True):
        weights = datum.loss_fn_inputs["weights"].data
        total += float(-(output.data * weights).sum())
        weight_sum += float(weights.sum())
    return total, weight_sum


def loss_token_count(data: Sequence[Datum]) -> int:
    """Target tokens that carry loss weight: under ``loss_reduction=mean`` the weights sum to one per example,
    so their sum counts examples, not tokens."""
    return sum(int((datum.loss_fn_inputs["weights"].data > 0).sum()) for datum in data)
