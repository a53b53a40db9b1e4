"""Datum building: rendered conversations -> next-token prediction examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports import Datum, ModelInput, TensorData
from tinkex_cookbook.train.renderers import Message, Renderer, TrainOnWhat, validate_conversation

Reduction = Literal["none", "mean"]


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
    """Render each row's ``messages``; a bad row raises ``DatasetError`` naming its index.

    ``indices`` are the rows' positions in the dataset the user knows (before
    any shuffle), so the error points at the row to fix.
    """
    datums = []
    for index, row in zip(indices if indices is not None else range(len(rows)), rows, strict=True):
        messages = validate_conversation(row, index)
        try:
            datums.append(conversation_to_datum(messages, renderer, max_length, train_on_what, reduction))
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"row {index}: {type(exc).__name__}: {exc}") from exc
    return datums


def weighted_nll(logprobs: Sequence[TensorData], data: Sequence[Datum]) -> tuple[float, float]:
    """(sum of -logprob * weight, sum of weights) over a batch."""
    total, weight_sum = 0.0, 0.0
    for output, datum in zip(logprobs, data, strict=True):
        weights = datum.loss_fn_inputs["weights"].data
        total += float(-(output.data * weights).sum())
        weight_sum += float(weights.sum())
    return total, weight_sum
