"""The environment API of RL recipes, after tinker-cookbook's ``rl/types.py`` (synchronous here).

An ``Env`` shows the policy an observation (tokens, usually a rendered chat
prompt), takes the tokens it sampled, and answers with a reward, metrics and
whether the episode is over. An ``EnvGroupBuilder`` makes the G environments
that share one problem: their rewards are compared with each other to get
advantages. An ``RLDataset`` hands out a list of group builders per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tinkex_cookbook.ports import ModelInput

StopCondition = Sequence[int] | Sequence[str]
"""Token ids or strings that end the policy's turn (a renderer's stop sequences)."""


@dataclass(frozen=True)
class StepResult:
    reward: float
    episode_done: bool
    next_observation: ModelInput | None = None
    next_stop: StopCondition | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    """One episode. Single use: ``initial_observation`` once, then ``step`` until done."""

    def initial_observation(self) -> tuple[ModelInput, StopCondition]: ...

    def step(self, action: Sequence[int]) -> StepResult: ...


@runtime_checkable
class AnsweredEnv(Protocol):
    """An environment with a reference answer (``ProblemEnv``): its trajectories carry it, so a transcript
    shows what the grader compared the completion with."""

    answer: str


def reference_answer(env: Env) -> str | None:
    """The env's reference answer, when it has one."""
    return env.answer if isinstance(env, AnsweredEnv) and isinstance(env.answer, str) else None


@runtime_checkable
class EnvGroupBuilder(Protocol):
    """Makes the group of environments whose rewards are centred against each other."""

    def make_envs(self) -> Sequence[Env]: ...


@runtime_checkable
class RLDataset(Protocol):
    """Group builders for each training step; ``len`` is the number of steps it can serve."""

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Transition:
    """One policy turn: what it saw, what it sampled (with the sampler's logprobs), what it got."""

    observation: ModelInput
    action: tuple[int, ...]
    action_logprobs: tuple[float, ...]
    reward: float
    episode_done: bool
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Trajectory:
    transitions: tuple[Transition, ...]
    answer: str | None = None
    """The env's reference answer, when it has one (``AnsweredEnv``): kept for transcripts."""

    @property
    def total_reward(self) -> float:
        return sum(t.reward for t in self.transitions)

    @property
    def metrics(self) -> dict[str, float]:
        """Each metric's value at the last turn that reported it."""
        merged: dict[str, float] = {}
        for transition in self.transitions:
            merged.update(transition.metrics)
        return merged


@dataclass(frozen=True)
class TrajectoryGroup:
    trajectories: tuple[Trajectory, ...]

    @property
    def rewards(self) -> list[float]:
        return [t.total_reward for t in self.trajectories]
