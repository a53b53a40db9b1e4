"""A loss the backend does not know, trained through the two calls every backend has.

As the Tinker SDK's ``forward_backward_custom`` does: ``forward`` returns each
target token's logprob; the loss and its gradient with respect to those
logprobs are computed here; then ``forward_backward`` with ``cross_entropy``
and weights ``-dL/dlogprob`` puts exactly that gradient on the weights
(cross-entropy's gradient with respect to a logprob is minus its weight).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tinkex_cookbook.ports import APIFuture, Datum, ForwardBackwardOutput, TensorData, TrainingClient

LogprobLoss = Callable[[Sequence[np.ndarray]], tuple[float, list[np.ndarray], Mapping[str, float]]]
"""``loss(logprobs per datum) -> (loss, dloss/dlogprobs per datum, metrics)``."""


def linearized(data: Sequence[Datum], grads: Sequence[np.ndarray]) -> list[Datum]:
    """The same datums, weighted so cross-entropy's gradient equals ``grads``."""
    return [
        Datum(d.model_input, {"target_tokens": d.loss_fn_inputs["target_tokens"],
                              "weights": TensorData.from_numpy(-np.asarray(g, np.float32))})
        for d, g in zip(data, grads, strict=True)
    ]


def forward_backward_custom(
    client: TrainingClient, data: Sequence[Datum], loss: LogprobLoss
) -> tuple[float, Mapping[str, float], APIFuture[ForwardBackwardOutput]]:
    """Run ``forward``, compute ``loss`` here, and submit the matching ``forward_backward``.

    Returns the loss, its metrics, and the (not yet awaited) backward future, so the caller
    can submit its optimizer step right behind it.
    """
    forward = client.forward(data, "cross_entropy").result()
    logprobs = [o["logprobs"].to_numpy() for o in forward.loss_fn_outputs]
    value, grads, metrics = loss(logprobs)
    return value, metrics, client.forward_backward(linearized(data, grads), "cross_entropy")
