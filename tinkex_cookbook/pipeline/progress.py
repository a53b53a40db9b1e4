"""A live progress bar for people at a terminal: step, loss, learning rate, tokens/s, ETA."""

from __future__ import annotations

from typing import Any

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
        stats = (f"loss {data['train_mean_nll']:.4f}  lr {data['learning_rate']:.2e}  "
                 f"{data['tokens_per_second']:.0f} tok/s")
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("train", total=data["total_steps"], stats=stats)
        self._progress.update(self._task, completed=data["step"], stats=stats)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
