"""Config fields every step-loop recipe (RL, DPO, distillation) shares, with one renderer check.

A recipe's config subclasses ``StepRecipeConfig`` and adds (or re-defaults) its
own fields, e.g. ``learning_rate``; the optimizer, LoRA, seed and run-folder
settings read the same everywhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from tinkex_cookbook.train.renderers import renderer_names
from tinkex_cookbook.train.schedules import LRSchedule


class StepRecipeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field("meta-llama/Llama-3.2-1B", description="base model to train")
    renderer_name: str = Field("llama3", description="chat template for prompts and for parsing replies")
    learning_rate: PositiveFloat = Field(1e-5, description="peak Adam learning rate")
    lr_schedule: LRSchedule = Field("constant", description="linear, cosine or constant decay")
    warmup_steps: NonNegativeInt = Field(0, description="steps of linear warmup")
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    adam_eps: PositiveFloat = 1e-8
    lora_rank: PositiveInt = Field(32, description="LoRA rank of the trained adapter")
    save_every: NonNegativeInt = Field(10, description="checkpoint every N steps (0: only final)")
    seed: int = Field(0, description="data order and sampling seed")
    log_path: str | None = Field(None, description="run folder in the blob store (default: timestamped)")

    @field_validator("renderer_name")
    @classmethod
    def _known_renderer(cls, name: str) -> str:
        if name not in renderer_names():
            raise ValueError(f"unknown renderer {name!r}; valid renderers: {', '.join(renderer_names())}")
        return name
