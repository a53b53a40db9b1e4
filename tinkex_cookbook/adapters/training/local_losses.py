"""Tinker's losses for the local backend, and the right-padded batches they read.

Each loss is a sum over tokens of a function of that token's logprob, so the
backend can fuse it into the chunked log-softmax (see ``local_models``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from tinkex_cookbook.errors import choices
from tinkex_cookbook.ports import (
    Datum,
    TensorData,
)

# Losses: each is a sum over tokens of a function of that token's logprob.

TokenLossFn = Callable[[Tensor, Mapping[str, Tensor], Mapping[str, float]], Tensor]


def cross_entropy(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    return -inputs["weights"] * logprobs


def importance_sampling(
    logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]
) -> Tensor:
    return -torch.exp(logprobs - inputs["logprobs"]) * inputs["advantages"]


def _clipped_ratio(
    logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]
) -> tuple[Tensor, Tensor]:
    ratio = torch.exp(logprobs - inputs["logprobs"])
    return ratio, ratio.clamp(config["clip_low_threshold"], config["clip_high_threshold"])


def ppo(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    ratio, clipped = _clipped_ratio(logprobs, inputs, config)
    advantages = inputs["advantages"]
    return -torch.minimum(ratio * advantages, clipped * advantages)


def cispo(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    _, clipped = _clipped_ratio(logprobs, inputs, config)
    return -clipped.detach() * logprobs * inputs["advantages"]


@dataclass(frozen=True)
class TokenLoss:
    """A loss: its per-token function, the float inputs it reads, and its config with defaults."""

    fn: TokenLossFn
    inputs: tuple[str, ...]
    config: Mapping[str, float] = field(default_factory=dict)
    optional_ones: tuple[str, ...] = ()

    def resolve_config(self, name: str, given: Mapping[str, float] | None) -> dict[str, float]:
        unknown = set(given or {}) - set(self.config)
        if unknown:
            raise ValueError(f"unknown loss_fn_config keys {sorted(unknown)} for loss {name!r}; "
                             f"valid keys: {choices(self.config)}")
        return {**self.config, **{k: float(v) for k, v in (given or {}).items()}}


RL_INPUTS = ("logprobs", "advantages")
LOSSES: dict[str, TokenLoss] = {
    "cross_entropy": TokenLoss(cross_entropy, ("weights",), optional_ones=("weights",)),
    "importance_sampling": TokenLoss(importance_sampling, RL_INPUTS),
    "ppo": TokenLoss(ppo, RL_INPUTS, {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}),
    "cispo": TokenLoss(cispo, RL_INPUTS, {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0}),
}


def get_loss(name: str) -> TokenLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss_fn {name!r} for the local_torch backend; valid: {choices(LOSSES)}")
    return LOSSES[name]


# Batches: right-padded input ids plus per-token loss inputs for the real positions, datum after datum.


@dataclass(frozen=True)
class Batch:
    input_ids: Tensor
    mask: Tensor
    lengths: tuple[int, ...]
    targets: Tensor
    inputs: dict[str, Tensor]

    def split(self, values: Tensor) -> tuple[dict[str, TensorData], ...]:
        parts = torch.split(values, list(self.lengths))
        return tuple({"logprobs": TensorData.from_numpy(part.numpy().astype(np.float32))} for part in parts)


def _loss_input(datum: Datum, index: int, key: str, loss: TokenLoss, dtype: str) -> np.ndarray:
    value = datum.loss_fn_inputs.get(key)
    length = datum.model_input.length
    if value is None and key in loss.optional_ones:
        return np.ones(length, dtype=dtype)
    if value is None:
        raise ValueError(f"datum {index} has no loss_fn_inputs[{key!r}], which this loss needs")
    array = value.to_numpy().reshape(-1).astype(dtype)
    if len(array) != length:
        raise ValueError(f"datum {index}: loss_fn_inputs[{key!r}] has {len(array)} values "
                         f"for {length} input tokens")
    return array


@dataclass(frozen=True)
class Row:
    """One datum's input ids and the loss inputs it carries, checked."""

    input_ids: Tensor
    targets: np.ndarray
    inputs: dict[str, np.ndarray]


def prepare_rows(data: Sequence[Datum], loss: TokenLoss) -> list[Row]:
    """Every datum as a ``Row``, in order, so an error names the first bad datum by its place in ``data``
    whatever order the micro-batches take them in."""
    if not data:
        raise ValueError("forward/forward_backward needs at least one datum")
    if any(d.model_input.length == 0 for d in data):
        raise ValueError("every datum needs at least one input token")
    return [
        Row(torch.tensor(d.model_input.to_ints(), dtype=torch.long), _loss_input(d, i, "target_tokens", loss, "int64"),
            {key: _loss_input(d, i, key, loss, "float32") for key in loss.inputs})
        for i, d in enumerate(data)
    ]


def build_batch(rows: Sequence[Row], loss: TokenLoss, vocab_size: int) -> Batch:
    """Right-padded input ids of ``rows`` and their loss inputs, concatenated row after row."""
    targets = np.concatenate([row.targets for row in rows])
    inputs = {key: torch.from_numpy(np.concatenate([row.inputs[key] for row in rows])) for key in loss.inputs}
    input_ids = nn.utils.rnn.pad_sequence([row.input_ids for row in rows], batch_first=True)
    lengths = torch.tensor([len(row.input_ids) for row in rows])
    _check_token_range(input_ids, targets, vocab_size)
    mask = torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]
    return Batch(input_ids, mask, tuple(lengths.tolist()), torch.from_numpy(targets), inputs)


def plan_micro_batches(lengths: Sequence[int], budget: int | None) -> list[list[int]]:
    """Datum indices grouped so each group's padded size (rows x longest) stays within ``budget`` tokens.

    Longest first, so each group holds sequences of similar length and little padding; a sequence
    longer than the budget runs alone. ``None`` keeps the whole batch as one group, in order.
    """
    if budget is None:
        return [list(range(len(lengths)))]
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        group = groups[-1] if groups else None
        if group is not None and (len(group) + 1) * lengths[group[0]] <= budget:
            group.append(index)
        else:
            groups.append([index])
    return groups


def _check_token_range(input_ids: Tensor, targets: np.ndarray, vocab_size: int) -> None:
    low = min(int(input_ids.min()), int(targets.min()))
    high = max(int(input_ids.max()), int(targets.max()))
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}) for this model; got range [{low}, {high}]")
