"""The telemetry sinks a run's config asks for (``recipes/sink_keys.py``), built before the run starts.

Built, not yet started: a missing extra or a bad project name is a ``ConfigError``
before any work (a dry run too), and nothing is written until the run's first
event. A config without the keys (a plugin recipe's own model) asks for none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from tinkex_cookbook.pipeline import Sink


def config_sinks(config: BaseModel, log_path: str, quiet: bool = False) -> list[Sink]:
    """W&B, TensorBoard and trackio sinks, in that order, for the keys set in ``config``; ``quiet`` keeps
    their libraries' own console lines off."""
    sinks: list[Sink] = []
    project = getattr(config, "wandb_project", None)
    if project:
        from tinkex_cookbook.pipeline.wandb_sink import WandbSink

        sinks.append(WandbSink(project, name=getattr(config, "wandb_name", None), quiet=quiet))
    tensorboard_dir = getattr(config, "tensorboard_dir", None)
    if getattr(config, "tensorboard", False) or tensorboard_dir:
        from tinkex_cookbook.pipeline.tensorboard_sink import TensorBoardSink

        sinks.append(TensorBoardSink(Path(tensorboard_dir) / log_path.strip("/") if tensorboard_dir else None))
    trackio_project = getattr(config, "trackio_project", None)
    if trackio_project:
        from tinkex_cookbook.pipeline.trackio_sink import TrackioSink

        sinks.append(TrackioSink(trackio_project, quiet=quiet))
    return sinks


def sink_artifacts(sinks: Sequence[Sink]) -> dict[str, str]:
    """Where the sinks wrote files a run lists beside its own: TensorBoard's event folder."""
    from tinkex_cookbook.pipeline.tensorboard_sink import TensorBoardSink

    for sink in sinks:
        if isinstance(sink, TensorBoardSink) and sink.logdir is not None and sink.logdir.is_dir():
            return {"tensorboard": str(sink.logdir)}
    return {}
