"""RL data processing invariants: advantages, KL penalty, datum masks, rollout seeds."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook.ports import ModelInput
from tinkex_cookbook.train.rl.data import (
    apply_kl_penalty,
    group_advantages,
    is_constant,
    to_datum,
    turn_samples,
)
from tinkex_cookbook.train.rl.rollouts import request_seed
from tinkex_cookbook.train.rl.types import Trajectory, TrajectoryGroup, Transition

rewards = st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=16)
tokens = st.lists(st.integers(0, 1000), min_size=1, max_size=20)


@given(rewards)
def test_advantages_are_centred_within_the_group(values: list[float]) -> None:
    advantages = group_advantages(values)
    assert abs(sum(advantages)) < 1e-6 * max(1.0, sum(abs(v) for v in values))
    ranked = sorted(range(len(values)), key=values.__getitem__)
    assert [advantages[i] for i in ranked] == sorted(advantages)


def _transition(observation: list[int], action: list[int], reward: float) -> Transition:
    return Transition(ModelInput.from_ints(observation), tuple(action), tuple(-0.5 for _ in action), reward, True)


@given(tokens, tokens, st.floats(-5, 5, allow_nan=False))
def test_datum_puts_logprobs_and_advantages_on_the_action_only(ob: list[int], ac: list[int], adv: float) -> None:
    group = TrajectoryGroup((Trajectory((_transition(ob, ac, adv),)), Trajectory((_transition(ob, ac, 0.0),))))
    samples, _ = turn_samples([group], remove_constant_reward_groups=False)
    datum = to_datum(samples[0])
    n = len(ob) + len(ac) - 1
    assert datum.model_input.to_ints() == (ob + ac)[:-1]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == (ob + ac)[1:]
    advantages, logprobs = datum.loss_fn_inputs["advantages"].to_numpy(), datum.loss_fn_inputs["logprobs"].to_numpy()
    assert advantages.shape == logprobs.shape == (n,)
    assert not advantages[: len(ob) - 1].any() and not logprobs[: len(ob) - 1].any()
    assert np.allclose(logprobs[len(ob) - 1 :], -0.5)
    assert np.allclose(advantages[len(ob) - 1 :], adv / 2)


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=6))
def test_constant_groups_are_skipped_and_counted(values: list[float]) -> None:
    group = TrajectoryGroup(tuple(Trajectory((_transition([1, 2], [3], v),)) for v in values))
    samples, skipped = turn_samples([group])
    assert skipped == int(is_constant(values))
    assert len(samples) == (0 if skipped else len(values))


@given(st.lists(st.tuples(st.lists(st.floats(-3, 0, allow_nan=False), min_size=1, max_size=8),
                          st.floats(-3, 0, allow_nan=False)), min_size=1, max_size=5), st.floats(0, 1))
def test_kl_penalty_keeps_the_mean_advantage(rows: list[tuple[list[float], float]], coef: float) -> None:
    samples = []
    for sampled, _ in rows:
        transition = Transition(ModelInput.from_ints([1, 2]), tuple(range(len(sampled))), tuple(sampled), 1.0, True)
        samples.append(turn_samples([TrajectoryGroup((Trajectory((transition,)),))], False)[0][0])
    before = np.concatenate([s.advantages.copy() for s in samples])
    base = [[b] * len(sampled) for sampled, b in rows]
    apply_kl_penalty(samples, base, coef)
    after = np.concatenate([s.advantages for s in samples])
    assert abs(after.mean() - before.mean()) < 1e-4


def test_request_seeds_are_stable_and_distinct() -> None:
    assert request_seed(0, 3, 1, 2, 0) == request_seed(0, 3, 1, 2, 0)
    seeds = {request_seed(0, step, g, e, 0) for step in range(4) for g in range(4) for e in range(4)}
    assert len(seeds) == 64
