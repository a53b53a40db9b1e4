"""Evaluation tasks during training, for every recipe: ``evals=[...]`` every ``eval_every`` steps.

``evals_start`` measures the starting weights (step 0) and ``evals_final`` the final ones;
``run_evals`` runs every ``eval_every`` steps in between. None of them stalls the
submit-ahead pipeline: the stage only *submits* ``save_weights_for_sampler`` (which the
backend orders after every step already submitted, so the weights are exactly step N's)
and hands the rest (opening a sampler on those weights, sampling, scoring) to a worker
thread, then the loop goes on submitting steps. Each later eval stage emits the results
that have finished as ``train.eval`` rows (``<task>/<metric>`` keys, the step measured), and
``evals_final`` waits for all. Every example is kept in the run folder at
``evals/<task>/<step>.jsonl``. An evaluation still running when a run is interrupted or
stopped is lost (the worker is a daemon thread, so it never delays the exit, and one not
yet started is skipped); the resumed run does not measure that step again.

The evaluators read their ports (a dataset store, an LLM judge) through the run's port
lookup when they need them, so a run whose tasks need no judge never builds one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinkex_cookbook.eval.base import EvalEnv, EvalTarget
from tinkex_cookbook.eval.report import records_jsonl
from tinkex_cookbook.eval.suite import TaskOutcome, run_tasks
from tinkex_cookbook.eval.tasks import EvalTask, resolve_tasks
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import RENDERER, TRAINER
from tinkex_cookbook.ports import BlobStore, TrainingService
from tinkex_cookbook.run_folder import EVALS


class EvalsConfig(Protocol):
    @property
    def evals(self) -> list[Any]: ...
    @property
    def seed(self) -> int: ...


class EvalWorker:
    """One daemon thread running evaluations in submission order. A daemon, so an evaluation still
    running when a run stops (Ctrl-C, an error) does not hold the process open until it ends."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[list[TaskOutcome]], Callable[[], list[TaskOutcome]]] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], list[TaskOutcome]]) -> Future[list[TaskOutcome]]:
        future: Future[list[TaskOutcome]] = Future()
        self._jobs.put((future, job))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="evals", daemon=True)
            self._thread.start()
        return future

    def shutdown(self, wait: bool = True) -> None:
        self._jobs.put(None)
        if wait and self._thread is not None:
            self._thread.join()

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the future
                    future.set_exception(exc)


@dataclass
class PendingEvals:
    """Evaluations submitted and not yet reported, oldest first; one worker runs them in order."""

    tasks: list[EvalTask]
    worker: EvalWorker = field(default_factory=EvalWorker)
    running: list[tuple[int, Future[list[TaskOutcome]]]] = field(default_factory=list)
    measured: set[int] = field(default_factory=set)


EVALS_PENDING: Key[PendingEvals] = Key("evals_pending")


def _pending(ctx: Context[EvalsConfig]) -> PendingEvals:
    pending = ctx.get(EVALS_PENDING)
    if pending is None:
        pending = PendingEvals(resolve_tasks(list(ctx.config.evals)))
        ctx.put(EVALS_PENDING, pending)
    return pending


def _submit(ctx: Context[EvalsConfig], training_client: TrainingService, blob_store: BlobStore) -> None:
    """Submit the weights save now (in order with the steps), and the evaluation on the worker."""
    step = int(ctx.state["step"])
    pending = _pending(ctx)
    if step in pending.measured:
        return
    pending.measured.add(step)
    saved = ctx.need(TRAINER).save_weights_for_sampler(f"eval-{step:06d}")
    renderer = ctx.need(RENDERER)
    env = EvalEnv(ctx.ports, seed=ctx.config.seed)
    prefix = ctx.artifact_key(EVALS)

    def evaluate() -> list[TaskOutcome]:
        if ctx.stop.requested:  # the run is stopping: its result would never be reported
            return []
        sampler = training_client.create_sampling_client(model_path=saved.result().path)
        outcomes = run_tasks(pending.tasks, [EvalTarget(f"step-{step}", sampler, renderer)], env)
        for outcome in outcomes:
            blob_store.write(f"{prefix}/{outcome.task.name}/{step:06d}.jsonl", records_jsonl(outcome.result.records))
        return outcomes

    pending.running.append((step, pending.worker.submit(evaluate)))


def _report(ctx: Context[EvalsConfig], wait: bool) -> None:
    """Emit a ``train.eval`` row for each finished evaluation, oldest first (with ``wait``, all of them)."""
    pending = ctx.get(EVALS_PENDING)
    if pending is None:
        return
    while pending.running and (wait or pending.running[0][1].done()):
        step, future = pending.running.pop(0)
        outcomes = future.result()  # an evaluator's error is raised here, and stops the run
        row = {f"{o.task.name}/{name}": value for o in outcomes for name, value in o.result.metrics.items()}
        ctx.emit("train.eval", step=step, **row)
    if wait:
        pending.worker.shutdown(wait=True)


@stage("evals_start", reads=(TRAINER, RENDERER), optional=(EVALS_PENDING,), writes=(EVALS_PENDING,))
def evals_start(ctx: Context[EvalsConfig], training_client: TrainingService, blob_store: BlobStore) -> None:
    """The starting weights' scores (step 0); a run resumed past step 0 has them already."""
    if ctx.state.get("step", 0) == 0:
        _submit(ctx, training_client, blob_store)


@stage("run_evals", reads=(TRAINER, RENDERER), optional=(EVALS_PENDING,), writes=(EVALS_PENDING,))
def run_evals(ctx: Context[EvalsConfig], training_client: TrainingService, blob_store: BlobStore) -> None:
    """Report finished evaluations, then start this step's."""
    _report(ctx, wait=False)
    _submit(ctx, training_client, blob_store)


@stage("evals_final", reads=(TRAINER, RENDERER), optional=(EVALS_PENDING,), writes=(EVALS_PENDING,))
def evals_final(ctx: Context[EvalsConfig], training_client: TrainingService, blob_store: BlobStore) -> None:
    """The final weights' scores (unless this step was measured already), then wait for every evaluation."""
    if "final_checkpoint" not in ctx.state:
        _submit(ctx, training_client, blob_store)
    _report(ctx, wait=True)
