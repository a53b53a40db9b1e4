"""`eval`: evaluation tasks on a base model, or on a run's checkpoints beside its base model.

    tinkex-cookbook eval --model HuggingFaceTB/SmolLM2-135M-Instruct --tasks chitchat_nll --manifest local
    tinkex-cookbook eval --run runs/sl_basic/20261207-101500-123 --tasks chitchat_nll,arithmetic
    tinkex-cookbook eval --run runs/sl_basic/... --checkpoint 000004 --checkpoint final --tasks chitchat_nll
    tinkex-cookbook eval --list-tasks
"""

from __future__ import annotations

import json
from typing import Any

import typer

TASKS_HELP = ("Comma-separated task names (see --list-tasks), or a JSON list/object of tasks, e.g. "
              "'[{\"task\": \"arithmetic\", \"limit\": 8}]'.")


def _tasks(value: str) -> Any:
    text = value.strip()
    if text[:1] in "[{":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--tasks looks like JSON but does not parse: {exc}") from None
        return parsed if isinstance(parsed, list) else [parsed]
    return text


def eval_command(
    model: str | None = typer.Option(None, "--model", help="A model name or model folder to evaluate."),
    run: str | None = typer.Option(None, "--run", help="A run folder: its checkpoint(s), beside its base model."),
    checkpoint: list[str] = typer.Option([], "--checkpoint", "-c", help="Checkpoint name in the run (repeatable; "
                                         "default: the final one)."),
    tasks: str | None = typer.Option(None, "--tasks", "-t", help=TASKS_HELP),
    base: bool = typer.Option(True, "--base/--no-base", help="With --run, evaluate the base model too."),
    renderer: str | None = typer.Option(None, "--renderer", help="Chat template (default: the run's or model's)."),
    manifest: str | None = typer.Option(None, "--manifest", "-m",
                                        help="Manifest to run on (default: the run's own, else $TINKEX_MANIFEST)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same seed gives the same numbers."),
    out: str | None = typer.Option(None, "--out", help="Evaluation folder in the blob store (default: "
                                   "evals/<UTC time>)."),
    list_tasks: bool = typer.Option(False, "--list-tasks", help="List the evaluation tasks and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table and the folder."),
) -> None:
    """Evaluate a base model or a run's checkpoints on tasks; print a table, write an evaluation folder."""
    from tinkex_cookbook import ConfigError, CookbookError
    from tinkex_cookbook.cli_models import _fail
    from tinkex_cookbook.eval.tasks import describe_tasks
    from tinkex_cookbook.runs import RunsError
    from tinkex_cookbook.runtime.evaluation import evaluate
    from tinkex_cookbook.runtime.options import RunOptions

    if list_tasks:
        typer.echo(describe_tasks())
        return
    if not tasks:
        _fail(ConfigError("name the tasks to run with --tasks (see --list-tasks)"))

    def progress(outcome: Any) -> None:
        if not quiet:
            typer.echo(f"  {outcome.label}: {outcome.task.name} done in {outcome.seconds:.1f}s", err=True)

    try:
        report = evaluate(_tasks(tasks), model=model, run=run, checkpoints=checkpoint, base=base,
                          renderer=renderer, seed=seed, eval_dir=out, options=RunOptions(manifest=manifest),
                          on_outcome=progress)
    except (CookbookError, RunsError) as exc:
        _fail(exc)
    typer.echo(report.table())
    for task, by_target in report.outcome_details().items():
        for label, details in by_target.items():
            if "log_location" in details:
                typer.echo(f"inspect log ({task}, {label}): {details['log_location']}")
    typer.echo(f"evaluation: {report.uri}")
    typer.echo(f"report: {report.details['files']['report.html']}")
