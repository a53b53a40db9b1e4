"""Stages of RL with group-relative advantages: sample, grade, centre, train, refresh the sampler.

One step: every environment of ``batch_size`` groups samples through the
current sampling client; rewards minus their group mean become advantages
(groups with equal rewards are skipped); each turn becomes a datum carrying
the sampler's logprobs, trained with ``importance_sampling`` (or ``ppo`` /
``cispo``); then the new weights are saved for sampling and the next step
samples from them. With ``off_policy_steps=1`` the next step's samples are
submitted before this step trains, from the weights one step older, so
sampling and training overlap; the importance ratio corrects for the lag.

Checkpoints record the sampler paths a resume needs, and every sampling
request's seed comes from (run seed, step, position), so a resumed run
continues with the same samples and the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    CHECKPOINT_EXTRA,
    CHECKPOINTS,
    NUM_STEPS,
    RENDERER,
    RESUMED,
    SAMPLER,
    STEP_METRICS,
    TOTAL_STEPS,
    TRAINER,
    SavedSampler,
    adam_params,
    advance_step,
    eval_due,
    save_sampler,
)
from tinkex_cookbook.pipeline.stages.transcripts import TRANSCRIPT
from tinkex_cookbook.ports import (
    BlobStore,
    DatasetStore,
    ModelInput,
    SamplingClient,
    SamplingParams,
    TrainingService,
)
from tinkex_cookbook.recipes.rl_basic import RlBasicConfig
from tinkex_cookbook.train.rl.data import (
    apply_kl_penalty,
    rollout_metrics,
    sampler_trainer_kl,
    to_datum,
    turn_samples,
)
from tinkex_cookbook.train.rl.envs import build_rl_dataset, problem_set
from tinkex_cookbook.train.rl.rollouts import PendingRollouts, start_rollouts
from tinkex_cookbook.train.rl.types import RLDataset, TrajectoryGroup
from tinkex_cookbook.train.transcripts import rl_rows


class Prefetched(NamedTuple):
    """Off-policy: the next step's rollouts, submitted early, and the sampler path they came from."""

    step: int
    rollouts: PendingRollouts
    sampler_path: str


PROBLEMS: Key[list[tuple[str, str]]] = Key("problems")
"""(question, final answer) rows of the ``problems`` env."""
RL_DATASET: Key[RLDataset] = Key("rl_dataset")
BASE_SAMPLER: Key[SamplingClient] = Key("base_sampler")
"""The base model, for the KL penalty (``kl_penalty_coef`` > 0)."""
PREFETCH_SAMPLER: Key[SavedSampler] = Key("prefetch_sampler")
"""Resumed off-policy: the older sampler the checkpoint's prefetched batch came from."""
PREFETCHED: Key[Prefetched] = Key("prefetched")
GROUPS: Key[list[TrajectoryGroup]] = Key("groups")
STEP_STARTED: Key[float] = Key("step_started")
SAMPLE_SECONDS: Key[float] = Key("sample_seconds")


def _sampling_params(cfg: RlBasicConfig) -> SamplingParams:
    return SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)


@stage("rl_load_problems", writes=(PROBLEMS,))
def rl_load_problems(ctx: Context[RlBasicConfig], dataset_store: DatasetStore) -> None:
    """The ``problems`` env's rows, read and checked before any session opens; a ``train.dataset`` event
    (shown in run.log, as supervised runs show theirs) says what was read and from which columns."""
    cfg = ctx.config
    problems = problem_set(dataset_store, cfg)
    ctx.put(PROBLEMS, problems)
    ctx.emit("train.dataset", dataset=cfg.dataset, split=cfg.dataset_split, rows=len(problems),
             question_field=cfg.question_field, answer_field=cfg.answer_field)


@stage("rl_build_envs", reads=(TRAINER, RENDERER), optional=(PROBLEMS,),
       writes=(RL_DATASET, NUM_STEPS, TOTAL_STEPS))
def rl_build_envs(ctx: Context[RlBasicConfig], dataset_store: DatasetStore) -> None:
    tokenizer = ctx.need(TRAINER).get_tokenizer()
    dataset = build_rl_dataset(ctx.config, ctx.need(RENDERER), tokenizer, dataset_store, ctx.get(PROBLEMS))
    ctx.put(RL_DATASET, dataset)
    ctx.put(NUM_STEPS, len(dataset))
    ctx.put(TOTAL_STEPS, len(dataset))


@stage("rl_open_samplers", reads=(TRAINER, RESUMED), optional=(PREFETCHED,),
       writes=(BASE_SAMPLER, SAMPLER, PREFETCH_SAMPLER, CHECKPOINT_EXTRA))
def rl_open_samplers(ctx: Context[RlBasicConfig], training_client: TrainingService, blob_store: BlobStore) -> None:
    """The base model (for the KL penalty), and the resumed checkpoint's samplers or the starting weights."""
    if ctx.config.kl_penalty_coef:
        ctx.put(BASE_SAMPLER, training_client.create_sampling_client(base_model=ctx.config.model_name))
    last = ctx.need(RESUMED)
    if last is None:
        _use_sampler(ctx, save_sampler(ctx, training_client, f"sampler-{ctx.state['step']:06d}"))
        return
    path = last.require("sampler_path", blob_store.uri(ctx.artifact_key(CHECKPOINTS)))
    _use_sampler(ctx, SavedSampler(path, training_client.create_sampling_client(model_path=path)))
    # Legitimately absent: on-policy runs, and an off-policy run's checkpoint at its last step, have no
    # prefetched batch (a resume with another off_policy_steps is refused as a changed config).
    if "prefetch_sampler_path" in last.extra:
        path = last.extra["prefetch_sampler_path"]
        ctx.put(PREFETCH_SAMPLER, SavedSampler(path, training_client.create_sampling_client(model_path=path)))


def _use_sampler(ctx: Context[object], sampler: SavedSampler) -> None:
    """Sample the next rollouts from ``sampler``; a checkpoint records it, and off-policy the older
    sampler of the batch already prefetched."""
    ctx.put(SAMPLER, sampler)
    extra = {"sampler_path": sampler.path}
    prefetched = ctx.get(PREFETCHED)
    if prefetched is not None:
        extra["prefetch_sampler_path"] = prefetched.sampler_path
    ctx.put(CHECKPOINT_EXTRA, extra)


def _start(ctx: Context[RlBasicConfig], step: int, sampler: SavedSampler) -> Prefetched:
    cfg = ctx.config
    builders = ctx.need(RL_DATASET).get_batch(step)
    return Prefetched(step, start_rollouts(sampler.client, builders, _sampling_params(cfg), cfg.seed, step),
                      sampler.path)


@stage("rl_sample", reads=(RL_DATASET, SAMPLER, NUM_STEPS), optional=(PREFETCHED, PREFETCH_SAMPLER),
       writes=(PREFETCHED, PREFETCH_SAMPLER, GROUPS, STEP_STARTED, SAMPLE_SECONDS))
def rl_sample(ctx: Context[RlBasicConfig]) -> None:
    """Gather this step's trajectories; off-policy, first submit the next step's from the same sampler."""
    step, started = ctx.state["step"], time.monotonic()
    sampler = ctx.need(SAMPLER)
    if ctx.config.off_policy_steps:
        prefetched = ctx.get(PREFETCHED)
        ctx.discard(PREFETCHED)
        if prefetched is None or prefetched.step != step:
            prefetched = _start(ctx, step, ctx.get(PREFETCH_SAMPLER) or sampler)
        ctx.discard(PREFETCH_SAMPLER)
        if step + 1 < ctx.need(NUM_STEPS):
            ctx.put(PREFETCHED, _start(ctx, step + 1, sampler))
        pending = prefetched.rollouts
    else:
        pending = _start(ctx, step, sampler).rollouts
    with ctx.task("sample", len(pending.episodes)) as task:
        ctx.put(GROUPS, pending.gather(task.advance))
    ctx.put(STEP_STARTED, started)
    ctx.put(SAMPLE_SECONDS, time.monotonic() - started)


@stage("rl_train", reads=(TRAINER, GROUPS, STEP_STARTED, SAMPLE_SECONDS), optional=(BASE_SAMPLER,),
       writes=(STEP_METRICS, TRANSCRIPT))
def rl_train(ctx: Context[RlBasicConfig]) -> None:
    """Advantages, KL penalty, datums; one forward_backward and one optimizer step."""
    cfg = ctx.config
    groups = ctx.need(GROUPS)
    samples, skipped = turn_samples(groups, cfg.remove_constant_reward_groups)
    metrics: dict[str, float] = {**rollout_metrics(groups), "groups_skipped": float(skipped),
                                 "num_datums": float(len(samples))}
    if cfg.kl_penalty_coef:
        metrics["kl_policy_base"] = 0.0
    base = ctx.get(BASE_SAMPLER)
    if samples and cfg.kl_penalty_coef and base is not None:
        futures = [base.compute_logprobs(ModelInput.from_ints(s.tokens)) for s in samples]
        base_logprobs = [f.result()[s.action_start + 1:] for f, s in zip(futures, samples, strict=True)]
        metrics["kl_policy_base"] = apply_kl_penalty(samples, base_logprobs, cfg.kl_penalty_coef)
    adam = adam_params(ctx)
    metrics["learning_rate"] = adam.learning_rate
    if samples:
        client = ctx.need(TRAINER)
        datums = [to_datum(s) for s in samples]
        config = dict(cfg.loss_fn_config) if cfg.loss_fn_config else None
        fwd_bwd = client.forward_backward(datums, cfg.loss_fn, config)
        optim = client.optim_step(adam)
        result = fwd_bwd.result()
        train_logprobs = [o["logprobs"].to_numpy() for o in result.loss_fn_outputs]
        metrics["kl_sample_train"] = sampler_trainer_kl(samples, train_logprobs)
        metrics.update({k: float(v) for k, v in result.metrics.items()})
        metrics.update({k: float(v) for k, v in optim.result().metrics.items()})
        tokens = sum(d.model_input.length for d in datums)
    else:  # every group was skipped: nothing to learn from this batch
        tokens = 0
        metrics["kl_sample_train"] = 0.0
    metrics.update(advance_step(ctx, tokens, ctx.need(STEP_STARTED)), sample_seconds=ctx.need(SAMPLE_SECONDS))
    ctx.put(STEP_METRICS, metrics)
    keep = cfg.transcripts_per_step if cfg.transcript_every else 0
    ctx.put(TRANSCRIPT, rl_rows(groups, ctx.need(TRAINER).get_tokenizer(), keep, cfg.remove_constant_reward_groups))


@stage("rl_update_sampler", reads=(TRAINER,), optional=(PREFETCHED,), writes=(SAMPLER, CHECKPOINT_EXTRA))
def rl_update_sampler(ctx: Context[object], training_client: TrainingService) -> None:
    """Save the weights just trained for sampling: the next step samples from them."""
    _use_sampler(ctx, save_sampler(ctx, training_client, f"sampler-{ctx.state['step']:06d}"))


EVAL_STEP = -1
"""The rollout step number of evaluation samples: fixed, so every evaluation sees the same seeds."""


@stage("rl_evaluate", reads=(RL_DATASET, SAMPLER))
def rl_evaluate(ctx: Context[RlBasicConfig]) -> None:
    """Rewards of the current sampler on the first batch of problems, with fixed seeds (``train.eval``)."""
    if not eval_due(ctx):
        return
    cfg = ctx.config
    builders = ctx.need(RL_DATASET).get_batch(0)
    pending = start_rollouts(ctx.need(SAMPLER).client, builders, _sampling_params(cfg), cfg.seed, EVAL_STEP)
    with ctx.task("evaluate", len(pending.episodes)) as task:
        groups = pending.gather(task.advance)
    ctx.emit("train.eval", step=ctx.state["step"], **{f"test_{k}": v for k, v in rollout_metrics(groups).items()})
