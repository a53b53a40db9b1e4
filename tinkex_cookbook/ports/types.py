"""Value types that cross the training and sampling ports.

They mirror the Tinker SDK's types (``ModelInput``, ``TensorData``, ``Datum``,
``AdamParams``, ``SamplingParams`` ...) field for field, so an adapter converts
them one to one, and so a recipe written here reads like one written against
Tinker. They are plain frozen dataclasses: cheap to build, safe to share
between the training loop and a backend's worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

LossFnName = Literal["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"]
LOSS_FN_NAMES: tuple[str, ...] = ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro")
TensorDtype = Literal["int64", "float32"]
StopReason = Literal["length", "stop"]


@dataclass(frozen=True)
class EncodedTextChunk:
    """A run of token ids; the only chunk kind text models need."""

    tokens: tuple[int, ...]
    type: Literal["encoded_text"] = "encoded_text"

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class ModelInput:
    """What the model reads: a sequence of chunks (text now; images later)."""

    chunks: tuple[EncodedTextChunk, ...] = ()

    @classmethod
    def from_ints(cls, tokens: Sequence[int]) -> ModelInput:
        return cls((EncodedTextChunk(tuple(int(t) for t in tokens)),))

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(())

    def to_ints(self) -> list[int]:
        return [t for chunk in self.chunks for t in chunk.tokens]

    @property
    def length(self) -> int:
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: EncodedTextChunk) -> ModelInput:
        return ModelInput((*self.chunks, chunk))

    def append_int(self, token: int) -> ModelInput:
        return self.append(EncodedTextChunk((int(token),)))


@dataclass(frozen=True, eq=False)
class TensorData:
    """A flat numeric array with its dtype and shape, as Tinker sends it."""

    data: np.ndarray
    dtype: TensorDtype
    shape: tuple[int, ...]

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> TensorData:
        dtype: TensorDtype = "int64" if np.issubdtype(array.dtype, np.integer) else "float32"
        return cls(np.ascontiguousarray(array, dtype=dtype).reshape(-1), dtype, tuple(array.shape))

    @classmethod
    def from_list(cls, values: Sequence[float] | Sequence[int], dtype: TensorDtype) -> TensorData:
        return cls.from_numpy(np.asarray(values, dtype=dtype))

    def to_numpy(self) -> np.ndarray:
        return self.data.reshape(self.shape)

    def tolist(self) -> list[Any]:
        return self.to_numpy().tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorData):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and np.array_equal(self.data, other.data)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Datum:
    """One training example: the input tokens plus per-token loss inputs.

    For ``cross_entropy`` the loss inputs are ``target_tokens`` (int64) and
    ``weights`` (float32), each as long as ``model_input``.
    """

    model_input: ModelInput
    loss_fn_inputs: Mapping[str, TensorData] = field(default_factory=dict)


@dataclass(frozen=True)
class AdamParams:
    """Optimizer step parameters; defaults are Tinker's."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


@dataclass(frozen=True)
class ForwardBackwardOutput:
    """Per-datum outputs (``logprobs`` at least) and summed metrics like ``loss:sum``."""

    loss_fn_output_type: str
    loss_fn_outputs: tuple[Mapping[str, TensorData], ...]
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class OptimStepResponse:
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveStateResponse:
    """Where a checkpoint went: a backend path such as ``tinker://...``."""

    path: str


@dataclass(frozen=True)
class LoadStateResponse:
    path: str


@dataclass(frozen=True)
class ModelInfo:
    """What a training client trains: base model, LoRA rank, tokenizer id."""

    model_id: str
    base_model: str
    lora_rank: int | None
    tokenizer_id: str


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0
    seed: int | None = None
    stop: str | tuple[str, ...] | tuple[int, ...] | None = None


@dataclass(frozen=True)
class SampledSequence:
    stop_reason: StopReason
    tokens: tuple[int, ...]
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SampleResponse:
    sequences: tuple[SampledSequence, ...]
    prompt_logprobs: tuple[float | None, ...] | None = None
