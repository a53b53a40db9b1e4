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
from typing import Any

from tinkex_cookbook.pipeline.context import Context
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    CHECKPOINTS,
    adam_params,
    advance_step,
    last_checkpoint,
    log_step,
    register_checkpoint_stages,
    save_sampler,
)
from tinkex_cookbook.ports import (
    BlobStore,
    DatasetStore,
    ModelInput,
    SamplingParams,
    TrainingService,
)
from tinkex_cookbook.train.rl.data import (
    apply_kl_penalty,
    rollout_metrics,
    sampler_trainer_kl,
    to_datum,
    turn_samples,
)
from tinkex_cookbook.train.rl.envs import build_rl_dataset
from tinkex_cookbook.train.rl.rollouts import start_rollouts


def _sampling_params(cfg: Any) -> SamplingParams:
    return SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)


def _save_sampler(ctx: Context, service: TrainingService) -> None:
    """Save the current weights for sampling and make them the sampler of the next rollouts."""
    ctx.resources["sampler"] = save_sampler(ctx, service, f"sampler-{ctx.state['step']:06d}")


@stage("rl_build_envs", ports=("dataset_store",))
def rl_build_envs(ctx: Context, dataset_store: DatasetStore) -> None:
    cfg: Any = ctx.config
    tokenizer = ctx.need("training_client").get_tokenizer()
    dataset = build_rl_dataset(cfg, ctx.need("renderer"), tokenizer, dataset_store)
    ctx.resources["rl_dataset"] = dataset
    ctx.state["total_steps"] = ctx.state["num_steps"] = len(dataset)


@stage("rl_resume", ports=("training_client", "blob_store"))
def rl_resume(ctx: Context, training_client: TrainingService, blob_store: BlobStore) -> None:
    """Continue after the last checkpoint with its weights and samplers, or start from the base weights."""
    cfg: Any = ctx.config
    if cfg.kl_penalty_coef:
        ctx.resources["base_sampler"] = training_client.create_sampling_client(base_model=cfg.model_name)
    last = last_checkpoint(ctx, blob_store)
    if last is None:
        _save_sampler(ctx, training_client)
        return
    path = last.require("sampler_path", blob_store.uri(ctx.artifact_key(CHECKPOINTS)))
    ctx.resources["sampler"] = (path, training_client.create_sampling_client(model_path=path))
    # Legitimately absent: on-policy runs, and an off-policy run's checkpoint at its last step, have no
    # prefetched batch (a resume with another off_policy_steps is refused as a changed config).
    if "prefetch_sampler_path" in last.extra:
        path = last.extra["prefetch_sampler_path"]
        ctx.resources["prefetch_sampler"] = (path, training_client.create_sampling_client(model_path=path))


def _start(ctx: Context, step: int, sampler: tuple[str, Any]) -> tuple[int, Any, str]:
    cfg: Any = ctx.config
    builders = ctx.need("rl_dataset").get_batch(step)
    return step, start_rollouts(sampler[1], builders, _sampling_params(cfg), cfg.seed, step), sampler[0]


@stage("rl_sample")
def rl_sample(ctx: Context) -> None:
    """Gather this step's trajectories; off-policy, first submit the next step's from the same sampler."""
    cfg: Any = ctx.config
    step, started = ctx.state["step"], time.monotonic()
    sampler = ctx.need("sampler")
    if cfg.off_policy_steps:
        prefetched = ctx.resources.pop("prefetched", None)
        if prefetched is None or prefetched[0] != step:
            prefetched = _start(ctx, step, ctx.resources.pop("prefetch_sampler", sampler))
        if step + 1 < ctx.state["num_steps"]:
            ctx.resources["prefetched"] = _start(ctx, step + 1, sampler)
        pending = prefetched[1]
    else:
        pending = _start(ctx, step, sampler)[1]
    with ctx.task("sample", len(pending.episodes)) as task:
        ctx.resources["groups"] = pending.gather(task.advance)
    ctx.resources["step_started"], ctx.resources["sample_seconds"] = started, time.monotonic() - started


@stage("rl_train")
def rl_train(ctx: Context) -> None:
    """Advantages, KL penalty, datums; one forward_backward and one optimizer step."""
    cfg: Any = ctx.config
    groups = ctx.need("groups")
    samples, skipped = turn_samples(groups, cfg.remove_constant_reward_groups)
    metrics: dict[str, float] = {**rollout_metrics(groups), "groups_skipped": float(skipped),
                                 "num_datums": float(len(samples))}
    if cfg.kl_penalty_coef:
        metrics["kl_policy_base"] = 0.0
    if samples and cfg.kl_penalty_coef:
        base = ctx.need("base_sampler")
        futures = [base.compute_logprobs(ModelInput.from_ints(s.tokens)) for s in samples]
        base_logprobs = [f.result()[s.action_start + 1:] for f, s in zip(futures, samples, strict=True)]
        metrics["kl_policy_base"] = apply_kl_penalty(samples, base_logprobs, cfg.kl_penalty_coef)
    adam = adam_params(ctx)
    metrics["learning_rate"] = adam.learning_rate
    if samples:
        client = ctx.need("training_client")
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
    metrics.update(advance_step(ctx, tokens, ctx.need("step_started")), sample_seconds=ctx.need("sample_seconds"))
    ctx.resources["step_metrics"] = metrics


@stage("rl_update_sampler", ports=("training_client",))
def rl_update_sampler(ctx: Context, training_client: TrainingService) -> None:
    _save_sampler(ctx, training_client)


@stage("rl_log")
def rl_log(ctx: Context) -> None:
    log_step(ctx)


def _extra(ctx: Context) -> dict[str, str]:
    """The sampler the next step samples from; off-policy, also the older one its prefetched batch used."""
    extra = {"sampler_path": ctx.need("sampler")[0]}
    if "prefetched" in ctx.resources:
        extra["prefetch_sampler_path"] = ctx.resources["prefetched"][2]
    return extra


register_checkpoint_stages("rl", _extra, lambda ctx: ctx.need("sampler")[0])
