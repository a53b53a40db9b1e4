"""Direct preference optimisation: the loss, its gradient, and the datums of a preference pair.

For each pair, with ``s`` the summed logprob of a completion's tokens under the
policy and ``r`` under the frozen reference:

    margin = beta * ((s_chosen - r_chosen) - (s_rejected - r_rejected))
    loss   = mean(-log sigmoid(margin))

as tinker-cookbook's ``train_dpo.py`` computes it. Datums come in pairs,
chosen then rejected, with weight 1 on the completion's tokens and 0 on the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports import Datum
from tinkex_cookbook.train.datum import datum_from_model_input_weights
from tinkex_cookbook.train.renderers import Renderer, TrainOnWhat


def pair_datums(prompt: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any], renderer: Renderer,
                max_length: int | None, index: int | None = None) -> tuple[Datum, Datum]:
    """The chosen and the rejected conversation, each weighted on its last assistant turn only.

    Unlike a supervised row, a pair cut before its reply is a ``DatasetError`` (naming row
    ``index`` of the user's file): with no weighted token on a side, the margin is 0, the loss a
    constant log 2, and the pair only dilutes the batch's gradient.
    """
    datums = []
    for side, continuation in (("chosen", chosen), ("rejected", rejected)):
        model_input, weights = renderer.build_supervised_example(
            [*prompt, *continuation], TrainOnWhat.LAST_ASSISTANT_TURN)
        datum = datum_from_model_input_weights(model_input, weights, max_length)
        if not datum.loss_fn_inputs["weights"].to_numpy().any():
            raise _no_reply_left(index, side, weights, max_length)
        datums.append(datum)
    return datums[0], datums[1]


def _no_reply_left(index: int | None, side: str, weights: Sequence[float], max_length: int | None) -> DatasetError:
    where = "a preference pair" if index is None else f"row {index}"
    weighted = np.flatnonzero(np.asarray(weights) > 0)
    if not len(weighted):
        return DatasetError(f"{where}: no token of its {side!r} reply carries loss weight. Fix: make {side!r} "
                            "an assistant reply")
    first = int(weighted[0])
    return DatasetError(
        f"{where}: its prompt takes {first} tokens, so max_length={max_length} keeps no token of its {side!r} "
        f"reply and the pair would teach nothing. Fix: raise max_length to at least {first + 1} (more to keep "
        "the whole reply), or shorten the prompt, or drop the row"
    )


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def dpo_loss(
    policy: Sequence[np.ndarray], reference: Sequence[np.ndarray], weights: Sequence[np.ndarray], beta: float
) -> tuple[float, list[np.ndarray], dict[str, float]]:
    """Loss, gradient w.r.t. every policy logprob, and metrics, for datums ordered chosen, rejected, ..."""
    sums = np.array([float((w * p).sum()) for p, w in zip(policy, weights, strict=True)])
    ref_sums = np.array([float((w * r).sum()) for r, w in zip(reference, weights, strict=True)])
    ratios = sums - ref_sums
    chosen, rejected = beta * ratios[0::2], beta * ratios[1::2]
    margin = chosen - rejected
    pairs = len(margin)
    d_margin = -_sigmoid(-margin) / pairs
    grads = []
    for i, w in enumerate(weights):
        sign = 1.0 if i % 2 == 0 else -1.0
        grads.append((sign * beta * d_margin[i // 2] * w).astype(np.float32))
    metrics = {
        "dpo_loss": float(-_log_sigmoid(margin).mean()), "accuracy": float((margin > 0).mean()),
        "margin": float(margin.mean()), "chosen_reward": float(chosen.mean()),
        "rejected_reward": float(rejected.mean()), "num_pairs": float(pairs),
    }
    return metrics["dpo_loss"], grads, metrics
