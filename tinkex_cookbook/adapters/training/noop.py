"""Noop training backend: deterministic, in-memory, instant.

It trains nothing, but its outputs are well formed and depend on what it is
given: the logprob of a target token is a fixed function of the token id,
scaled down as optimizer steps accumulate. So a recipe's loss reflects its
data and its step count, and tests can see both flow through the pipeline.
Every call is recorded on the service (``NoopTrainingService.calls``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tinkex_cookbook.ports import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    ResolvedFuture,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveStateResponse,
    TensorData,
)
from tinkex_cookbook.train.tokenizers import ByteTokenizer


def token_logprob(token: int, sharpness: float) -> float:
    """The noop model's logprob for ``token``: negative, token-dependent, rising with training."""
    return -(1.0 + (token % 13) / 13.0) / sharpness


@dataclass
class NoopModelState:
    """What a noop checkpoint holds: enough to prove resume restores it."""

    optim_steps: int = 0
    sharpness: float = 1.0

    def encode(self) -> str:
        return f"steps={self.optim_steps}"

    @classmethod
    def decode(cls, path: str) -> NoopModelState | None:
        """The state a checkpoint path carries, so a new process (a resumed run) can load it."""
        _, sep, query = path.partition("?steps=")
        if not sep or not query.isdigit():
            return None
        return cls.after(int(query))

    @classmethod
    def after(cls, steps: int) -> NoopModelState:
        return cls(steps, 1.0 + 0.05 * steps)


@dataclass
class NoopTrainingService:
    """Serves the ``training_client`` port; records every call in ``calls``."""

    seed: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: dict[str, NoopModelState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, detail: str = "") -> None:
        with self._lock:
            self.calls.append((method, detail))

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> NoopTrainingClient:
        self.record("create_lora_training_client", f"{base_model} rank={rank}")
        return NoopTrainingClient(self, base_model, rank)

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> NoopSamplingClient:
        self.record("create_sampling_client", model_path or base_model or "")
        state = self.checkpoints.get(model_path or "") or NoopModelState.decode(model_path or "") or NoopModelState()
        return NoopSamplingClient(state.sharpness, self.seed)


class NoopTrainingClient:
    def __init__(self, service: NoopTrainingService, base_model: str, rank: int) -> None:
        self._service = service
        self._info = ModelInfo(f"noop-{base_model}", base_model, rank, base_model)
        self.state = NoopModelState()
        self._tokenizer = ByteTokenizer()

    def _outputs(self, data: Sequence[Datum], loss_fn: str) -> ForwardBackwardOutput:
        outputs, total = [], 0.0
        for datum in data:
            targets = datum.loss_fn_inputs["target_tokens"].data
            weights = datum.loss_fn_inputs.get("weights")
            w = weights.data if weights is not None else np.ones(len(targets), dtype=np.float32)
            logprobs = np.array([token_logprob(int(t), self.state.sharpness) for t in targets], np.float32)
            total += float(-(logprobs * w).sum())
            outputs.append({"logprobs": TensorData.from_numpy(logprobs)})
        return ForwardBackwardOutput(loss_fn, tuple(outputs), {"loss:sum": total})

    def forward_backward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> ResolvedFuture[ForwardBackwardOutput]:
        self._service.record("forward_backward", f"{len(data)} {loss_fn}")
        return ResolvedFuture(self._outputs(data, loss_fn))

    def forward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> ResolvedFuture[ForwardBackwardOutput]:
        self._service.record("forward", f"{len(data)} {loss_fn}")
        return ResolvedFuture(self._outputs(data, loss_fn))

    def optim_step(self, adam_params: AdamParams) -> ResolvedFuture[OptimStepResponse]:
        self._service.record("optim_step", f"lr={adam_params.learning_rate:g}")
        grad_norm = 1.0 / self.state.sharpness  # shrinks as steps accumulate, like a converging run's
        self.state = NoopModelState.after(self.state.optim_steps + 1)
        metrics = {"grad_norm": grad_norm, "optim_steps": float(self.state.optim_steps)}
        return ResolvedFuture(OptimStepResponse(metrics))

    def _save(self, kind: str, name: str) -> str:
        path = f"noop://{self._info.model_id}/{kind}/{name}?{self.state.encode()}"
        self._service.checkpoints[path] = NoopModelState(self.state.optim_steps, self.state.sharpness)
        self._service.record(f"save_{kind}", path)
        return path

    def save_state(self, name: str) -> ResolvedFuture[SaveStateResponse]:
        return ResolvedFuture(SaveStateResponse(self._save("weights", name)))

    def load_state(self, path: str) -> ResolvedFuture[LoadStateResponse]:
        saved = self._service.checkpoints.get(path) or NoopModelState.decode(path)
        if saved is None:
            raise FileNotFoundError(f"noop backend has no checkpoint at {path!r}")
        self.state = NoopModelState(saved.optim_steps, saved.sharpness)
        self._service.record("load_state", path)
        return ResolvedFuture(LoadStateResponse(path))

    def save_weights_for_sampler(self, name: str) -> ResolvedFuture[SaveStateResponse]:
        return ResolvedFuture(SaveStateResponse(self._save("sampler_weights", name)))

    def save_weights_and_get_sampling_client(self, name: str) -> NoopSamplingClient:
        return self._service.create_sampling_client(self.save_weights_for_sampler(name).result().path)

    def get_tokenizer(self) -> ByteTokenizer:
        return self._tokenizer

    def get_info(self) -> ModelInfo:
        return self._info


class NoopSamplingClient:
    """Samples printable bytes chosen by a hash of (prompt, seed, index): same input, same output."""

    def __init__(self, sharpness: float, seed: int) -> None:
        self._sharpness = sharpness
        self._seed = seed

    def get_tokenizer(self) -> ByteTokenizer:
        return ByteTokenizer()

    def _tokens(self, prompt: ModelInput, seed: int, index: int, count: int) -> tuple[int, ...]:
        digest = hashlib.sha256(f"{prompt.to_ints()}|{seed}|{index}".encode()).digest()
        return tuple(32 + digest[i % len(digest)] % 95 for i in range(count))

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> ResolvedFuture[SampleResponse]:
        count = sampling_params.max_tokens or 16
        seed = self._seed if sampling_params.seed is None else sampling_params.seed
        sequences = []
        for index in range(num_samples):
            tokens = self._tokens(prompt, seed, index, count)
            logprobs = tuple(token_logprob(t, self._sharpness) for t in tokens)
            sequences.append(SampledSequence("length", tokens, logprobs))
        return ResolvedFuture(SampleResponse(tuple(sequences)))

    def compute_logprobs(self, prompt: ModelInput) -> ResolvedFuture[list[float | None]]:
        tokens = prompt.to_ints()
        logprobs: list[float | None] = [None]
        logprobs.extend(token_logprob(t, self._sharpness) for t in tokens[1:])
        return ResolvedFuture(logprobs)

