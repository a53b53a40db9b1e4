"""Evaluation: prove that training worked, for a base model, a checkpoint, or during a run.

Evaluators (``EVALUATORS``) measure an ``EvalTarget``; tasks (``TASKS``) name an evaluator
with its config; ``run_tasks`` runs tasks on targets; ``write_report`` writes the evaluation
folder. ``Runtime.eval(tasks=..., model=... | run=...)`` and ``tinkex-cookbook eval`` put them
together; recipes run them between training steps with ``evals=[...]``.
"""

from tinkex_cookbook.eval.base import (
    EVALUATORS,
    DatasetEvalConfig,
    EvalConfig,
    EvalEnv,
    EvalResult,
    EvalTarget,
    Evaluator,
    EvaluatorBase,
    register_evaluator,
)
from tinkex_cookbook.eval.metrics import pass_at_k
from tinkex_cookbook.eval.suite import EvalReport, TaskOutcome, run_tasks
from tinkex_cookbook.eval.tasks import SHIPPED_TASKS, TASKS, EvalTask, register_task, resolve_task, resolve_tasks

__all__ = [
    "EVALUATORS", "SHIPPED_TASKS", "TASKS", "DatasetEvalConfig", "EvalConfig", "EvalEnv", "EvalReport",
    "EvalResult", "EvalTarget", "EvalTask", "Evaluator", "EvaluatorBase", "TaskOutcome", "pass_at_k",
    "register_evaluator", "register_task", "resolve_task", "resolve_tasks", "run_tasks",
]
