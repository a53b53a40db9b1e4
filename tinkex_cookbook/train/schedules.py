"""Learning-rate schedules: multipliers of the base rate by step, as the reference defines them."""

from __future__ import annotations

import math
from typing import Literal

LRSchedule = Literal["linear", "cosine", "constant"]
LR_SCHEDULES: tuple[str, ...] = ("linear", "cosine", "constant")


def lr_multiplier(schedule: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier in [0, 1] for ``step`` of ``total_steps`` (0-based) after linear warmup."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
