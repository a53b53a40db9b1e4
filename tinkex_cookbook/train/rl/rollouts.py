"""Rollouts: run every environment of a batch of groups against one sampling client.

All first turns are submitted before any result is awaited (one request per
environment), so a remote sampler works on the whole batch at once; later
turns of multi-turn environments go out together in the same way. Each
request carries a seed derived from the run seed, the step and the
environment's position, so a resumed run samples exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tinkex_cookbook.ports import APIFuture, ModelInput, SampleResponse, SamplingClient, SamplingParams
from tinkex_cookbook.train.rl.types import (
    Env,
    EnvGroupBuilder,
    StopCondition,
    Trajectory,
    TrajectoryGroup,
    Transition,
    reference_answer,
)
from tinkex_cookbook.train.types import stop_tuple

MAX_TURNS = 32


def request_seed(seed: int, step: int, group: int, env: int, turn: int) -> int:
    """A stable 31-bit seed per sampling request (``random`` hashes string seeds with SHA-512)."""
    return random.Random(f"{seed}:{step}:{group}:{env}:{turn}").getrandbits(31)


@dataclass
class _Episode:
    env: Env
    group: int
    index: int
    observation: ModelInput
    stop: StopCondition
    transitions: list[Transition]
    done: bool = False


@dataclass
class PendingRollouts:
    """Sampling requests in flight for one step; ``gather`` steps the environments to the end."""

    sampling_client: SamplingClient
    params: SamplingParams
    seed: int
    step: int
    episodes: list[_Episode]
    group_sizes: list[int]
    futures: list[APIFuture[SampleResponse]]
    turn: int = 0

    def gather(self, on_episode_done: Callable[[], None] | None = None) -> list[TrajectoryGroup]:
        """Await every turn; ``on_episode_done`` is called as each episode ends (for progress displays)."""
        while True:
            live = [e for e in self.episodes if not e.done]
            for episode, future in zip(live, self.futures, strict=True):
                _apply(episode, future.result())
                if episode.done and on_episode_done is not None:
                    on_episode_done()
            live = [e for e in self.episodes if not e.done]
            self.turn += 1
            if not live or self.turn >= MAX_TURNS:
                break
            self.futures = [self._submit(e) for e in live]
        groups: list[list[Trajectory]] = [[] for _ in self.group_sizes]
        for episode in self.episodes:
            groups[episode.group].append(Trajectory(tuple(episode.transitions), reference_answer(episode.env)))
        return [TrajectoryGroup(tuple(g)) for g in groups]

    def _submit(self, episode: _Episode) -> APIFuture[SampleResponse]:
        seed = request_seed(self.seed, self.step, episode.group, episode.index, self.turn)
        stop = stop_tuple(episode.stop) if episode.stop is not None else None
        params = replace(self.params, seed=seed, stop=stop)
        return self.sampling_client.sample(episode.observation, 1, params)


def _apply(episode: _Episode, response: SampleResponse) -> None:
    sequence = response.sequences[0]
    logprobs = sequence.logprobs or tuple(0.0 for _ in sequence.tokens)
    result = episode.env.step(sequence.tokens)
    episode.transitions.append(Transition(
        episode.observation, tuple(sequence.tokens), tuple(logprobs), result.reward, result.episode_done,
        dict(result.metrics),
    ))
    if result.episode_done or result.next_observation is None:
        episode.done = True
    else:
        episode.observation, episode.stop = result.next_observation, result.next_stop or episode.stop


def start_rollouts(
    sampling_client: SamplingClient, builders: Sequence[EnvGroupBuilder], params: SamplingParams,
    seed: int, step: int,
) -> PendingRollouts:
    """Make every group's environments and submit their first turns; nothing is awaited here."""
    episodes: list[_Episode] = []
    sizes: list[int] = []
    for g, builder in enumerate(builders):
        envs = list(builder.make_envs())
        sizes.append(len(envs))
        for i, env in enumerate(envs):
            observation, stop = env.initial_observation()
            episodes.append(_Episode(env, g, i, observation, stop, []))
    pending = PendingRollouts(sampling_client, params, seed, step, episodes, sizes, [])
    pending.futures = [pending._submit(e) for e in episodes]
    return pending
