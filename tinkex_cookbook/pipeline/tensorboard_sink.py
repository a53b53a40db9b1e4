"""TensorBoard event files as an optional telemetry sink (extra ``[tensorboard]``: tensorboardX).

``tensorboardX`` is imported when a ``TensorBoardSink`` is built, never with the
package. It writes its files itself, not through the blob store, so they go to a
folder on this machine: ``logdir`` if given, else the run folder's
``tensorboard/`` when the run folder is a local path (a local blob store), else
``runs/<log_path>/tensorboard/`` under the working directory (an S3 or memory
blob store), the place a local store would have put it.

Every attempt of a run writes its own event file in the same folder. The file is
opened at the attempt's first metric (or ``train.resume``) and starts with
TensorBoard's purge marker (``SessionLog.START``) at the first step this attempt
computes: the step after its checkpoint, or 0 for an attempt that starts afresh.
TensorBoard then hides what earlier attempts logged from that step on, so each
step shows once, as ``metrics.jsonl`` holds it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.pipeline.telemetry import METRIC_EVENTS, Event
from tinkex_cookbook.pipeline.wandb_sink import numeric_fields

if TYPE_CHECKING:
    from tinkex_cookbook.spec import Experiment

INSTALL_HINT = "pip install 'tinkex-cookbook[tensorboard]'"
FOLDER = "tensorboard"
"""The event files' folder inside a run folder."""
FALLBACK_ROOT = "runs"
"""Where event files go, under the working directory, for a run folder that is not a local path."""
EVENT_FILES = "events.out.tfevents.*"


def logdir_for(run_uri: str, log_path: str, root: str | Path = FALLBACK_ROOT) -> Path:
    """The run folder's ``tensorboard/`` if ``run_uri`` is a local path, else ``<root>/<log_path>/tensorboard``."""
    if "://" not in run_uri:
        return Path(run_uri) / FOLDER
    return Path(root) / log_path.strip("/") / FOLDER


class TensorBoardSink:
    """Writes ``train.step`` and ``train.eval`` numbers as TensorBoard scalars, one tag per field
    (an evaluation's ``<task>/<metric>`` fields group by task), and the run's config as text and
    hyperparameters.

    ``logdir`` None: chosen by ``configure`` from the run's folder (``logdir_for``). Event files are
    flushed every ``flush_seconds``, before each checkpoint is recorded and when the sink is closed.
    """

    def __init__(self, logdir: str | Path | None = None, flush_seconds: float = 5.0) -> None:
        if flush_seconds <= 0:
            raise ConfigError(f"TensorBoardSink flush_seconds={flush_seconds!r} must be above 0")
        self._tbx = _import_tensorboardx()
        self.logdir = Path(logdir) if logdir is not None else None
        self.config: dict[str, Any] = {}
        self._flush_seconds = flush_seconds
        self._writer: Any = None
        self._purge_step: int | None = None
        self._tags: set[str] = set()
        self._failed = False

    def __repr__(self) -> str:
        return f"TensorBoardSink(logdir={str(self.logdir) if self.logdir else None!r})"

    def configure(self, spec: Experiment, run_uri: str) -> None:
        """Take the run's config and, where no ``logdir`` was given, the folder its run folder implies."""
        self.config = dict(spec.config)
        if self.logdir is None:
            self.logdir = logdir_for(run_uri, str(spec.config.get("log_path") or spec.recipe))

    def handle(self, event: Event) -> None:
        data = event.data
        if event.name == "workflow.start":
            self._close()
            self._purge_step, self._tags, self._failed = 0, set(), False
        elif event.name == "train.resume":
            self._purge_step = int(data["step"]) + 1
            self._open()
        elif event.name in METRIC_EVENTS:
            self._log(data)
        elif event.name == "train.checkpoint":
            self.flush()
        elif event.name == "workflow.exception":
            self._failed = True

    def _log(self, data: Mapping[str, Any]) -> None:
        metrics = numeric_fields(data)
        if not metrics:
            return
        writer = self._open()
        step = data.get("step")
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, global_step=int(step) if step is not None else None)
        self._tags.update(metrics)

    def _open(self) -> Any:
        if self._writer is not None:
            return self._writer
        if self.logdir is None:
            raise ConfigError("TensorBoardSink has no logdir: pass logdir=..., or run it through the Runtime, "
                              "which places it in the run folder")
        self.logdir.mkdir(parents=True, exist_ok=True)
        attempt = len(list(self.logdir.glob(EVENT_FILES)))  # names sort by attempt even within one second
        step = self._purge_step or 0
        writer = self._tbx.SummaryWriter(logdir=str(self.logdir), purge_step=self._purge_step,
                                         flush_secs=self._flush_seconds, filename_suffix=f".{attempt:04d}")
        writer.add_text("config", "```json\n" + json.dumps(self.config, indent=2, sort_keys=True) + "\n```",
                        global_step=step)
        _, start, _ = self._tbx.summary.hparams(hparam_values(self.config), {})
        writer.file_writer.add_summary(start, global_step=step)
        self._writer = writer
        return writer

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        experiment, _, end = self._tbx.summary.hparams(hparam_values(self.config), dict.fromkeys(sorted(self._tags), 0))
        if self._failed:
            _set_status(end, "STATUS_FAILURE")
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(end)
        writer.close()

    def close(self) -> None:
        self._close()


def hparam_values(config: Mapping[str, Any]) -> dict[str, str | bool | int | float]:
    """The config as TensorBoard hyperparameters: numbers, booleans and strings as they are, lists and
    objects as JSON; unset keys left out."""
    return {key: value if isinstance(value, str | bool | int | float) else json.dumps(value, sort_keys=True)
            for key, value in config.items() if value is not None}


def _set_status(summary: Any, status: str) -> None:
    from tensorboardX.proto.api_pb2 import Status  # pyright: ignore[reportAttributeAccessIssue]  # generated
    from tensorboardX.proto.plugin_hparams_pb2 import (
        HParamsPluginData,  # pyright: ignore[reportAttributeAccessIssue]  # generated, no stub
    )

    plugin_data = summary.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    content.session_end_info.status = Status.Value(status)
    plugin_data.content = content.SerializeToString()


def _import_tensorboardx() -> Any:
    try:
        return importlib.import_module("tensorboardX")
    except ImportError:
        raise ConfigError(
            f"TensorBoardSink needs the tensorboardX package, which is not installed; run: {INSTALL_HINT}"
        ) from None
