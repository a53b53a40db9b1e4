"""Run tasks on targets: every task on every target, each result kept with how long it took.

Targets are evaluated one after another, and within a target each task submits all its
prompts before awaiting any. ``EvalReport`` holds the numbers, the table a user reads
(task x target, the headline metric of each task, and the change from the first target to
the last: base vs fine-tuned), and where the evaluation folder was written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.eval.base import EvalEnv, EvalResult, EvalTarget
from tinkex_cookbook.eval.tasks import EvalTask

HEADLINES: dict[str, tuple[str, bool]] = {
    "nll": ("nll", False), "generation": ("accuracy", True), "preference": ("accuracy", True),
    "rl_reward": ("reward", True), "llm_judge": ("score", True), "inspect": ("accuracy", True),
}
"""Each evaluator's headline metric, and whether higher is better."""


def headline(task: EvalTask, metrics: dict[str, float]) -> tuple[str, bool]:
    """The metric a table shows for ``task``: the evaluator's headline, else the first metric reported."""
    name, higher = HEADLINES.get(task.evaluator, ("", True))
    if name in metrics:
        return name, higher
    return next(iter(metrics), ""), True


@dataclass
class TaskOutcome:
    task: EvalTask
    label: str
    result: EvalResult
    seconds: float


@dataclass
class EvalReport:
    """Every task's result on every target, and where they were written."""

    tasks: list[EvalTask]
    labels: list[str]
    outcomes: list[TaskOutcome]
    uri: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def result(self, task: str, label: str) -> EvalResult:
        for outcome in self.outcomes:
            if outcome.task.name == task and outcome.label == label:
                return outcome.result
        raise KeyError(f"no result for task {task!r} on {label!r}; tasks: {[t.name for t in self.tasks]}, "
                       f"targets: {self.labels}")

    def metric(self, task: str, label: str, metric: str | None = None) -> float:
        result = self.result(task, label)
        if metric is None:
            metric = headline(self._task(task), result.metrics)[0]
        return result.metrics[metric]

    def _task(self, name: str) -> EvalTask:
        return next(t for t in self.tasks if t.name == name)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{task: {target: metrics}}``."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for outcome in self.outcomes:
            table.setdefault(outcome.task.name, {})[outcome.label] = dict(outcome.result.metrics)
        return table

    def outcome_details(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{task: {target: details}}`` for the results that carry any (e.g. inspect-ai's log location)."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for outcome in self.outcomes:
            if outcome.result.details:
                found.setdefault(outcome.task.name, {})[outcome.label] = dict(outcome.result.details)
        return found

    def headline(self, task: EvalTask) -> tuple[str, bool, dict[str, float | None]]:
        """``task``'s headline metric, whether higher is better, and its value on each target (``None``: none)."""
        values = {o.label: o.result.metrics for o in self.outcomes if o.task.name == task.name}
        name, higher = headline(task, next(iter(values.values()), {}))
        return name, higher, {label: values.get(label, {}).get(name) for label in self.labels}

    def table(self) -> str:
        """The task x target table; with two or more targets, the change from the first to the last."""
        rows = [["task", "metric", *self.labels, *(["change"] if len(self.labels) > 1 else [])]]
        for task in self.tasks:
            name, higher, values = self.headline(task)
            row = [task.name, f"{name} ({'higher' if higher else 'lower'} is better)", *map(_fmt, values.values())]
            if len(self.labels) > 1:
                a, b = values[self.labels[0]], values[self.labels[-1]]
                row.append("" if a is None or b is None else f"{b - a:+.4f}")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.4f}"


def run_tasks(
    tasks: Sequence[EvalTask], targets: Iterable[EvalTarget], env: EvalEnv,
    on_outcome: Callable[[TaskOutcome], None] | None = None,
) -> list[TaskOutcome]:
    """Every task on every target, in order: targets outermost (one set of weights loaded at a time);
    ``on_outcome`` hears of each result as it is ready (a command prints a line)."""
    evaluators = [(task, task.build()) for task in tasks]
    outcomes = []
    for target in targets:
        for task, evaluator in evaluators:
            started = time.monotonic()
            result = evaluator.evaluate(target, env)
            outcomes.append(TaskOutcome(task, target.label, result, time.monotonic() - started))
            if on_outcome is not None:
                on_outcome(outcomes[-1])
    return outcomes
