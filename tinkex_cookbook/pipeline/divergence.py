"""A training step whose loss or gradient norm is NaN or infinite stops the run.

Once a step's loss or gradient norm is not a finite number, the weights it
updated are not either (or soon will not be), and every later step, evaluation
and checkpoint carries that on: a run that went on would "succeed" with a
broken model. So the step's row is emitted (``metrics.jsonl`` records the value
as ``null``) and the run stops with ``TrainingDivergedError`` naming the step,
the metric and its value, the last checkpoint, and the fix. The step's own
checkpoint is never written: every recipe logs its step before it checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tinkex_cookbook.errors import TrainingDivergedError

WATCHED = ("grad_norm", "teacher_kl")
"""Watched besides every metric whose name holds ``loss`` or ``nll`` (``train_mean_nll``, ``dpo_loss``,
``loss:sum``): what each recipe trains on, and the gradient norm of the update."""


def watched(name: str) -> bool:
    return name in WATCHED or "loss" in name or "nll" in name


def diverged(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The watched metrics of a step that are NaN or infinite."""
    return {name: value for name, value in metrics.items()
            if watched(name) and isinstance(value, float) and not math.isfinite(value)}


TYPICAL_MAX_LEARNING_RATE = 1e-3
"""The suggested retry is a tenth of the rate that diverged, and never above this: LoRA fine-tuning rates are
around 1e-5 to 1e-3, so a tenth of ``1e30`` would diverge again."""


def divergence_error(
    step: int, bad: Mapping[str, float], learning_rate: float | None, checkpoint_step: int | None, log_path: str,
) -> TrainingDivergedError:
    """The error for step ``step`` whose ``bad`` metrics are not finite: what, where, and what to do."""
    shown = ", ".join(f"{name} is {value}" for name, value in sorted(bad.items()))
    rate = f" at learning_rate {learning_rate:g}" if learning_rate is not None else ""
    if checkpoint_step:
        saved = (f"its last checkpoint is step {checkpoint_step}, saved before the divergence showed (its weights "
                 "may already be damaged)")
    else:
        saved = "it saved no checkpoint"
    lower = f"{min(learning_rate / 10, TYPICAL_MAX_LEARNING_RATE):g}" if learning_rate else ""
    return TrainingDivergedError(
        f"training diverged at step {step}{rate}: {shown}. Step {step} was not checkpointed; {saved}. "
        f"Run folder: {log_path}. Fix: run again with a lower learning rate in a new folder (e.g. "
        f"{f'learning_rate={lower}' if lower else 'a lower learning_rate'} log_path=NEW_FOLDER): resuming this folder "
        "repeats the same steps, and it refuses a changed config", lower,
    )
