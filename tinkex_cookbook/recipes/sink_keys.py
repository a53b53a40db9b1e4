"""Config keys that send a run's metrics somewhere besides its folder: W&B, TensorBoard, trackio.

They are config keys, not command-line flags only, so ``config.json`` and
``spec.json`` record where a run's metrics went and a ``run-spec`` replay sends
them to the same places. They change where metrics go, never what the run
computes: the spec's stages do not depend on them, and a run folder with
checkpoints may be resumed with other values (``SINK_KEYS``). None of them is a
secret: W&B's API key stays in the environment.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from tinkex_cookbook.pipeline.wandb_sink import PROJECT_RULE, is_project_name


class SinkKeys(BaseModel):
    """The sink keys every recipe config has (``RecipeConfig`` derives from this)."""

    wandb_project: str | None = Field(None, min_length=1, description=(
        "also log to this W&B project (extra [wandb]; WANDB_MODE=offline keeps it on this machine)"))
    wandb_name: str | None = Field(None, min_length=1, description="W&B run name (default: the experiment name)")
    tensorboard: bool = Field(False, description=(
        "also write TensorBoard event files (extra [tensorboard]) to the run folder's tensorboard/ "
        "(a local blob store), else to runs/<log_path>/tensorboard/ here"))
    tensorboard_dir: str | None = Field(None, min_length=1, description=(
        "write TensorBoard event files to <tensorboard_dir>/<log_path>/ instead (implies tensorboard)"))
    trackio_project: str | None = Field(None, min_length=1, description=(
        "also log to this trackio project (extra [trackio]), in trackio's local store (TRACKIO_DIR)"))

    @field_validator("wandb_project")
    @classmethod
    def _wandb_project_name(cls, value: str | None) -> str | None:
        """A name W&B would refuse fails now, not when the run starts logging."""
        if value is not None and not is_project_name(value):
            raise ValueError(f"not a W&B project name; {PROJECT_RULE}")
        return value


SINK_KEYS = frozenset(SinkKeys.model_fields)
"""Keys a resumed run may change: they do not change what its checkpoints hold."""
