"""What ``run`` and ``run-spec`` print when a run stops early or had already finished.

A run stopped by Ctrl-C or SIGTERM prints why, where its folder is and the exact
command that resumes it (the same command, with the folder's ``log_path``), and
exits with 128 + the signal's number (130 for Ctrl-C). A second Ctrl-C quits at
once and still names the folder. A folder whose run had finished says so, with
its final checkpoint and how to replay the spec into a new folder. Every printed
command names its manifest, so it replays on the deployment the run ran on.

``run-spec FILE`` without ``--manifest`` uses the manifest recorded beside FILE
(the run folder's ``manifest.json``): a replay belongs on the deployment it ran
on, so the recorded one beats ``$TINKEX_MANIFEST``; ``--manifest`` beats both.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer

from tinkex_cookbook.errors import (
    ConfigError,
    CookbookError,
    RunStoppedError,
    TrainingDivergedError,
    error_chain,
)

PROGRAM = "tinkex-cookbook"


def manifest_args(manifest: str | None) -> list[str]:
    return ["--manifest", manifest] if manifest else []


def manifest_ref(recorded: Mapping[str, Any]) -> str | None:
    """What ``--manifest`` takes to load a resolved manifest again (``Manifest.to_dict()``, as a run folder's
    ``manifest.json`` holds it): its top file (a shipped name or a YAML path), else its name; None if it
    records neither. ``sources`` lists its files root first, then the layers that are not files."""
    from tinkex_cookbook.runtime.manifest import LAYER_LABELS

    sources = recorded.get("sources")
    files = [s for s in sources if isinstance(s, str) and s not in LAYER_LABELS] if isinstance(sources, list) else []
    name = files[-1] if files else recorded.get("name")
    return name if isinstance(name, str) and name else None


def recorded_manifest(spec_file: Path) -> str | None:
    """The manifest the run beside ``spec_file`` ran on, from the folder's ``manifest.json``; None if there is
    none. One that cannot be read, or cannot be loaded here any more (a YAML file since moved), is a
    ``ConfigError``: replaying on another deployment unasked would be a surprise."""
    from tinkex_cookbook.run_folder import MANIFEST, RunFolder
    from tinkex_cookbook.runs import local_store
    from tinkex_cookbook.runtime.manifest import shipped_manifest_names

    folder = spec_file.resolve().parent
    ref = manifest_ref(RunFolder(local_store(folder.parent), folder.name).load_json(
        MANIFEST, fix="give the manifest to replay on with --manifest, or restore the file"))
    if ref is None or ref in shipped_manifest_names() or Path(ref).is_file():
        return ref
    raise ConfigError(f"{folder / MANIFEST} records manifest {ref!r}, which is neither a shipped manifest nor a "
                      f"file here: give the manifest to replay on with --manifest")


def without_log_path(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.partition("=")[0].strip() != "log_path"]


def exit_stopped(exc: RunStoppedError, resume: Sequence[str]) -> NoReturn:
    """Print the stop and the command that resumes the run; exit 128 + the signal's number."""
    typer.echo(f"stopped: {exc}", err=True)
    typer.echo(f"resume: {PROGRAM} {shlex.join(resume)}", err=True)
    raise typer.Exit(_signal_status(exc.signal_name))


def exit_diverged(exc: CookbookError, retry: Sequence[str]) -> NoReturn:
    """A run stopped because training diverged: the error, and the command that runs it again with a lower
    learning rate in a new folder (this one refuses a changed config); exit status 2, as other errors."""
    typer.echo(f"error: {exc}", err=True)
    typer.echo(f"retry: {PROGRAM} {shlex.join(retry)}", err=True)
    raise typer.Exit(2)


def diverged(exc: BaseException) -> TrainingDivergedError | None:
    """The ``TrainingDivergedError`` behind ``exc`` (a stage's error wraps it), if any."""
    return next((e for e in error_chain(exc) if isinstance(e, TrainingDivergedError)), None)


def without_keys(overrides: Sequence[str], keys: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.partition("=")[0].strip() not in keys]


def exit_interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """A second Ctrl-C: no checkpoint was waited for; the run folder is named (its last checkpoint resumes)."""
    notes = getattr(exc, "__notes__", [])
    typer.echo("interrupted" + "".join(f": {note}" for note in notes), err=True)
    raise typer.Exit(130)


def finished_message(result: Any) -> str:
    """Said instead of a summary when the run folder held a finished run (nothing ran)."""
    state = result.state
    spec = result.artifacts.get("spec.json") or "SPEC.json"
    replay = ["run-spec", spec, *manifest_args(manifest_ref(result.manifest.to_dict())), "--log-path"]
    return (f"run folder {result.artifacts.get('run')} holds a finished run (step {state.get('step')}): no step "
            f"ran. Final checkpoint: {state.get('final_checkpoint')}\n"
            f"to run it again in a new folder: {PROGRAM} {shlex.join(replay)} NEW_FOLDER")


def _signal_status(name: str) -> int:
    try:
        return 128 + signal.Signals[name].value
    except KeyError:
        return 1
