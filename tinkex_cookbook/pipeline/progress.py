"""Progress for people watching a run: a live bar at a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tinkex_cookbook.pipeline.telemetry import Event, _console_line


class ProgressSink:
    """A bar for the training steps, one for each long task in flight (dataset preparation,
    sampling, evaluation), and epochs, evals and checkpoints printed above them."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False,
        )
        self._started = False
        self._train: Any = None
        self._tasks: dict[str, Any] = {}

    def handle(self, event: Event) -> None:
        if event.name == "train.step":
            self._advance(event.data)
        elif event.name.startswith("task."):
            self._task(event.name, event.data)
        elif (line := _console_line(event)) is not None:
            self._progress.console.print(line)

    def _start(self) -> None:
        if not self._started:
            self._progress.start()
            self._started = True

    def _advance(self, data: dict[str, Any]) -> None:
        stats = step_stats(data)
        self._start()
        if self._train is None:
            self._train = self._progress.add_task("step", total=data["total_steps"], stats=stats)
        self._progress.update(self._train, completed=data["step"], stats=stats)

    def _task(self, name: str, data: dict[str, Any]) -> None:
        """Each task's bar lives from its start to its stop; the training bar stays."""
        if name == "task.start":
            self._start()
            self._tasks[data["task"]] = self._progress.add_task(data["task"], total=data["total"], stats="")
        elif (task_id := self._tasks.get(data["task"])) is not None:
            if name == "task.stop":
                self._progress.remove_task(self._tasks.pop(data["task"]))
                if (line := _console_line(Event(name, data))) is not None:
                    self._progress.console.print(line)
            else:
                self._progress.update(task_id, completed=data["done"])

    def close(self) -> None:
        if self._started:
            self._progress.stop()


HEADLINE_METRICS = (("train_mean_nll", "loss"), ("dpo_loss", "dpo loss"), ("reward_mean", "reward"),
                    ("teacher_kl", "teacher kl"))
"""The number each recipe family is judged by, in the order they are looked for."""


def step_stats(data: dict[str, Any]) -> str:
    """The step's headline metric, learning rate and throughput, whichever of them the recipe reports."""
    parts = [f"{label} {data[key]:.4f}" for key, label in HEADLINE_METRICS if key in data][:1]
    if "learning_rate" in data:
        parts.append(f"lr {data['learning_rate']:.2e}")
    if "tokens_per_second" in data:
        parts.append(f"{data['tokens_per_second']:.0f} tok/s")
    return "  ".join(parts)


class PlainProgressSink:
    """For logs and pipes (no terminal): a line every tenth of the run, and the last step.

    A long task inside a stage (rendering a big dataset, a slow evaluation) gets a
    line every ``task_seconds`` while it runs and one when it ends; quick ones stay silent.
    """

    def __init__(self, stream: TextIO | None = None, lines: int = 10, task_seconds: float = 5.0) -> None:
        self._stream = stream
        self._lines = lines
        self._task_seconds = task_seconds
        self._task_printed: dict[str, float] = {}

    def handle(self, event: Event) -> None:
        if event.name.startswith("task."):
            self._task(event)
            return
        if event.name == "workflow.warning":
            self._print(_console_line(event) or "")
            return
        if event.name != "train.step":
            return
        step, total = int(event.data.get("step", 0)), int(event.data.get("total_steps") or 0)
        every = max(1, total // self._lines) if total else 1
        if step % every == 0 or step == total:
            self._print(f"step {step}/{total}  {step_stats(event.data)}")

    def _task(self, event: Event) -> None:
        task, data = event.data["task"], event.data
        if event.name == "task.start":
            self._task_printed[task] = event.time
        elif event.name == "task.progress":
            if event.time - self._task_printed.get(task, event.time) >= self._task_seconds:
                self._task_printed[task] = event.time
                self._print(f"{task}: {data['done']}/{data['total']}")
        else:
            self._task_printed.pop(task, None)
            if data["seconds"] >= self._task_seconds:
                self._print(f"{task}: {data['done']}/{data['total']} done in {data['seconds']:.1f} s")

    def _print(self, line: str) -> None:
        print(line, file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass
