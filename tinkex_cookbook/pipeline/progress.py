"""Progress for people watching a run: a live bar at a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tinkex_cookbook.pipeline.telemetry import Event, _console_line


class ProgressSink:
    """Advances on ``train.step``; prints epochs, evals and checkpoints above the bar."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False,
        )
        self._task: Any = None

    def handle(self, event: Event) -> None:
        if event.name == "train.step":
            self._advance(event.data)
        elif (line := _console_line(event)) is not None:
            self._progress.console.print(line)

    def _advance(self, data: dict[str, Any]) -> None:
        stats = step_stats(data)
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("train", total=data["total_steps"], stats=stats)
        self._progress.update(self._task, completed=data["step"], stats=stats)

    def close(self) -> None:
        if self._task is not None:
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
    """For logs and pipes (no terminal): a line every tenth of the run, and the last step."""

    def __init__(self, stream: TextIO | None = None, lines: int = 10) -> None:
        self._stream = stream
        self._lines = lines

    def handle(self, event: Event) -> None:
        if event.name != "train.step":
            return
        step, total = int(event.data.get("step", 0)), int(event.data.get("total_steps") or 0)
        every = max(1, total // self._lines) if total else 1
        if step % every == 0 or step == total:
            print(f"step {step}/{total}  {step_stats(event.data)}", file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass
