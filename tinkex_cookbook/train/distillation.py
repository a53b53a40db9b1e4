"""Distillation: the student learns the teacher's distribution on the student's own samples.

On-policy (tinker-cookbook's ``on_policy_distillation``): the student samples
completions; the teacher scores those exact tokens; each token's advantage is
``-kl_coef * (logp_student - logp_teacher)``, the per-token reverse KL, trained
with importance sampling. The mean of ``logp_student - logp_teacher`` over
sampled tokens estimates KL(student || teacher) and is what falls as it learns.
Off-policy: plain supervised learning on completions the teacher wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports import DatasetStore, ModelInput, SamplingClient
from tinkex_cookbook.train.datum import check_conversation
from tinkex_cookbook.train.renderers import Message, Renderer
from tinkex_cookbook.train.rl.data import TurnSample
from tinkex_cookbook.train.rl.types import StepResult, StopCondition, TrajectoryGroup


@dataclass
class PromptEnv:
    """A prompt to complete; no reward of its own (the teacher supplies the signal)."""

    renderer: Renderer
    messages: Sequence[Message]

    def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        return self.renderer.build_generation_prompt(list(self.messages)), self.renderer.get_stop_sequences()

    def step(self, action: Sequence[int]) -> StepResult:
        return StepResult(0.0, True)


def prompt_of(row: dict[str, Any], index: int) -> list[Message]:
    """A row's prompt: ``messages`` up to its last user message, or a ``prompt``/``question`` string.

    ``messages`` get the checks supervised rows get, so a malformed message is a ``DatasetError``
    naming its row and position rather than a crash (or an unknown role) inside the renderer.
    """
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        messages = check_conversation(row, index)
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is not None:
            return [dict(m) for m in messages[: last_user + 1]]
    for key in ("prompt", "question"):
        if isinstance(row.get(key), str) and row[key]:
            return [{"role": "user", "content": row[key]}]
    raise DatasetError(f"row {index} has no prompt: give it 'messages' with a user message, or a 'prompt' "
                       f"or 'question' string; got keys {sorted(row)}")


def load_prompts(store: DatasetStore, name: str, split: str) -> list[list[Message]]:
    return [prompt_of(row, i) for i, row in enumerate(store.load_dataset(name, split).to_list())]


def teacher_logprobs(teacher: SamplingClient, samples: Sequence[TurnSample]) -> list[np.ndarray]:
    """The teacher's logprob of every sampled action token; every request submitted before any is awaited."""
    futures = [teacher.compute_logprobs(ModelInput.from_ints(s.tokens)) for s in samples]
    return [np.asarray(f.result()[s.action_start + 1:], np.float32) for f, s in zip(futures, samples, strict=True)]


def on_policy_samples(groups: Sequence[TrajectoryGroup]) -> list[TurnSample]:
    return [
        TurnSample(turn, np.zeros(len(turn.action), np.float32))
        for group in groups for trajectory in group.trajectories for turn in trajectory.transitions if turn.action
    ]


def apply_teacher_advantages(samples: Sequence[TurnSample], teacher: Sequence[np.ndarray], kl_coef: float) -> float:
    """Set each token's advantage to ``-kl_coef * (student - teacher)``; return the mean reverse KL."""
    total, count = 0.0, 0
    for sample, teacher_lp in zip(samples, teacher, strict=True):
        kl = np.asarray(sample.transition.action_logprobs, np.float32) - teacher_lp
        sample.advantages[:] = -kl_coef * kl
        total, count = total + float(kl.sum()), count + len(kl)
    return total / count if count else 0.0
