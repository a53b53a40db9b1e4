"""inspect-ai tasks against the cookbook's models: the ``inspect`` evaluator and ``inspect_model``.

inspect-ai (the optional ``[inspect]`` extra) brings a large library of evaluations: datasets,
solvers, scorers, and a log viewer. Here a task runs on an ``EvalTarget`` through the
``tinkex`` model provider (``_inspect_provider``), and its scores come back as an
``EvalResult``: inspect's metrics, one record per sample, and where inspect wrote its log
(``inspect view`` opens it).

inspect is imported only when a model is built or an evaluation runs, so the cookbook
imports, and an ``inspect`` task's config validates, without the extra; building the
evaluator without it is an ``AdapterUnavailableError`` that says how to install it.

inspect keeps process-wide state for an evaluation (its concurrency limits, active samples,
log handler), so evaluations here run one at a time; each runs on inspect's own event loop,
on a worker thread when the caller is already inside one.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, Field, NonNegativeFloat, PositiveInt

from tinkex_cookbook.errors import AdapterUnavailableError, ConfigError, EvalError
from tinkex_cookbook.eval.base import (
    EvalConfig,
    EvalEnv,
    EvalResult,
    EvalTarget,
    EvaluatorBase,
    register_evaluator,
)

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.log import EvalLog, EvalSample, EvalScore
    from inspect_ai.model import Model

INSTALL_HINT = "pip install 'tinkex-cookbook[inspect]'"
T = TypeVar("T")
_ONE_AT_A_TIME = threading.Lock()
TASK_FORMS = "name a task inspect has registered, or one task in a file: 'path/to/file.py@task_name'"


def require_inspect() -> None:
    """Fail before any work when the ``[inspect]`` extra is missing."""
    if importlib.util.find_spec("inspect_ai") is None:
        raise AdapterUnavailableError(f"the 'inspect' evaluator needs inspect-ai, which is not installed: "
                                      f"{INSTALL_HINT}")


@contextmanager
def _host_excepthook() -> Iterator[None]:
    """inspect installs its own ``sys.excepthook`` the first time it is used; the host's is put back."""
    hook = sys.excepthook
    try:
        yield
    finally:
        sys.excepthook = hook


def inspect_model(target: EvalTarget, seed: int | None = None) -> Model:
    """An inspect-ai ``Model`` that samples from ``target``: greedy, at most 256 tokens, unless the
    generate config (the task's, or ``inspect_ai.eval``'s keywords) says otherwise.

    Use it wherever inspect takes a model: ``inspect_ai.eval(task, model=inspect_model(target))``,
    a model role, ``await model.generate(...)``. ``seed`` applies when the config sets none.
    """
    require_inspect()
    from inspect_ai.model import get_model

    from tinkex_cookbook.eval._inspect_provider import PROVIDER

    with _host_excepthook():
        return get_model(f"{PROVIDER}/{target.label}", memoize=False, target=target, seed=seed)


class InspectConfig(EvalConfig):
    """An inspect task, found by inspect's own loader, run on the target.

    The task is ``inspect_task``, not ``task``: in a ``--tasks`` mapping ``task`` already names a
    registered cookbook task to change (``{"task": "my_inspect_eval", "limit": 8}``).
    """

    inspect_task: str = Field(..., min_length=1,
                              description="an inspect task: a registered name, or 'path/to/file.py@task_name'")
    task_args: dict[str, Any] = Field(default_factory=dict, description="arguments for the task's function")
    max_tokens: PositiveInt | None = Field(None, description="longest reply (default: the task's, else 256)")
    temperature: NonNegativeFloat | None = Field(None, description="default: the task's, else 0 (greedy)")
    epochs: PositiveInt | None = Field(None, description="times each sample runs (default: the task's)")
    log_dir: str | None = Field(None, description="where inspect writes its log (default: inspect's own, "
                                                  "INSPECT_LOG_DIR else ./logs, where `inspect view` looks)")


def _run_on_own_loop(call: Callable[[], T]) -> T:
    """``call()`` here, or on a worker thread when this thread already runs an event loop (async code):
    inspect starts a loop of its own, and one loop cannot run inside another."""
    if not _loop_running():
        return call()
    with ThreadPoolExecutor(1, thread_name_prefix="inspect-eval") as pool:
        return pool.submit(call).result()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_inspect(task: str | Task, model: Model, **options: Any) -> EvalLog:
    """One ``inspect_ai.eval`` run, its log: no display, no control socket, no log syncing.

    A task inspect cannot find or start is a ``ConfigError`` naming it; options are ``inspect_ai.eval``'s.
    """
    from inspect_ai import eval as inspect_eval
    from inspect_ai._util.error import PrerequisiteError

    def call() -> EvalLog:
        with _ONE_AT_A_TIME, _host_excepthook():
            try:
                logs = inspect_eval(task, model=model, display="none", ctl_server=False, score_display=False,
                                    **options)
            except (PrerequisiteError, FileNotFoundError) as exc:
                problem = str(exc).rstrip(".")
                raise ConfigError(f"inspect task {_task_name(task)!r}: {problem}. Fix: {TASK_FORMS}") from exc
        if len(logs) != 1:
            names = ", ".join(log.eval.task for log in logs)
            raise ConfigError(f"inspect task {_task_name(task)!r} names {len(logs)} tasks ({names}); an evaluation "
                              f"runs one. Fix: {TASK_FORMS}")
        return logs[0]

    return _run_on_own_loop(call)


def _task_name(task: str | Task) -> str:
    return task if isinstance(task, str) else task.name


def evaluate_inspect_task(
    task: str | Task, target: EvalTarget, *, seed: int | None = 0, limit: int | None = None,
    task_args: Mapping[str, Any] | None = None, log_dir: str | None = None, **generate: Any,
) -> EvalResult:
    """Run ``task`` (an inspect ``Task``, a registered task name or ``"file.py@name"``) on ``target``.

    ``generate`` holds ``inspect_ai.eval`` keywords (``max_tokens``, ``temperature``, ``epochs``,
    ``max_connections`` ...); those given as ``None`` are left to the task. A task inspect marks
    failed is an ``EvalError`` with inspect's message and the log's location.
    """
    options = {key: value for key, value in generate.items() if value is not None}

    def run() -> EvalResult:  # all of inspect off a running loop: inspect re-enters one by patching asyncio
        log = run_inspect(task, inspect_model(target, seed), limit=limit, task_args=dict(task_args or {}),
                          log_dir=log_dir, **options)
        return result_from_log(log)

    return _run_on_own_loop(run)


def result_from_log(log: EvalLog) -> EvalResult:
    """Metrics (``accuracy``..., or ``scorer/metric`` when a task has several scorers) and ``examples``,
    one record per sample (and epoch), and ``details["log_location"]``."""
    if log.status != "success":
        message = log.error.message if log.error is not None else f"the run ended with status {log.status!r}"
        raise EvalError(f"inspect task {log.eval.task!r} on {log.eval.model!r} failed: {message} "
                        f"(inspect's log: {log.location})")
    scores = log.results.scores if log.results is not None else []
    metrics = {metric_name(score, scores, name): float(metric.value)
               for score in scores for name, metric in score.metrics.items()}
    records = [sample_record(sample) for sample in log.samples or []]
    metrics["examples"] = float(len(records))
    return EvalResult(metrics, records, {"log_location": log.location, "inspect_task": log.eval.task})


def metric_name(score: EvalScore, scores: list[EvalScore], metric: str) -> str:
    """``metric`` for a task with one scorer; else ``scorer/metric``, with the epoch reducer when a scorer is
    reported under several (``match[mean]/accuracy``), so no two metrics share a name."""
    if len(scores) == 1:
        return metric
    shared = sum(other.name == score.name for other in scores) > 1
    return f"{score.name}[{score.reducer}]/{metric}" if shared and score.reducer else f"{score.name}/{metric}"


def sample_record(sample: EvalSample) -> dict[str, Any]:
    """What a report shows for one sample: its input and target, the conversation, the last reply, its scores."""
    from inspect_ai.model import ChatMessage

    def text(value: str | list[ChatMessage]) -> str:
        return value if isinstance(value, str) else "\n".join(f"{m.role}: {m.text}" for m in value)

    return {
        "id": sample.id, "epoch": sample.epoch, "input": text(sample.input), "target": sample.target,
        "completion": sample.output.completion,
        "messages": [{"role": m.role, "content": m.text} for m in sample.messages],
        "scores": {name: {"value": score.value, "answer": score.answer, "explanation": score.explanation}
                   for name, score in (sample.scores or {}).items()},
    }


@register_evaluator
class InspectEvaluator(EvaluatorBase[InspectConfig]):
    """An inspect-ai task as a cookbook evaluator; ``for_task`` runs an inspect ``Task`` object instead."""

    name: ClassVar[str] = "inspect"
    Config: ClassVar[type[BaseModel]] = InspectConfig

    def __init__(self, config: InspectConfig, task: Task | None = None) -> None:
        require_inspect()
        super().__init__(config)
        self.task = task

    @classmethod
    def for_task(cls, task: Task, **fields: Any) -> InspectEvaluator:
        """An evaluator for a ``Task`` built in Python (a config names tasks; it cannot hold one).
        ``fields`` are the config's other keys (``limit``, ``max_tokens`` ...)."""
        given = sorted({"inspect_task", "task_args"} & set(fields))
        if given:
            raise ConfigError(f"for_task() got {', '.join(given)}: the Task object is the task, already built "
                              "with its arguments. Fix: drop them, or name the task in a config instead")
        return cls(InspectConfig(inspect_task=task.name, **fields), task)

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        return evaluate_inspect_task(
            self.task if self.task is not None else cfg.inspect_task, target, seed=env.seed, limit=cfg.limit,
            task_args=cfg.task_args, log_dir=cfg.log_dir, max_tokens=cfg.max_tokens,
            temperature=cfg.temperature, epochs=cfg.epochs)
