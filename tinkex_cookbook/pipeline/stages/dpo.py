"""Stages of DPO: preference pairs in, the policy pulled toward the chosen completions.

The reference policy is the starting weights, saved once for sampling; its
logprobs for a batch come from ``compute_logprobs`` on that frozen sampler.
The DPO loss is not a backend loss, so each step runs ``forward`` for the
policy's logprobs, computes loss and gradient here, and sends the gradient
back through ``forward_backward`` (``train/custom_loss.py``), then ``optim_step``.
"""

from __future__ import annotations

import random
import time

import numpy as np

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import (
    CHECKPOINT_EXTRA,
    CHECKPOINTS,
    NUM_STEPS,
    RENDERER,
    RESUMED,
    STEP_METRICS,
    TOTAL_STEPS,
    TRAINER,
    SavedSampler,
    adam_params,
    advance_step,
    eval_due,
    save_sampler,
)
from tinkex_cookbook.ports import BlobStore, DatasetStore, Datum, ModelInput, SamplingClient, TrainingService
from tinkex_cookbook.recipes.dpo import DpoConfig
from tinkex_cookbook.train.custom_loss import forward_backward_custom
from tinkex_cookbook.train.dpo import dpo_loss, pair_datums
from tinkex_cookbook.train.named_datasets import load_preference_rows
from tinkex_cookbook.train.preference_data import parse_preference_rows

TRAIN_PAIRS: Key[list[tuple[Datum, Datum]]] = Key("train_pairs")
"""Each pair rendered as its (chosen, rejected) datums."""
TEST_PAIRS: Key[list[tuple[Datum, Datum]]] = Key("test_pairs")
REFERENCE: Key[SavedSampler] = Key("reference")
"""The frozen reference policy: the run's starting weights, saved for sampling."""
BATCHES_PER_EPOCH: Key[int] = Key("batches_per_epoch", state=True)


@stage("dpo_load_pairs", reads=(RENDERER,),
       writes=(TRAIN_PAIRS, TEST_PAIRS, BATCHES_PER_EPOCH, NUM_STEPS, TOTAL_STEPS))
def dpo_load_pairs(ctx: Context[DpoConfig], dataset_store: DatasetStore) -> None:
    """Parse, shuffle with the run's seed, hold out ``test_size`` pairs, render both sides of each.

    A named set (``hh-rlhf``, ``UltraFeedback``, ``HelpSteer``) is read by its hub id when the store has no
    export under its name (``train/named_datasets.py``). The seeded shuffle permutes row indices (the same permutation as shuffling the pairs: it
    depends only on the length), so a pair that fails to render is named by its row in the file.
    """
    cfg = ctx.config
    pairs = parse_preference_rows(load_preference_rows(dataset_store, cfg.dataset, cfg.dataset_split))
    order = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(order)
    if len(pairs) - cfg.test_size < cfg.batch_size:
        raise DatasetError(f"dataset {cfg.dataset!r} has {len(pairs)} pairs: too few for test_size="
                           f"{cfg.test_size} plus one batch of batch_size={cfg.batch_size}")
    renderer = ctx.need(RENDERER)
    by_row = [pair_datums(p.prompt, p.chosen, p.rejected, renderer, cfg.max_length, index)
              for index, p in enumerate(ctx.track(pairs, "render pairs"))]
    rendered = [by_row[index] for index in order]
    ctx.put(TEST_PAIRS, rendered[: cfg.test_size])
    ctx.put(TRAIN_PAIRS, rendered[cfg.test_size:])
    per_epoch = len(rendered[cfg.test_size:]) // cfg.batch_size
    ctx.put(BATCHES_PER_EPOCH, per_epoch)
    ctx.put(NUM_STEPS, per_epoch * cfg.num_epochs)
    ctx.put(TOTAL_STEPS, per_epoch * cfg.num_epochs)


@stage("dpo_reference", reads=(TRAINER, RESUMED), writes=(REFERENCE, CHECKPOINT_EXTRA))
def dpo_reference(ctx: Context[object], training_client: TrainingService, blob_store: BlobStore) -> None:
    """The frozen reference is the run's starting weights: saved now, or reopened from the checkpoint."""
    last = ctx.need(RESUMED)
    if last is None:
        reference = save_sampler(ctx, training_client, "reference")
    else:
        path = last.require("reference_path", blob_store.uri(ctx.artifact_key(CHECKPOINTS)))
        reference = SavedSampler(path, training_client.create_sampling_client(model_path=path))
    ctx.put(REFERENCE, reference)
    ctx.put(CHECKPOINT_EXTRA, {"reference_path": reference.path})


def _reference_logprobs(reference: SamplingClient, data: list[Datum]) -> list[np.ndarray]:
    """The reference's logprob of every target token, all requests submitted before any is awaited."""
    futures = [reference.compute_logprobs(ModelInput.from_ints(
        [*d.model_input.to_ints(), int(d.loss_fn_inputs["target_tokens"].to_numpy()[-1])])) for d in data]
    return [np.asarray(f.result()[1:], np.float32) for f in futures]


def _weights(data: list[Datum]) -> list[np.ndarray]:
    return [d.loss_fn_inputs["weights"].to_numpy() for d in data]


def _batch(ctx: Context[DpoConfig]) -> list[Datum]:
    cfg = ctx.config
    epoch, index = divmod(ctx.state["step"], ctx.need(BATCHES_PER_EPOCH))
    order = list(range(len(ctx.need(TRAIN_PAIRS))))
    random.Random(cfg.seed + 1 + epoch).shuffle(order)
    picked = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]
    return [datum for i in picked for datum in ctx.need(TRAIN_PAIRS)[i]]


@stage("dpo_step", reads=(TRAINER, TRAIN_PAIRS, BATCHES_PER_EPOCH, REFERENCE), writes=(STEP_METRICS,))
def dpo_step(ctx: Context[DpoConfig]) -> None:
    cfg = ctx.config
    started = time.monotonic()
    data = _batch(ctx)
    reference, weights = _reference_logprobs(ctx.need(REFERENCE).client, data), _weights(data)
    client = ctx.need(TRAINER)
    _, metrics, backward = forward_backward_custom(
        client, data, lambda policy: dpo_loss(policy, reference, weights, cfg.beta))
    adam = adam_params(ctx)
    optim = client.optim_step(adam)
    backward.result()
    ctx.put(STEP_METRICS, {
        **metrics, **{k: float(v) for k, v in optim.result().metrics.items()}, "learning_rate": adam.learning_rate,
        **advance_step(ctx, sum(d.model_input.length for d in data), started),
    })


@stage("dpo_evaluate", reads=(TRAINER, TEST_PAIRS, REFERENCE))
def dpo_evaluate(ctx: Context[DpoConfig]) -> None:
    """DPO loss and accuracy on the held-out pairs (forward only: no gradient)."""
    data = [datum for pair in ctx.need(TEST_PAIRS) for datum in pair]
    if not data or not eval_due(ctx):
        return
    with ctx.task("evaluate", len(data)) as task:
        policy = [o["logprobs"].to_numpy() for o in
                  ctx.need(TRAINER).forward(data, "cross_entropy").result().loss_fn_outputs]
        reference = _reference_logprobs(ctx.need(REFERENCE).client, data)
        task.advance(len(data))
    _, _, metrics = dpo_loss(policy, reference, _weights(data), ctx.config.beta)
    ctx.emit("train.eval", step=ctx.state["step"], **{f"test_{k}": v for k, v in metrics.items()})
