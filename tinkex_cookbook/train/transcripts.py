"""What the model wrote at a step, kept as a few JSON rows: prompt, completion, reward, advantage, teacher KL.

Metrics say *that* a run improved; transcripts say *what* it generated. A step keeps the
first groups of its batch, whole, until ``limit`` trajectories are kept (the last group
may be cut short), so a file stays a few kilobytes however large the batch. Rows are
plain JSON-safe dicts; the run folder keeps each step's as ``transcripts/<step>.jsonl``,
the step written with six digits (``transcripts/000001.jsonl``), and the transcripts page
reads them back.

Rows share these keys: ``group`` (its position in the batch), ``sample`` (its position in
the group), ``prompt`` (text, or the chat messages when the recipe has them) and
``completion`` (the sampled tokens decoded, stop token included: what the model wrote).
RL rows add ``answer`` (the problem's reference answer, when the env has one: what the
grader compared the completion with, e.g. ``13`` taken from a MATH solution's
``\\boxed{13}``), ``reward``, ``advantage`` (reward minus the group's mean, before any KL
penalty), ``skipped`` (a constant-reward group that was not trained on) and the
environment's ``metrics``; on-policy distillation rows add ``teacher_kl`` (the mean of
``logp_student - logp_teacher`` over the completion) and ``teacher_kl_tokens``; off-policy
rows hold the ``teacher_reply`` the student was trained on and its ``student_nll``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tinkex_cookbook.ports import Datum, TensorData, Tokenizer
from tinkex_cookbook.train.renderers import Message
from tinkex_cookbook.train.renderers.base import message_to_jsonable
from tinkex_cookbook.train.rl.data import group_advantages, is_constant
from tinkex_cookbook.train.rl.types import Trajectory, TrajectoryGroup

TRANSCRIPTS_HELP = "trajectories kept per step in the run's transcripts/, first groups whole (0: none)"
TRANSCRIPT_EVERY_HELP = "write the step's transcript every N steps (0: never)"
DEFAULT_PER_STEP = 8


def kept(groups: Sequence[TrajectoryGroup], limit: int) -> Iterator[tuple[int, int, Trajectory]]:
    """``(group, sample, trajectory)`` of the first groups, in order, until ``limit`` trajectories."""
    count = 0
    for g, group in enumerate(groups):
        for i, trajectory in enumerate(group.trajectories):
            if count >= limit:
                return
            count += 1
            yield g, i, trajectory


def rl_rows(groups: Sequence[TrajectoryGroup], tokenizer: Tokenizer, limit: int,
            remove_constant_reward_groups: bool = True) -> list[dict[str, Any]]:
    """Rows of an RL step: each kept trajectory's prompt, completion, reference answer (when its env has
    one), reward, advantage and env metrics."""
    advantages = [group_advantages(group.rewards) for group in groups]
    rows = []
    for g, i, trajectory in kept(groups, limit):
        skipped = remove_constant_reward_groups and is_constant(groups[g].rewards)
        answer = {} if trajectory.answer is None else {"answer": trajectory.answer}
        rows.append({**_text_of(trajectory, tokenizer), **answer, "group": g, "sample": i,
                     "reward": trajectory.total_reward, "advantage": 0.0 if skipped else advantages[g][i],
                     "skipped": skipped, "metrics": {k: _finite(float(v)) for k, v in trajectory.metrics.items()}})
    return rows


def distill_rows(groups: Sequence[TrajectoryGroup], prompts: Sequence[Sequence[Message]], tokenizer: Tokenizer,
                 teacher_kls: Sequence[np.ndarray], limit: int) -> list[dict[str, Any]]:
    """Rows of an on-policy distillation step: the prompt's messages, the student's completion, and the
    teacher's KL per token and on average. ``teacher_kls`` follow the order of ``on_policy_samples``
    (every turn with an action, group by group)."""
    kls = iter(teacher_kls)
    by_trajectory = {id(t): next(kls) for group in groups for t in group.trajectories
                     for turn in t.transitions if turn.action}
    rows = []
    for g, i, trajectory in kept(groups, limit):
        kl = by_trajectory.get(id(trajectory), np.zeros(0, np.float32))
        rows.append({**_text_of(trajectory, tokenizer), "prompt": [message_to_jsonable(m) for m in prompts[g]], "group": g,
                     "sample": i, "teacher_kl": _finite(float(kl.mean())) if len(kl) else 0.0,
                     "teacher_kl_tokens": [_finite(round(float(x), 4)) for x in kl]})
    return rows


def off_policy_rows(prompts: Sequence[Sequence[Message]], replies: Sequence[Message],
                    student_nlls: Sequence[float], limit: int) -> list[dict[str, Any]]:
    """Rows of an off-policy distillation step: the prompt, the teacher's reply, the student's mean NLL on it."""
    return [{"group": g, "sample": 0, "prompt": [message_to_jsonable(m) for m in prompt],
             "teacher_reply": message_to_jsonable(reply)["content"], "student_nll": nll}
            for g, (prompt, reply, nll) in enumerate(zip(prompts[:limit], replies, student_nlls, strict=False))]


def example_nlls(logprobs: Sequence[TensorData], data: Sequence[Datum]) -> list[float]:
    """Each example's mean negative logprob over its trained (weighted) tokens."""
    nlls = []
    for output, datum in zip(logprobs, data, strict=True):
        weights = datum.loss_fn_inputs["weights"].data
        nlls.append(float(-(output.data * weights).sum() / max(float(weights.sum()), 1e-9)))
    return nlls


def _finite(value: float) -> float | None:
    """``None`` for NaN and infinities: strict JSON has no such numbers."""
    return value if np.isfinite(value) else None


def _text_of(trajectory: Trajectory, tokenizer: Tokenizer) -> dict[str, Any]:
    """The first turn's prompt and completion as text; later turns (multi-turn envs) under ``turns``, each
    with only the observation tokens the previous turn had not already shown."""
    turns = trajectory.transitions
    if not turns:
        return {"prompt": "", "completion": ""}
    first = turns[0]
    text: dict[str, Any] = {"prompt": tokenizer.decode(first.observation.to_ints()),
                            "completion": tokenizer.decode(list(first.action))}
    if len(turns) > 1:
        later, seen = [], [*first.observation.to_ints(), *first.action]
        for turn in turns[1:]:
            observation = turn.observation.to_ints()
            new = observation[len(seen):] if observation[: len(seen)] == seen else observation
            later.append({"observation": tokenizer.decode(new), "completion": tokenizer.decode(list(turn.action)),
                          "reward": turn.reward})
            seen = [*observation, *turn.action]
        text["turns"] = later
    return text
