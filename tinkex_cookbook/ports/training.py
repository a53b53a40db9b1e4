"""Training and sampling ports, named after the Tinker SDK's clients.

The ``training_client`` port of a manifest is served by a ``TrainingService``
(Tinker's ``ServiceClient``): it opens a ``TrainingClient`` for a base model and
LoRA rank, and ``SamplingClient``s for saved weights. Every slow call returns an
``APIFuture`` at once, so a loop can submit step N+1 before step N returns;
against a remote backend that pipelining is most of the throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from tinkex_cookbook.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SampleResponse,
    SamplingParams,
    SaveStateResponse,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class APIFuture(Protocol[T_co]):
    """A result that may not be ready yet. ``result`` blocks; it re-raises the call's error."""

    def result(self, timeout: float | None = None) -> T_co: ...

    def done(self) -> bool: ...


class ResolvedFuture(Generic[T]):
    """A future that is already done: for backends that answer synchronously."""

    def __init__(self, value: T) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> T:
        return self._value

    def done(self) -> bool:
        return True


class ThreadFuture(Generic[T]):
    """Wraps ``concurrent.futures.Future`` so a worker-thread backend speaks ``APIFuture``."""

    def __init__(self, future: Future[T]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> T:
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()


@runtime_checkable
class Tokenizer(Protocol):
    """The slice of a Hugging Face tokenizer that renderers and recipes use."""

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


CustomLossFn = Callable[[Sequence[Datum], Sequence[Sequence[float]]], tuple[float, Mapping[str, float]]]


@runtime_checkable
class SamplingClient(Protocol):
    """Samples from fixed weights. Thread-safe: calls may overlap."""

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> APIFuture[SampleResponse]: ...

    def compute_logprobs(self, prompt: ModelInput) -> APIFuture[list[float | None]]:
        """Logprob of each prompt token given the ones before it; the first is ``None``."""
        ...


@runtime_checkable
class TrainingClient(Protocol):
    """One trainable model (LoRA over a base model).

    Calls are applied in submission order: ``forward_backward`` accumulates
    gradients until ``optim_step`` applies them. ``save_state`` captures weights
    and optimizer state atomically; ``load_state`` restores both.
    """

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]: ...

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]: ...

    def optim_step(self, adam_params: AdamParams) -> APIFuture[OptimStepResponse]: ...

    def save_state(self, name: str) -> APIFuture[SaveStateResponse]: ...

    def load_state(self, path: str) -> APIFuture[LoadStateResponse]: ...

    def save_weights_for_sampler(self, name: str) -> APIFuture[SaveStateResponse]: ...

    def save_weights_and_get_sampling_client(self, name: str) -> SamplingClient: ...

    def get_tokenizer(self) -> Tokenizer: ...

    def get_info(self) -> ModelInfo: ...


@runtime_checkable
class TrainingService(Protocol):
    """Serves the ``training_client`` port: opens training and sampling clients.

    Raises ``MissingSecretError`` or ``AdapterUnavailableError`` when it is
    built, not on first use, so a run fails before any work.
    """

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> TrainingClient: ...

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> SamplingClient: ...


@runtime_checkable
class TokenizingSampler(Protocol):
    """A sampling client that can say which tokenizer it samples with (not every backend's can)."""

    def get_tokenizer(self) -> Tokenizer: ...


@runtime_checkable
class TokenizingService(Protocol):
    """A training backend that can say which tokenizer a base model uses."""

    def tokenizer_for(self, model_name: str) -> Tokenizer: ...


@dataclass(frozen=True)
class CheckpointFile:
    """The bytes a checkpoint path names, as a file: where a user finds it, its sha256 (hex) and its size."""

    uri: str
    sha256: str
    size: int


@runtime_checkable
class FileCheckpoints(Protocol):
    """A training backend (service or client) that writes its checkpoints as files through the blob store (the
    local one), so a run can record what each file held and check it before loading it again. Tinker keeps its
    checkpoints server-side: there are no local bytes to check, and it has no such method."""

    def checkpoint_file(self, path: str) -> CheckpointFile | None:
        """What is stored at ``path`` now, read in pieces; ``None`` for a path that is not this backend's
        file (a Tinker path, a recipe's non-path value); ``BlobNotFoundError`` when its file is gone."""
        ...
