"""Stages and keys every recipe shares: the training session, the tokenizer, checkpoints and resume.

There is one checkpoint path for every recipe. ``resume`` loads the run's last
record of ``checkpoints.jsonl`` (if any) into the trainer and the step counters
and hands the record on as ``RESUMED``, from which a recipe's own stages reopen
what they need (an RL run's samplers, a DPO run's reference). ``checkpoint``
(every ``save_every`` steps) and ``save_final`` record the trainer's state with
``CHECKPOINT_EXTRA``, the recipe's resume data, which those stages keep current.
A step loop's ``on_stop`` runs ``checkpoint`` too, so a run stopped by Ctrl-C or
SIGTERM is checkpointed at the step it reached. A run started again with the same
``log_path`` continues at the step after its last checkpoint.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol

from tinkex_cookbook.errors import BlobStoreError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.divergence import diverged, divergence_error
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.ports import AdamParams, BlobStore, SamplingClient, TrainingClient, TrainingService
from tinkex_cookbook.ports.training import FileCheckpoints
from tinkex_cookbook.run_folder import CHECKPOINTS
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint, resume_point, unloadable
from tinkex_cookbook.train.models import recommended_renderer
from tinkex_cookbook.train.renderers import Renderer, get_renderer
from tinkex_cookbook.train.schedules import lr_multiplier


class SavedSampler(NamedTuple):
    """Weights saved for sampling: where they are (recorded for a resume) and a client over them."""

    path: str
    client: SamplingClient


TRAINER: Key[TrainingClient] = Key("trainer")
"""The model being trained (opened from the ``training_client`` port, a ``TrainingService``)."""
RENDERER: Key[Renderer] = Key("renderer")
RESUMED: Key[CheckpointRecord | None] = Key("resumed")
"""The checkpoint a run continues from, or ``None`` for a fresh start."""
CHECKPOINT_EXTRA: Key[dict[str, str]] = Key("checkpoint_extra")
"""The recipe's resume data, recorded in each checkpoint's ``extra`` (e.g. the current sampler's path)."""
SAMPLER: Key[SavedSampler] = Key("sampler")
"""The current weights, saved for sampling (RL, distillation)."""
STEP_METRICS: Key[dict[str, float]] = Key("step_metrics")
TOTAL_STEPS: Key[int] = Key("total_steps", state=True)
NUM_STEPS: Key[int] = Key("num_steps", state=True)
"""How many times a step loop runs."""
NUM_BATCHES: Key[int] = Key("num_batches", state=True)
"""Batches per epoch, for recipes that loop over epochs and batches."""
STEP: Key[int] = Key("step", state=True)
"""Finished optimizer steps: what ``every`` counts (checkpoints, evaluations) unless a spec says otherwise."""
START_STEP: Key[int] = Key("start_step", state=True)
START_EPOCH: Key[int] = Key("start_epoch", state=True)
START_BATCH: Key[int] = Key("start_batch", state=True)
"""Where a resumed run's loops begin (``LoopSpec.start_key``)."""


class SessionConfig(Protocol):
    @property
    def model_name(self) -> str: ...
    @property
    def renderer_name(self) -> str | None: ...
    @property
    def lora_rank(self) -> int: ...
    @property
    def seed(self) -> int: ...


class OptimizerConfig(Protocol):
    @property
    def learning_rate(self) -> float: ...
    @property
    def lr_schedule(self) -> str: ...
    @property
    def warmup_steps(self) -> int: ...
    @property
    def adam_beta1(self) -> float: ...
    @property
    def adam_beta2(self) -> float: ...
    @property
    def adam_eps(self) -> float: ...


@stage("init_session", writes=(TRAINER, STEP))
def init_session(ctx: Context[SessionConfig], training_client: TrainingService) -> None:
    cfg = ctx.config
    ctx.put(TRAINER, training_client.create_lora_training_client(cfg.model_name, rank=cfg.lora_rank, seed=cfg.seed))
    ctx.state.update(step=0, tokens_seen=0)


@stage("init_tokenizer", reads=(TRAINER,), writes=(RENDERER,))
def init_tokenizer(ctx: Context[SessionConfig]) -> None:
    name = ctx.config.renderer_name or recommended_renderer(ctx.config.model_name)
    ctx.put(RENDERER, get_renderer(name, ctx.need(TRAINER).get_tokenizer()))


@stage("resume", reads=(TRAINER, TOTAL_STEPS), optional=(NUM_BATCHES,),
       writes=(RESUMED, STEP, START_STEP, START_EPOCH, START_BATCH))
def resume(ctx: Context[object], blob_store: BlobStore) -> None:
    """Continue from the run's last checkpoint, at exactly the next unfinished step.

    A step loop starts at ``start_step``; epoch and batch loops (``NUM_BATCHES``) at
    ``start_epoch`` and ``start_batch``. A finished run starts past its last step. The record is checked
    first (``resume_point``): against the run's planned steps, and its files against their checksums.
    """
    key, trainer = ctx.artifact_key(CHECKPOINTS), ctx.need(TRAINER)
    files = _files(trainer)
    last = resume_point(blob_store, key, ctx.need(TOTAL_STEPS), files)
    ctx.put(RESUMED, last)
    if last is None:
        return
    try:
        trainer.load_state(last.state_path or "").result()
    except BlobStoreError as exc:
        raise unloadable(blob_store, key, last, exc, files) from exc
    ctx.state.update(step=last.step, tokens_seen=last.tokens_seen, checkpoint_step=last.step)
    start = ctx.need(TOTAL_STEPS) if last.final else last.step
    per_epoch = ctx.get(NUM_BATCHES)
    if per_epoch:  # the epoch too: resumed after the last step, no epoch loop runs to set it
        ctx.state["epoch"] = last.epoch
        ctx.state["start_epoch"], ctx.state["start_batch"] = divmod(start, per_epoch)
    else:
        ctx.state["start_step"] = start
    if last.final:
        ctx.state["final_checkpoint"], ctx.state["final_sampler_path"] = last.state_path, last.sampler_path
    ctx.emit("train.resume", step=last.step, checkpoint=last.name, path=last.state_path)


@stage("checkpoint", reads=(TRAINER,), optional=(CHECKPOINT_EXTRA,))
def checkpoint(ctx: Context[object], blob_store: BlobStore) -> None:
    """Save the trainer's state at this step, unless it is saved already (a stop right after a periodic
    checkpoint, or right after a resume) or no step has run."""
    step = ctx.state["step"]
    if step and ctx.state.get("checkpoint_step") != step:
        _save(ctx, blob_store, f"{step:06d}", final=False)


@stage("save_final", reads=(TRAINER,), optional=(CHECKPOINT_EXTRA, SAMPLER))
def save_final(ctx: Context[object], blob_store: BlobStore) -> None:
    """Save the final weights, unless a resumed run had already finished and saved them. The sampler
    path recorded is the current ``SAMPLER``'s, else the weights saved for sampling now."""
    if "final_checkpoint" in ctx.state:
        return
    record = _save(ctx, blob_store, "final", final=True)
    ctx.state["final_checkpoint"], ctx.state["final_sampler_path"] = record.state_path, record.sampler_path


def _save(ctx: Context[object], blob_store: BlobStore, name: str, final: bool) -> CheckpointRecord:
    trainer = ctx.need(TRAINER)
    state_path = trainer.save_state(name).result().path
    sampler_path = None
    if final:
        current = ctx.get(SAMPLER)
        sampler_path = current.path if current else trainer.save_weights_for_sampler(name).result().path
    extra = ctx.get(CHECKPOINT_EXTRA)
    record = CheckpointRecord(name, ctx.state["step"], ctx.state.get("epoch", 0), state_path, sampler_path, final,
                              ctx.state.get("tokens_seen", 0), dict(extra) if extra else {})
    ctx.telemetry.flush()  # metric rows first: once recorded, a resume starts after this step
    record = append_checkpoint(blob_store, ctx.artifact_key(CHECKPOINTS), record, _files(trainer))
    ctx.state["checkpoint_step"] = record.step
    ctx.emit("train.checkpoint", name=name, step=record.step, path=state_path, final=final)
    return record


def _files(trainer: TrainingClient) -> FileCheckpoints | None:
    """The trainer, when its checkpoints are files whose checksums a record keeps (the local backend)."""
    return trainer if isinstance(trainer, FileCheckpoints) else None


@stage("open_sampler", reads=(TRAINER, RESUMED), writes=(SAMPLER, CHECKPOINT_EXTRA))
def open_sampler(ctx: Context[object], training_client: TrainingService, blob_store: BlobStore) -> None:
    """The resumed checkpoint's sampler, else the starting weights saved for sampling."""
    last = ctx.need(RESUMED)
    if last is None:
        _use_sampler(ctx, save_sampler(ctx, training_client, f"sampler-{ctx.state['step']:06d}"))
    else:
        path = last.require("sampler_path", blob_store.uri(ctx.artifact_key(CHECKPOINTS)))
        _use_sampler(ctx, SavedSampler(path, training_client.create_sampling_client(model_path=path)))


@stage("update_sampler", reads=(TRAINER,), writes=(SAMPLER, CHECKPOINT_EXTRA))
def update_sampler(ctx: Context[object], training_client: TrainingService) -> None:
    """Save the weights just trained for sampling: the next step samples from them."""
    _use_sampler(ctx, save_sampler(ctx, training_client, f"sampler-{ctx.state['step']:06d}"))


def _use_sampler(ctx: Context[object], sampler: SavedSampler) -> None:
    ctx.put(SAMPLER, sampler)
    ctx.put(CHECKPOINT_EXTRA, {"sampler_path": sampler.path})


@stage("log_step", reads=(STEP_METRICS, TOTAL_STEPS))
def log_step(ctx: Context[object]) -> None:
    """Emit the step's metrics (``STEP_METRICS``) as a ``train.step`` row."""
    step_metrics = ctx.need(STEP_METRICS)
    emit_step(ctx, {"step": ctx.state["step"], "total_steps": ctx.need(TOTAL_STEPS), **step_metrics})


def emit_step(ctx: Context[object], metrics: dict[str, Any]) -> None:
    """Emit a finished step's ``train.step`` row; then, if its loss or gradient norm is NaN or infinite,
    stop the run with ``TrainingDivergedError`` (``divergence.py``), before the step is checkpointed."""
    ctx.state["last_metrics"] = metrics
    ctx.emit("train.step", **metrics)
    bad = diverged(metrics)
    if bad:
        rate = getattr(ctx.config, "learning_rate", None)
        raise divergence_error(metrics["step"], bad, rate if isinstance(rate, float) else None,
                               ctx.state.get("checkpoint_step"), ctx.run_prefix)


def save_sampler(ctx: Context[object], service: TrainingService, name: str) -> SavedSampler:
    """The trainer's current weights, saved under ``name`` and opened for sampling (the stage reads TRAINER)."""
    path = ctx.need(TRAINER).save_weights_for_sampler(name).result().path
    return SavedSampler(path, service.create_sampling_client(model_path=path))


def adam_params(ctx: Context[OptimizerConfig]) -> AdamParams:
    """This step's Adam parameters: the config's peak learning rate scaled by its schedule."""
    cfg = ctx.config
    lr = cfg.learning_rate * lr_multiplier(cfg.lr_schedule, ctx.state["step"], ctx.state["total_steps"],
                                           cfg.warmup_steps)
    return AdamParams(learning_rate=lr, beta1=cfg.adam_beta1, beta2=cfg.adam_beta2, eps=cfg.adam_eps)


def eval_due(ctx: Context[object]) -> bool:
    """Whether a recipe's evaluation stage measures now (``recipes.base.evaluation_before`` and
    ``evaluation_in_loop`` place it): ``at: start`` only at step 0, ``at: end`` only after the last step,
    and each stage once per step (the last step may also be due by ``eval_every``). A stage placed
    without ``at`` (an evaluation run) always measures."""
    at, step = ctx.options().get("at"), ctx.state.get("step", 0)
    if (at == "start" and step != 0) or (at == "end" and step != ctx.state.get("total_steps")):
        return False
    measured: dict[str, int] = ctx.state.setdefault("evaluated_steps", {})
    name = ctx.stage.name if ctx.stage else ""
    if at is not None and measured.get(name) == step:
        return False
    measured[name] = step
    return True


def advance_step(ctx: Context[object], tokens: int, started: float) -> dict[str, float]:
    """Count a finished step and its tokens; return its token and timing metrics."""
    ctx.state["step"] += 1
    ctx.state["tokens_seen"] += tokens
    seconds = time.monotonic() - started
    return {"num_tokens": float(tokens), "tokens_seen": float(ctx.state["tokens_seen"]), "step_seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else 0.0}
