"""Datum building: (tokens, weights) -> next-token prediction examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinkex_cookbook.ports import Datum, ModelInput, TensorData


def datum_from_model_input_weights(
    model_input: ModelInput, weights: Sequence[float], max_length: int | None = None
) -> Datum:
    """Truncate to ``max_length`` tokens, then shift: input = tokens[:-1], target = tokens[1:].

    ``weights[i]`` says how much predicting token i counts, so the target
    weights are ``weights[1:]``, aligned with ``target_tokens``.
    """
    tokens = model_input.to_ints()
    if len(tokens) != len(weights):
        raise ValueError(f"{len(tokens)} tokens but {len(weights)} weights; they must match")
    if max_length is not None:
        tokens, weights = tokens[:max_length], list(weights)[:max_length]
    if len(tokens) < 2:
        raise ValueError("a datum needs at least 2 tokens (one input, one target)")
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(np.asarray(tokens[1:], dtype=np.int64)),
            "weights": TensorData.from_numpy(np.asarray(weights[1:], dtype=np.float32)),
        },
    )


def weighted_nll(logprobs: Sequence[TensorData], data: Sequence[Datum]) -> tuple[float, float]:
    """(sum of -logprob * weight, sum of weights) over a batch."""
    total, weight_sum = 0.0, 0.0
    for output, datum in zip(logprobs, data, strict=True):
        weights = datum.loss_fn_inputs["weights"].data
        total += float(-(output.data * weights).sum())
        weight_sum += float(weights.sum())
    return total, weight_sum
