"""Stages of distillation: student samples, teacher scores (on-policy) or writes (off-policy), student trains.

The teacher is a sampling client: a base model (``teacher_model``) or saved
weights (``teacher_path``) on the same training backend; off-policy, it may
also be the ``llm_client`` port (any OpenAI-compatible model), whose replies
become supervised targets. Evaluation samples the student on a fixed set of
prompts with fixed seeds and reports its KL to the teacher, so runs and steps
compare like for like.
"""

from __future__ import annotations

import random
import time
from functools import partial

import numpy as np

from tinkex_cookbook.errors import CookbookError, DatasetError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    NUM_STEPS,
    RENDERER,
    SAMPLER,
    STEP_METRICS,
    TOTAL_STEPS,
    TRAINER,
    adam_params,
    advance_step,
    eval_due,
)
from tinkex_cookbook.pipeline.stages.transcripts import TRANSCRIPT
from tinkex_cookbook.ports import (
    DatasetStore,
    Datum,
    ForwardBackwardOutput,
    LLMClient,
    SamplingClient,
    SamplingParams,
    TrainingService,
)
from tinkex_cookbook.ports.training import TokenizingSampler, TokenizingService
from tinkex_cookbook.recipes.distillation import DistillationConfig
from tinkex_cookbook.train.datum import datum_from_model_input_weights, weighted_nll
from tinkex_cookbook.train.distillation import (
    PromptEnv,
    apply_teacher_advantages,
    load_prompts,
    on_policy_samples,
    teacher_logprobs,
)
from tinkex_cookbook.train.renderers import Message, TrainOnWhat
from tinkex_cookbook.train.rl.data import rollout_metrics, to_datum
from tinkex_cookbook.train.rl.envs import GroupOf
from tinkex_cookbook.train.rl.rollouts import request_seed, start_rollouts
from tinkex_cookbook.train.rl.types import TrajectoryGroup
from tinkex_cookbook.train.tokenizer_match import check_session_pair
from tinkex_cookbook.train.transcripts import distill_rows, example_nlls, off_policy_rows
from tinkex_cookbook.train.types import stop_tuple

EVAL_STEP = -1
"""The rollout step number of evaluation samples: fixed, so every evaluation sees the same seeds."""

PROMPTS: Key[list[list[Message]]] = Key("prompts")
EVAL_PROMPTS: Key[list[list[Message]]] = Key("eval_prompts")
TEACHER: Key[SamplingClient] = Key("teacher")
"""The teacher on the training backend (``teacher=sampler``); absent when the teacher is the llm_client port."""


@stage("distill_setup", reads=(TRAINER, RENDERER), writes=(PROMPTS, EVAL_PROMPTS, TEACHER, NUM_STEPS, TOTAL_STEPS))
def distill_setup(ctx: Context[DistillationConfig], training_client: TrainingService,
                  dataset_store: DatasetStore) -> None:
    cfg = ctx.config
    prompts = load_prompts(dataset_store, cfg.dataset, cfg.dataset_split)
    if len(prompts) < cfg.batch_size + cfg.eval_size:
        raise DatasetError(f"dataset {cfg.dataset!r} has {len(prompts)} prompts, fewer than batch_size="
                           f"{cfg.batch_size} plus eval_size={cfg.eval_size}")
    ctx.put(EVAL_PROMPTS, prompts[: cfg.eval_size])
    ctx.put(PROMPTS, prompts[cfg.eval_size:])
    ctx.put(NUM_STEPS, cfg.num_steps)
    ctx.put(TOTAL_STEPS, cfg.num_steps)
    if cfg.teacher == "sampler":
        teacher = training_client.create_sampling_client(
            model_path=cfg.teacher_path, base_model=None if cfg.teacher_path else cfg.teacher_model)
        _check_teacher_tokenizer(ctx, training_client, teacher)
        ctx.put(TEACHER, teacher)


def _check_teacher_tokenizer(ctx: Context[DistillationConfig], service: TrainingService,
                             teacher: SamplingClient) -> None:
    """Compare the opened teacher's tokenizer with the student's, when the backend can say what it is
    (its sampling clients' ``get_tokenizer``, else the service's ``tokenizer_for`` a base model name)."""
    cfg = ctx.config
    try:
        if isinstance(teacher, TokenizingSampler):
            theirs = teacher.get_tokenizer()
        elif isinstance(service, TokenizingService) and cfg.teacher_model is not None:
            theirs = service.tokenizer_for(cfg.teacher_model)
        else:  # e.g. a Tinker checkpoint: its backend names no tokenizer for a saved path
            return
    except CookbookError:  # no tokenizer files to be found for the teacher: a safeguard, not a requirement
        return
    name = f"teacher_model {cfg.teacher_model!r}" if cfg.teacher_model else f"teacher_path {cfg.teacher_path!r}"
    renderer = ctx.need(RENDERER)
    check_session_pair(cfg.model_name, ctx.need(TRAINER).get_tokenizer(), name, theirs, renderer.special_tokens)


def _batch_prompts(ctx: Context[DistillationConfig], step: int) -> list[list[Message]]:
    cfg = ctx.config
    prompts = ctx.need(PROMPTS)
    epoch, index = divmod(step * cfg.batch_size, len(prompts) - len(prompts) % cfg.batch_size)
    order = list(range(len(prompts)))
    random.Random(f"{cfg.seed}:{epoch}").shuffle(order)
    return [prompts[i] for i in order[index : index + cfg.batch_size]]


def _rollouts(
    ctx: Context[DistillationConfig], prompts: list[list[Message]], step: int, group_size: int,
) -> list[TrajectoryGroup]:
    cfg = ctx.config
    renderer = ctx.need(RENDERER)
    builders = [GroupOf(partial(PromptEnv, renderer, p), group_size) for p in prompts]
    params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
    with ctx.task("sample", len(prompts) * group_size) as task:
        return start_rollouts(ctx.need(SAMPLER).client, builders, params, cfg.seed, step).gather(task.advance)


def _train(
    ctx: Context[DistillationConfig], data: list[Datum], loss_fn: str, metrics: dict[str, float], started: float,
) -> ForwardBackwardOutput:
    """Submit forward_backward and the optimizer step, await both, and record the step's metrics."""
    client, adam = ctx.need(TRAINER), adam_params(ctx)
    backward = client.forward_backward(data, loss_fn)
    optim = client.optim_step(adam)
    result = backward.result()
    if loss_fn == "cross_entropy":
        nll, weight = weighted_nll([o["logprobs"] for o in result.loss_fn_outputs], data)
        metrics["train_mean_nll"] = nll / max(weight, 1e-9)
    metrics.update({k: float(v) for k, v in result.metrics.items()})
    metrics.update({k: float(v) for k, v in optim.result().metrics.items()})
    ctx.put(STEP_METRICS, {
        **metrics, "learning_rate": adam.learning_rate,
        **advance_step(ctx, sum(d.model_input.length for d in data), started),
    })
    return result


def _kept(cfg: DistillationConfig) -> int:
    """Trajectories a step keeps for its transcript (none when transcripts are off)."""
    return cfg.transcripts_per_step if cfg.transcript_every else 0


STEP_READS = (TRAINER, RENDERER, PROMPTS, SAMPLER)
"""What a training step reads (besides the teacher)."""


@stage("distill_on_policy_step", reads=(*STEP_READS, TEACHER), writes=(STEP_METRICS, TRANSCRIPT))
def distill_on_policy_step(ctx: Context[DistillationConfig]) -> None:
    cfg = ctx.config
    started, step = time.monotonic(), ctx.state["step"]
    prompts = _batch_prompts(ctx, step)
    groups = _rollouts(ctx, prompts, step, cfg.group_size)
    samples = on_policy_samples(groups)
    teacher_lps = teacher_logprobs(ctx.need(TEACHER), samples)
    kl = apply_teacher_advantages(samples, teacher_lps, cfg.kl_coef)
    metrics = {**rollout_metrics(groups), "teacher_kl": kl, "num_datums": float(len(samples))}
    for name in ("reward_mean", "reward_std"):
        metrics.pop(name, None)
    _train(ctx, [to_datum(s) for s in samples], cfg.loss_fn, metrics, started)
    kls = [np.asarray(s.transition.action_logprobs, np.float32) - t for s, t in zip(samples, teacher_lps, strict=True)]
    ctx.put(TRANSCRIPT, distill_rows(groups, prompts, ctx.need(RENDERER).tokenizer, kls, _kept(cfg)))


def _teacher_replies(
    ctx: Context[DistillationConfig], prompts: list[list[Message]], step: int, llm: LLMClient,
) -> list[Message]:
    cfg = ctx.config
    if cfg.teacher == "llm":
        return [{"role": "assistant", "content": llm.complete(p, max_tokens=cfg.max_tokens,
                                                               temperature=cfg.temperature).text}
                for p in prompts]
    renderer, teacher = ctx.need(RENDERER), ctx.need(TEACHER)
    futures = [teacher.sample(renderer.build_generation_prompt(p), 1, SamplingParams(
        max_tokens=cfg.max_tokens, temperature=cfg.temperature, stop=stop_tuple(renderer.get_stop_sequences()),
        seed=request_seed(cfg.seed, step, i, 0, 0))) for i, p in enumerate(prompts)]
    return [renderer.parse_response(list(f.result().sequences[0].tokens))[0]
            for f in ctx.track(futures, "teacher replies")]


@stage("distill_off_policy_step", reads=(*STEP_READS, TEACHER), writes=(STEP_METRICS, TRANSCRIPT))
def distill_off_policy_step(ctx: Context[DistillationConfig], llm_client: LLMClient) -> None:
    """Supervised learning on what the teacher answers to this step's prompts."""
    cfg = ctx.config
    started, step = time.monotonic(), ctx.state["step"]
    prompts = _batch_prompts(ctx, step)
    replies = _teacher_replies(ctx, prompts, step, llm_client)
    renderer = ctx.need(RENDERER)
    data = []
    for prompt, reply in zip(prompts, replies, strict=True):
        model_input, weights = renderer.build_supervised_example([*prompt, reply], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        data.append(datum_from_model_input_weights(model_input, weights, cfg.max_length, "mean"))
    result = _train(ctx, data, "cross_entropy", {"num_datums": float(len(data))}, started)
    kept = _kept(ctx.config)
    nlls = example_nlls([o["logprobs"] for o in result.loss_fn_outputs[:kept]], data[:kept])
    ctx.put(TRANSCRIPT, off_policy_rows(prompts, replies, nlls, kept))


@stage("distill_evaluate", reads=(RENDERER, SAMPLER, EVAL_PROMPTS), optional=(TEACHER,))
def distill_evaluate(ctx: Context[DistillationConfig]) -> None:
    """The student's KL to the teacher on the fixed evaluation prompts (same seeds every time)."""
    teacher = ctx.get(TEACHER)
    if not ctx.config.eval_size or teacher is None or not eval_due(ctx):
        return
    samples = on_policy_samples(_rollouts(ctx, ctx.need(EVAL_PROMPTS), EVAL_STEP, 1))
    kl = apply_teacher_advantages(samples, teacher_logprobs(teacher, samples), 1.0)
    ctx.emit("train.eval", step=ctx.state["step"], eval_teacher_kl=kl)
