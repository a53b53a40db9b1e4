"""trackio as an optional telemetry sink (extra ``[trackio]``).

``trackio`` is imported when a ``TrackioSink`` is built, never with the package.
trackio keeps every project in a local SQLite database under ``TRACKIO_DIR``
(default ``~/.cache/huggingface/trackio``), which it reads once, when it is
imported; ``trackio show`` opens its dashboard on them. A cookbook run is one
trackio run, named after the run's log path, so a resumed attempt continues it,
and steps an earlier attempt already logged are not logged again.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.pipeline.telemetry import METRIC_EVENTS, Event
from tinkex_cookbook.pipeline.wandb_sink import StepGate

if TYPE_CHECKING:
    from tinkex_cookbook.spec import Experiment

INSTALL_HINT = "pip install 'tinkex-cookbook[trackio]'"


class TrackioSink:
    """Sends ``train.step`` and ``train.eval`` numbers, and the run's config, to one trackio run.

    ``name`` None: the run's log path (from ``configure``), so every attempt of a run logs to the same
    trackio run. trackio prints a few lines when a run starts and ends: to stderr, or nowhere when
    ``quiet``, never into the command's own output on stdout.
    """

    def __init__(self, project: str, name: str | None = None, config: Mapping[str, Any] | None = None,
                 quiet: bool = False) -> None:
        self._trackio = _import_trackio()
        from trackio.sqlite_storage import SQLiteStorage

        self._storage = SQLiteStorage
        if not isinstance(project, str) or not project.strip():
            raise ConfigError(f"TrackioSink project={project!r} is not a project name; use a non-empty name")
        try:
            SQLiteStorage.validate_project_name(project)
        except ValueError as exc:
            raise ConfigError(f"TrackioSink project={project!r}: {exc}") from None
        self.project, self.name = project, name
        self.config = dict(config) if config is not None else None
        self._given = (name, self.config)
        self._quiet = quiet
        self._run: Any = None
        self._gate = StepGate()

    def __repr__(self) -> str:
        return f"TrackioSink(project={self.project!r}, name={self.name!r})"

    def configure(self, spec: Experiment, run_uri: str) -> None:
        """Take the run's name (its log path) and config, where not given explicitly."""
        name, config = self._given
        self.name = name or str(spec.config.get("log_path") or spec.name)
        self.config = config if config is not None else dict(spec.config)

    def handle(self, event: Event) -> None:
        if event.name == "workflow.start":
            self._start(event.data)
        elif self._run is None:
            return
        elif event.name in METRIC_EVENTS:
            self._log(event.data)
        elif event.name == "workflow.exception":
            self._finish()

    def _start(self, data: Mapping[str, Any]) -> None:
        self._finish()
        name = self.name or str(data.get("experiment") or "run")
        logged = self._storage.get_max_step_for_run(self.project, name)
        context = self._trackio.context_vars.current_run
        callers = context.set(None)  # trackio.init finishes the current run: not the caller's own
        try:
            with self._output():
                self._run = self._trackio.init(
                    project=self.project, name=name, config=self.config, resume="allow", embed=False,
                    auto_log_cpu=False, auto_log_gpu=False, capture_console=False)
        except ValueError as exc:  # trackio's word for a setting it cannot use (TRACKIO_SERVER_URL, ...)
            raise ConfigError(f"trackio could not start a run in project {self.project!r}: {exc}") from None
        finally:
            context.reset(callers)
        self._gate = StepGate(logged if logged is not None else -1)

    def _log(self, data: Mapping[str, Any]) -> None:
        self._gate.log(self._run.log, data)

    def _finish(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            with self._output():
                run.finish()  # writes what is queued to the database before it returns

    @contextlib.contextmanager
    def _output(self) -> Iterator[None]:
        with contextlib.redirect_stdout(io.StringIO() if self._quiet else sys.stderr):
            yield

    def close(self) -> None:
        self._finish()


def _import_trackio() -> Any:
    try:
        return importlib.import_module("trackio")
    except ImportError:
        raise ConfigError(f"TrackioSink needs the trackio package, which is not installed; run: {INSTALL_HINT}") from None
