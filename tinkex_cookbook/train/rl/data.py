"""From sampled trajectories to training datums: group-relative advantages, KL penalty, masks.

As in tinker-cookbook's ``rl/data_processing.py``: a trajectory's advantage is
its reward minus its group's mean; groups whose rewards are all equal teach
nothing and are dropped (or kept with zero advantage). Every policy turn
becomes one datum: the observation and the action as input, the sampler's
logprobs and the advantage on the action tokens, zeros on the observation,
so ``importance_sampling`` / ``ppo`` / ``cispo`` train only on what was sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinkex_cookbook.ports import Datum, ModelInput, TensorData
from tinkex_cookbook.train.rl.types import TrajectoryGroup, Transition


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """``r - mean(group)``: above-average trajectories are reinforced, below-average ones discouraged."""
    mean = sum(rewards) / len(rewards) if rewards else 0.0
    return [r - mean for r in rewards]


def is_constant(rewards: Sequence[float], tol: float = 1e-9) -> bool:
    return max(rewards) - min(rewards) <= tol if rewards else True


@dataclass(frozen=True)
class TurnSample:
    """One turn to train on, with its per-token advantages (before any KL penalty)."""

    transition: Transition
    advantages: np.ndarray

    @property
    def tokens(self) -> list[int]:
        return [*self.transition.observation.to_ints(), *self.transition.action]

    @property
    def action_start(self) -> int:
        """Index in the datum's target positions where the action begins."""
        return self.transition.observation.length - 1


def turn_samples(
    groups: Sequence[TrajectoryGroup], remove_constant_reward_groups: bool = True
) -> tuple[list[TurnSample], int]:
    """Turns to train on, and how many groups were skipped for having nothing to compare."""
    samples: list[TurnSample] = []
    skipped = 0
    for group in groups:
        if remove_constant_reward_groups and is_constant(group.rewards):
            skipped += 1
            continue
        for trajectory, advantage in zip(group.trajectories, group_advantages(group.rewards), strict=True):
            for transition in trajectory.transitions:
                if transition.action:
                    samples.append(TurnSample(transition, np.full(len(transition.action), advantage, np.float32)))
    return samples, skipped


def apply_kl_penalty(
    samples: Sequence[TurnSample], base_logprobs: Sequence[Sequence[float | None]], coef: float,
) -> float:
    """Penalise drifting from the base model, per token, as the reference does.

    ``kl_t = logp_sampler(t) - logp_base(t)``; each token's advantage gains
    ``coef * (mean_kl - kl_t)``, which keeps the batch's mean advantage and pushes
    down tokens the policy likes much more than the base model. Returns mean_kl. ``base_logprobs`` are
    ``compute_logprobs`` results past the prompt, where every token is scored.
    """
    kls = [np.asarray(s.transition.action_logprobs, np.float32) - np.asarray(base, np.float32)
           for s, base in zip(samples, base_logprobs, strict=True)]
    total = sum(len(k) for k in kls)
    mean_kl = float(sum(k.sum() for k in kls) / total) if total else 0.0
    for sample, kl in zip(samples, kls, strict=True):
        sample.advantages[:] += coef * (mean_kl - kl)
    return mean_kl


def to_datum(sample: TurnSample) -> Datum:
    """Input = tokens[:-1], targets = tokens[1:]; sampler logprobs and advantages on the action only."""
    tokens = sample.tokens
    positions = len(tokens) - 1
    logprobs = np.zeros(positions, np.float32)
    advantages = np.zeros(positions, np.float32)
    start = sample.action_start
    logprobs[start:] = sample.transition.action_logprobs
    advantages[start:] = sample.advantages
    return Datum(ModelInput.from_ints(tokens[:-1]), {
        "target_tokens": TensorData.from_list(tokens[1:], "int64"),
        "logprobs": TensorData.from_numpy(logprobs),
        "advantages": TensorData.from_numpy(advantages),
    })


def sampler_trainer_kl(samples: Sequence[TurnSample], train_logprobs: Sequence[np.ndarray]) -> float:
    """Mean of ``logp_sampler - logp_trainer`` over action tokens: ~0 on-policy, grows when stale."""
    diffs = [np.asarray(s.transition.action_logprobs, np.float32) - np.asarray(lp, np.float32)[s.action_start:]
             for s, lp in zip(samples, train_logprobs, strict=True)]
    total = sum(len(d) for d in diffs)
    return float(sum(d.sum() for d in diffs) / total) if total else 0.0


def rollout_metrics(groups: Sequence[TrajectoryGroup]) -> dict[str, float]:
    """Reward, per-environment metrics (accuracy, format ...), lengths and an entropy estimate."""
    trajectories = [t for g in groups for t in g.trajectories]
    if not trajectories:
        return {}
    rewards = [t.total_reward for t in trajectories]
    turns = [tr for t in trajectories for tr in t.transitions]
    action_tokens = sum(len(tr.action) for tr in turns)
    logprob_sum = sum(sum(tr.action_logprobs) for tr in turns)
    metrics = {
        "reward_mean": float(np.mean(rewards)), "reward_std": float(np.std(rewards)),
        "num_trajectories": float(len(trajectories)), "ac_tokens_per_turn": action_tokens / max(len(turns), 1),
        "entropy": -logprob_sum / max(action_tokens, 1),
    }
    names = sorted({k for t in trajectories for k in t.metrics})
    for name in names:
        metrics[f"env/{name}"] = float(np.mean([t.metrics.get(name, 0.0) for t in trajectories]))
    return metrics
