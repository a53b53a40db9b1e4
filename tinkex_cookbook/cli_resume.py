"""What ``run`` and ``run-spec`` print when a run stops early or had already finished.

A run stopped by Ctrl-C or SIGTERM prints why, where its folder is and the exact
command that resumes it (the same command, with the folder's ``log_path``), and
exits with 128 + the signal's number (130 for Ctrl-C). A second Ctrl-C quits at
once and still names the folder. A folder whose run had finished says so, with
its final checkpoint and how to replay the spec into a new folder.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from typing import Any, NoReturn

import typer

from tinkex_cookbook.errors import RunStoppedError

PROGRAM = "tinkex-cookbook"


def manifest_args(manifest: str | None) -> list[str]:
    return ["--manifest", manifest] if manifest else []


def without_log_path(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.partition("=")[0].strip() != "log_path"]


def exit_stopped(exc: RunStoppedError, resume: Sequence[str]) -> NoReturn:
    """Print the stop and the command that resumes the run; exit 128 + the signal's number."""
    typer.echo(f"stopped: {exc}", err=True)
    typer.echo(f"resume: {PROGRAM} {shlex.join(resume)}", err=True)
    raise typer.Exit(_signal_status(exc.signal_name))


def exit_interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """A second Ctrl-C: no checkpoint was waited for; the run folder is named (its last checkpoint resumes)."""
    notes = getattr(exc, "__notes__", [])
    typer.echo("interrupted" + "".join(f": {note}" for note in notes), err=True)
    raise typer.Exit(130)


def finished_message(result: Any) -> str:
    """Said instead of a summary when the run folder held a finished run (nothing ran)."""
    state = result.state
    spec = result.artifacts.get("spec.json") or "SPEC.json"
    return (f"run folder {result.artifacts.get('run')} holds a finished run (step {state.get('step')}): no step "
            f"ran. Final checkpoint: {state.get('final_checkpoint')}\n"
            f"to run it again in a new folder: {PROGRAM} run-spec {shlex.quote(spec)} --log-path NEW_FOLDER")


def _signal_status(name: str) -> int:
    try:
        return 128 + signal.Signals[name].value
    except KeyError:
        return 1
