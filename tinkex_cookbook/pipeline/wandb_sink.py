"""Weights & Biases as an optional telemetry sink (extra ``[wandb]``).

``wandb`` is imported when a ``WandbSink`` is built, never with the package, so
the cookbook does not need it and a missing extra fails before the run starts.
One cookbook run is one W&B run: its id follows the run's log path, so a run
resumed from a checkpoint continues the same W&B run, and steps an earlier
attempt already logged are not sent again (W&B drops a step lower than its last
and prints a warning). Offline runs are read back with ``read_run_file``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import numbers
import struct
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinkex_cookbook.errors import ConfigError, validation_problems
from tinkex_cookbook.pipeline.telemetry import Event

if TYPE_CHECKING:
    from tinkex_cookbook.spec import Experiment

MODES = ("online", "offline", "disabled", "shared")
INSTALL_HINT = "pip install 'tinkex-cookbook[wandb]'"
PROJECT_RULE = "use a non-empty name without / \\ # ? % :"


def is_project_name(project: object) -> bool:
    """A name W&B takes for a project (it refuses these characters); one rule for the sink and the config key."""
    return isinstance(project, str) and bool(project.strip()) and not any(c in project for c in "/\\#?%:")


def run_id_for(run_uri: str) -> str:
    """The W&B run id of every attempt of the run stored at ``run_uri`` (its log path)."""
    return "tc-" + hashlib.sha256(run_uri.encode()).hexdigest()[:20]


def numeric_fields(data: Mapping[str, Any]) -> dict[str, int | float]:
    """The fields W&B can chart: numbers, not booleans, strings or the step itself."""
    return {
        key: int(value) if isinstance(value, numbers.Integral) else float(value)
        for key, value in data.items()
        if key != "step" and isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


class StepGate:
    """Lets a step through only if W&B will keep it.

    W&B holds one history row per step and drops (with a printed warning) a step
    lower than its last. Steps up to ``logged_through`` were logged by an earlier
    attempt of the run; a later event at the current step (an eval after its
    train step) joins that step's row.
    """

    def __init__(self, logged_through: int = -1) -> None:
        self.logged_through = logged_through
        self.last = logged_through

    def admit(self, step: int) -> bool:
        if step <= self.logged_through or step < self.last:
            return False
        self.last = step
        return True

    def log(self, log: Any, data: Mapping[str, Any]) -> None:
        """Send ``data``'s numbers through ``log(metrics, step=...)`` (a W&B or trackio run's) if the step is
        admitted; a row without a step is logged as it comes."""
        metrics = numeric_fields(data)
        step = data.get("step")
        if not metrics:
            return
        if step is None:
            log(metrics)
        elif self.admit(int(step)):
            log(metrics, step=int(step))


class WandbSink:
    """Sends a run's metrics, checkpoints and outcome to one W&B run.

    ``mode`` None leaves the choice to W&B (``WANDB_MODE``, else online).
    ``settings`` are ``wandb.Settings`` fields (for example ``{"console": "off"}``);
    ``quiet`` silences W&B's own console lines. ``run_id`` None takes the id
    from ``configure`` (the run's log path); without either each attempt starts
    a new W&B run.
    """

    def __init__(
        self,
        project: str,
        name: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        tags: Sequence[str] = (),
        quiet: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if not is_project_name(project):
            raise ConfigError(f"WandbSink project={project!r} is not a W&B project name; {PROJECT_RULE}")
        if mode is not None and mode not in MODES:
            raise ConfigError(f"WandbSink mode={mode!r} is not one of {', '.join(MODES)}; or pass None for WANDB_MODE")
        self._wandb = _import_wandb()
        self.project, self.name, self.entity, self.mode = project, name, entity, mode
        self.dir = Path(dir) if dir is not None else None
        self.config = dict(config) if config is not None else None
        self.run_id, self.tags = run_id, list(tags)
        self._given = (name, self.config, run_id)
        self._settings = self._build_settings({**(settings or {}), **({"silent": True} if quiet else {})})
        self._run: Any = None
        self._gate = StepGate()

    def __repr__(self) -> str:
        return f"WandbSink(project={self.project!r}, name={self.name!r}, mode={self.mode!r}, run_id={self.run_id!r})"

    def _build_settings(self, options: dict[str, Any]) -> Any:
        try:
            return self._wandb.Settings(**options)
        except ValueError as exc:
            problems = validation_problems(exc) if hasattr(exc, "errors") else str(exc)
            raise ConfigError(f"WandbSink settings: {problems}; see wandb.Settings for valid fields") from None

    def configure(self, spec: Experiment, run_uri: str) -> None:
        """Take the run's name, config and (from its log path) W&B run id, where not given explicitly."""
        name, config, run_id = self._given
        self.name = name or spec.name
        self.config = config if config is not None else dict(spec.config)
        self.run_id = run_id or run_id_for(run_uri)

    def handle(self, event: Event) -> None:
        data = event.data
        if event.name == "workflow.start":
            self._start(data)
        elif self._run is None:
            return
        elif event.name in ("train.step", "train.eval"):
            self._log(data)
        elif event.name == "train.checkpoint":
            self._run.summary.update({"checkpoint": data.get("name"), "checkpoint_step": data.get("step"),
                                      **({"final_checkpoint": data.get("path")} if data.get("final") else {})})
        elif event.name == "train.resume":
            self._run.summary.update({"resumed_from": data.get("checkpoint"), "resumed_from_step": data.get("step")})
        elif event.name == "workflow.exception":
            self._run.summary.update({"error": data.get("error"), "failed_stage": data.get("stage")})
            self._finish(exit_code=1)

    def _start(self, data: Mapping[str, Any]) -> None:
        self._finish(exit_code=0)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        try:
            run = self._wandb.init(
                project=self.project, entity=self.entity, name=self.name or data.get("experiment"),
                job_type=data.get("recipe"), tags=self.tags or None, config=self.config, id=self.run_id,
                resume="allow" if self.run_id else None, mode=self.mode,
                dir=str(self.dir) if self.dir is not None else None, reinit="create_new", settings=self._settings,
            )
        except self._wandb.errors.Error as exc:
            raise ConfigError(
                f"W&B could not start a run in project {self.project!r}: {exc}; run `wandb login` (or set "
                "WANDB_API_KEY), or log offline with mode='offline' / WANDB_MODE=offline"
            ) from None
        self._run = run
        self._gate = StepGate(self._logged_through(run))

    def _logged_through(self, run: Any) -> int:
        """The last step earlier attempts logged: W&B's own count when it resumed the run online, else
        the run files earlier attempts left beside this one (offline runs are only joined at sync)."""
        if not self.run_id or run.settings.mode == "disabled":
            return -1
        last = run.starting_step - 1 if run.resumed else -1
        here = Path(run.settings.sync_dir)
        for folder in here.parent.glob(f"*run-*-{glob.escape(self.run_id)}*"):
            run_file = folder / f"run-{self.run_id}.wandb"
            if folder != here and run_file.is_file():
                last = max([last, *(int(row["_step"]) for row in read_run_file(run_file).history if "_step" in row)])
        return last

    def _log(self, data: Mapping[str, Any]) -> None:
        self._gate.log(self._run.log, data)

    def _finish(self, exit_code: int) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.finish(exit_code=exit_code)
            if run.settings.mode == "offline":  # so a finished offline run is whole on disk
                wait_until_written(run.settings.sync_file)

    def close(self) -> None:
        self._finish(exit_code=0)


def _import_wandb() -> Any:
    try:
        return importlib.import_module("wandb")
    except ImportError:
        raise ConfigError(f"WandbSink needs the wandb package, which is not installed; run: {INSTALL_HINT}") from None


@dataclass
class RunFile:
    """What one attempt of a W&B run wrote to its ``run-<id>.wandb`` file."""

    run_id: str = ""
    name: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


_FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK, _RECORD_HEADER = 32768, 7
FLUSH_TIMEOUT = 10.0
"""Seconds to wait for W&B's writer to flush a finished offline run's file."""
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_run_file(path: str | Path) -> RunFile:
    """Parse a run's ``.wandb`` transaction log, which W&B writes in online and offline mode alike.

    The file is a LevelDB-style log (32 KiB blocks of checksummed fragments) of
    protobuf records. Reading stops at a torn or foreign tail, as a killed
    process leaves; a file in another format reads as empty.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    result = RunFile()
    for raw in _log_records(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()  # pyright: ignore[reportAttributeAccessIssue]  # generated, no stub
        try:
            record.ParseFromString(raw)
        except DecodeError:
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.run_id, result.name, result.job_type = (
                record.run.run_id, record.run.display_name, record.run.job_type)
            result.config.update(_items(record.run.config.update))
        elif kind == "config":
            result.config.update(_items(record.config.update))
        elif kind == "history":
            result.history.append(_items(record.history.item))
        elif kind == "summary":
            result.summary.update(_items(record.summary.update))
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
    result.config = {k: v for k, v in result.config.items() if not k.startswith("_wandb")}
    return result


def wait_until_written(path: str | Path, timeout: float = FLUSH_TIMEOUT) -> RunFile:
    """``run.finish()`` returns before W&B's writer process has flushed the run file: wait (bounded) until
    the file holds the exit record, and return what it holds."""
    deadline = time.monotonic() + timeout
    while True:
        run_file = read_run_file(path) if Path(path).is_file() else RunFile()
        if run_file.exit_code is not None or time.monotonic() >= deadline:
            return run_file
        time.sleep(0.05)


def _items(items: Any) -> dict[str, Any]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def _log_records(data: bytes) -> Iterator[bytes]:
    if not data.startswith(_FILE_HEADER):
        return
    pos, parts = len(_FILE_HEADER), []
    while True:
        room = _BLOCK - pos % _BLOCK
        if room < _RECORD_HEADER:  # a block's tail too short for a header is padding
            pos += room
            continue
        if pos + _RECORD_HEADER > len(data):
            return
        checksum, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            return
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            parts = [chunk]
        elif kind == _MIDDLE:
            parts.append(chunk)
        elif kind == _LAST:
            yield b"".join([*parts, chunk])
