"""Config rules every recipe shares, and the fields every step-loop recipe (RL, DPO, distillation) has.

``RecipeConfig`` is the base of every recipe's config: unknown keys, NaN and
infinite floats, booleans given for numbers, and a ``log_path`` that is not a
folder inside the blob store are all errors before any work starts, so a bad
config never leaves a half-written run folder behind. ``StepRecipeConfig``
adds the optimizer, LoRA, seed and run-folder settings that read the same
everywhere; a recipe subclasses it and adds (or re-defaults) its own fields.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tinkex_cookbook.recipes.sink_keys import SinkKeys
from tinkex_cookbook.train.models import recommended_renderer
from tinkex_cookbook.train.renderers import RENDERERS, unknown_renderer
from tinkex_cookbook.train.schedules import LRSchedule

MaxLength = Annotated[int, Field(ge=2)]
"""A token budget: a training example needs at least one input and one target token."""
Name = Annotated[str, Field(min_length=1)]
"""A model, dataset or split name: an empty one can only fail later, further from the cause."""


_URI = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def check_log_path(value: str | None) -> str | None:
    """``log_path`` must name a folder inside the blob store; ``None`` or ``""`` mean a timestamped one.

    The run strips leading and trailing ``/``; what is left must be a relative key
    every blob store accepts, so the run cannot write outside its root or into it.
    A path or URI the blob store printed (``runs/sl_basic/<time>``, an absolute
    path, ``file://...``, ``s3://...``) names the same folder: the run maps it to
    its key when it opens the store (``run_folder.folder_key``).
    """
    if not value or _URI.match(value):  # a location a blob store printed: the run resolves it in that store
        return value
    segments = [s for s in value.strip("/").split("/") if s != "."]
    problem = (
        "it has no folder name" if not segments or segments == [""] else
        "it has a '..' segment, which would leave the blob store" if ".." in segments else
        "it has an empty segment ('//')" if "" in segments else
        "it has a blank segment" if any(not s.strip() for s in segments) else
        "it uses '\\'; separate folders with '/'" if "\\" in value else
        "it holds a control character" if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) else None
    )
    if problem:
        raise ValueError(f"log_path {value!r} is not a folder inside the blob store: {problem}. "
                         "Fix: use a relative path such as 'runs/my-run', or leave it unset for a timestamped one")
    return value


def check_renderer(name: str | None) -> str | None:
    """A registered renderer name (or ``None``: the model's own); else the message ``get_renderer`` would
    fail with, at config time."""
    if name is not None and name not in RENDERERS:
        raise ValueError(unknown_renderer(name))
    return name


RENDERER_HELP = "chat template that turns messages into tokens (default: the model catalog's for model_name)"


def _accepts_bool(annotation: Any) -> bool:
    return annotation is bool or any(_accepts_bool(arg) for arg in typing.get_args(annotation))


EVALS_HELP = ("evaluation tasks run on the weights before the first step, every eval_every steps and after the "
              "last: names (chitchat_nll, arithmetic, ...) or {\"task\": name, key: value} objects")


class RecipeConfig(SinkKeys):
    """Base of every recipe config: strict keys, finite floats, real numbers, a safe ``log_path``; the
    sink keys (``wandb_project``, ``tensorboard``, ...: ``sink_keys.py``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    evals: list[str | dict[str, Any]] = Field(default_factory=list, description=EVALS_HELP)

    @field_validator("evals", mode="before")
    @classmethod
    def _evals_list(cls, value: Any) -> Any:
        """``evals=chitchat_nll,arithmetic`` from the command line is a list of two names."""
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("evals")
    @classmethod
    def _known_tasks(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        """Each task named and its config checked now, not after training has started."""
        if value:
            from tinkex_cookbook.errors import CookbookError
            from tinkex_cookbook.eval.tasks import resolve_tasks

            try:
                resolve_tasks(list(value))
            except CookbookError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``True`` would silently become 1 (e.g. ``batch_size=True``): refuse it where no bool is expected."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation):
            raise ValueError(f"expected {_kind(field.annotation)}, not the boolean {value}")
        return value

    @field_validator("log_path", mode="after", check_fields=False)
    @classmethod
    def _log_path_in_store(cls, value: str | None) -> str | None:
        return check_log_path(value)

    @model_validator(mode="after")
    def _model_renderer(self) -> RecipeConfig:
        """An unset ``renderer_name`` becomes the model's recommended one, written into the config, so the
        saved spec says which template trained the run."""
        if "renderer_name" in type(self).model_fields and getattr(self, "renderer_name", "") is None:
            # setattr: the field is declared by the subclasses that have it, not here
            setattr(self, "renderer_name", recommended_renderer(getattr(self, "model_name", "")))  # noqa: B010
        return self


def _kind(annotation: Any) -> str:
    text = str(annotation)
    return "a number" if "int" in text or "float" in text else "a value of type " + text.replace("typing.", "")


class StepRecipeConfig(RecipeConfig):
    model_name: Name = Field("meta-llama/Llama-3.2-1B", description="base model to train")
    renderer_name: str | None = Field(None, description=RENDERER_HELP)
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
    def _known_renderer(cls, name: str | None) -> str | None:
        return check_renderer(name)
