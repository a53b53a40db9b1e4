"""Local torch training backend: LoRA on CPU with Tinker's semantics.

``LocalTorchTrainingService`` serves the ``training_client`` port. Each client
owns one worker thread, so calls run in submission order while the caller
submits step N+1 before awaiting step N, as it would against Tinker.
Checkpoints go through the run's blob store at
``local_torch/<model_id>/<name>/{state,sampler}.pt`` and are addressed as
``local://<key>``. Same seed and same calls give bit-identical weights.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.local_models import (
    base_linear,
    decoder_states,
    output_head,
    resolve_model,
    token_logprobs,
)
from tinkex_cookbook.adapters.training.lora import (
    apply_lora,
    load_lora_state_dict,
    lora_named_parameters,
    lora_state_dict,
)
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, choices
from tinkex_cookbook.ports import (
    AdamParams,
    BlobStore,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveStateResponse,
    TensorData,
    ThreadFuture,
)
from tinkex_cookbook.train.tokenizers import HFTokenizer

T = TypeVar("T")
PATH_SCHEME = "local://"
CHECKPOINT_PREFIX = "local_torch"
DEFAULT_MAX_TOKENS = 128


# Losses: each is a sum over tokens of a function of that token's logprob.

TokenLossFn = Callable[[Tensor, Mapping[str, Tensor], Mapping[str, float]], Tensor]


def cross_entropy(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    return -inputs["weights"] * logprobs


def importance_sampling(
    logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]
) -> Tensor:
    return -torch.exp(logprobs - inputs["logprobs"]) * inputs["advantages"]


def _clipped_ratio(
    logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]
) -> tuple[Tensor, Tensor]:
    ratio = torch.exp(logprobs - inputs["logprobs"])
    return ratio, ratio.clamp(config["clip_low_threshold"], config["clip_high_threshold"])


def ppo(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    ratio, clipped = _clipped_ratio(logprobs, inputs, config)
    advantages = inputs["advantages"]
    return -torch.minimum(ratio * advantages, clipped * advantages)


def cispo(logprobs: Tensor, inputs: Mapping[str, Tensor], config: Mapping[str, float]) -> Tensor:
    _, clipped = _clipped_ratio(logprobs, inputs, config)
    return -clipped.detach() * logprobs * inputs["advantages"]


@dataclass(frozen=True)
class TokenLoss:
    """A loss: its per-token function, the float inputs it reads, and its config with defaults."""

    fn: TokenLossFn
    inputs: tuple[str, ...]
    config: Mapping[str, float] = field(default_factory=dict)
    optional_ones: tuple[str, ...] = ()

    def resolve_config(self, name: str, given: Mapping[str, float] | None) -> dict[str, float]:
        unknown = set(given or {}) - set(self.config)
        if unknown:
            raise ValueError(f"unknown loss_fn_config keys {sorted(unknown)} for loss {name!r}; "
                             f"valid keys: {choices(self.config)}")
        return {**self.config, **{k: float(v) for k, v in (given or {}).items()}}


RL_INPUTS = ("logprobs", "advantages")
LOSSES: dict[str, TokenLoss] = {
    "cross_entropy": TokenLoss(cross_entropy, ("weights",), optional_ones=("weights",)),
    "importance_sampling": TokenLoss(importance_sampling, RL_INPUTS),
    "ppo": TokenLoss(ppo, RL_INPUTS, {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}),
    "cispo": TokenLoss(cispo, RL_INPUTS, {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0}),
}


def get_loss(name: str) -> TokenLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss_fn {name!r} for the local_torch backend; valid: {choices(LOSSES)}")
    return LOSSES[name]


# Batches: right-padded input ids plus per-token loss inputs for the real positions, datum after datum.


@dataclass(frozen=True)
class Batch:
    input_ids: Tensor
    mask: Tensor
    lengths: tuple[int, ...]
    targets: Tensor
    inputs: dict[str, Tensor]

    def split(self, values: Tensor) -> tuple[dict[str, TensorData], ...]:
        parts = torch.split(values, list(self.lengths))
        return tuple({"logprobs": TensorData.from_numpy(part.numpy().astype(np.float32))} for part in parts)


def _loss_input(datum: Datum, index: int, key: str, loss: TokenLoss, dtype: str) -> np.ndarray:
    value = datum.loss_fn_inputs.get(key)
    length = datum.model_input.length
    if value is None and key in loss.optional_ones:
        return np.ones(length, dtype=dtype)
    if value is None:
        raise ValueError(f"datum {index} has no loss_fn_inputs[{key!r}], which this loss needs")
    array = value.to_numpy().reshape(-1).astype(dtype)
    if len(array) != length:
        raise ValueError(f"datum {index}: loss_fn_inputs[{key!r}] has {len(array)} values "
                         f"for {length} input tokens")
    return array


def build_batch(data: Sequence[Datum], loss: TokenLoss, vocab_size: int) -> Batch:
    if not data:
        raise ValueError("forward/forward_backward needs at least one datum")
    rows = [torch.tensor(d.model_input.to_ints(), dtype=torch.long) for d in data]
    if any(len(row) == 0 for row in rows):
        raise ValueError("every datum needs at least one input token")
    targets = np.concatenate([_loss_input(d, i, "target_tokens", loss, "int64") for i, d in enumerate(data)])
    inputs = {key: torch.from_numpy(np.concatenate([_loss_input(d, i, key, loss, "float32")
                                                    for i, d in enumerate(data)])) for key in loss.inputs}
    input_ids = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = torch.tensor([len(row) for row in rows])
    _check_token_range(input_ids, targets, vocab_size)
    mask = torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]
    return Batch(input_ids, mask, tuple(lengths.tolist()), torch.from_numpy(targets), inputs)


def _check_token_range(input_ids: Tensor, targets: np.ndarray, vocab_size: int) -> None:
    low = min(int(input_ids.min()), int(targets.min()))
    high = max(int(input_ids.max()), int(targets.max()))
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}) for this model; got range [{low}, {high}]")


# Checkpoints: torch.save'd dicts of tensors and plain values, read back with weights_only=True.


def checkpoint_key(path: str) -> str:
    if not path.startswith(PATH_SCHEME):
        raise ValueError(f"{path!r} is not a local_torch checkpoint path; expected '{PATH_SCHEME}<key>'")
    return path.removeprefix(PATH_SCHEME)


def write_checkpoint(blob_store: BlobStore, key: str, payload: dict[str, Any]) -> str:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob_store.write(key, buffer.getvalue())
    return PATH_SCHEME + key


def read_checkpoint(blob_store: BlobStore, path: str) -> dict[str, Any]:
    """The payload at ``path``; a missing or unreadable checkpoint is an error that names it."""
    key = checkpoint_key(path)
    try:
        data = blob_store.read(key)
    except BlobNotFoundError:
        raise BlobNotFoundError(f"no local_torch checkpoint at {path!r} ({blob_store.uri(key)})") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on bad bytes
        raise BlobStoreError(f"local_torch checkpoint at {path!r} is corrupt or not a checkpoint: {exc}") \
            from exc
    if not isinstance(payload, dict) or "lora" not in payload:
        raise BlobStoreError(f"local_torch checkpoint at {path!r} is not a local_torch checkpoint")
    return payload


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _init_worker(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


class LocalTorchTrainingService:
    """Opens LoRA training clients and sampling clients on this machine's CPU."""

    def __init__(
        self, blob_store: BlobStore, models_dir: str | None = None, seed: int = 0, threads: int | None = None
    ) -> None:
        self.blob_store = blob_store
        self.models_dir = models_dir
        self.seed = seed
        self.threads = threads
        self._bases: dict[tuple[str, int], tuple[nn.Module, HFTokenizer]] = {}
        self._executors: list[ThreadPoolExecutor] = []
        self._sampling_executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _init_worker(threads)

    def __repr__(self) -> str:
        return f"LocalTorchTrainingService(models_dir={self.models_dir!r}, seed={self.seed})"

    def base_model(self, name: str, seed: int) -> tuple[nn.Module, HFTokenizer]:
        """A private copy of the frozen base model: built once per (name, seed), copied per client."""
        with self._lock:
            if (name, seed) not in self._bases:
                self._bases[name, seed] = resolve_model(name, self.models_dir, seed)
            model, tokenizer = self._bases[name, seed]
            return deepcopy(model), tokenizer

    def _new_executor(self, name: str) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(1, f"local-torch-{name}", _init_worker, (self.threads,))
        self._executors.append(executor)
        return executor

    def executor(self, name: str) -> ThreadPoolExecutor:
        """One worker thread: the calls given to it run one at a time, in submission order."""
        with self._lock:
            return self._new_executor(name)

    def sampling_executor(self) -> ThreadPoolExecutor:
        """The one worker every sampling client shares, so an RL loop's many samplers add no threads."""
        with self._lock:
            if self._sampling_executor is None:
                self._sampling_executor = self._new_executor("sampling")
            return self._sampling_executor

    def _new_model_id(self, base_model: str, seed: int) -> str:
        """``<base slug>-seed<seed>-<session>``: unique per training session, as Tinker's model ids are,
        so two runs checkpointing into one blob store never overwrite each other's weights."""
        return f"{_slug(base_model)}-seed{seed}-{uuid.uuid4().hex[:8]}"

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> LocalTorchTrainingClient:
        lora_seed = self.seed if seed is None else seed
        model, tokenizer = self.base_model(base_model, self.seed)
        apply_lora(model, rank, lora_seed)
        info = ModelInfo(self._new_model_id(base_model, lora_seed), base_model, rank, tokenizer.name_or_path)
        return LocalTorchTrainingClient(self, model, tokenizer, info, lora_seed)

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> LocalTorchSamplingClient:
        """From saved sampler weights (``model_path``) or the bare base model."""
        if model_path is not None:
            payload = read_checkpoint(self.blob_store, model_path)
            model, tokenizer = self.base_model(payload["base_model"], payload["base_seed"])
            apply_lora(model, payload["rank"], payload["lora_seed"])
            load_lora_state_dict(model, payload["lora"])
        elif base_model is not None:
            model, tokenizer = self.base_model(base_model, self.seed)
        else:
            raise ValueError("create_sampling_client needs model_path or base_model")
        return LocalTorchSamplingClient(model, tokenizer, self.sampling_executor(), self.seed)

    def close(self) -> None:
        """Finish queued calls and stop every worker thread."""
        with self._lock:
            executors, self._executors, self._sampling_executor = self._executors, [], None
        for executor in executors:
            executor.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalTorchTrainingClient:
    """One LoRA model in training; every call runs on this client's worker thread, in order."""

    def __init__(
        self, service: LocalTorchTrainingService, model: nn.Module, tokenizer: HFTokenizer,
        info: ModelInfo, lora_seed: int,
    ) -> None:
        self._service = service
        self._model = model
        self._head = output_head(model)
        self._tokenizer = tokenizer
        self._info = info
        self._lora_seed = lora_seed
        self._params = [parameter for _, parameter in lora_named_parameters(model)]
        self._optimizer = torch.optim.AdamW(self._params, lr=AdamParams().learning_rate)
        self._optim_steps = 0
        self._executor = service.executor(info.model_id)

    @property
    def model(self) -> nn.Module:
        """The torch model, for inspection; do not touch it while calls are pending."""
        return self._model

    def _submit(self, fn: Callable[..., T], *args: Any) -> ThreadFuture[T]:
        return ThreadFuture(self._executor.submit(fn, *args))

    def forward_backward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> ThreadFuture[ForwardBackwardOutput]:
        loss = get_loss(loss_fn)
        config = loss.resolve_config(loss_fn, loss_fn_config)
        return self._submit(self._run, tuple(data), loss_fn, loss, config, True)

    def forward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> ThreadFuture[ForwardBackwardOutput]:
        loss = get_loss(loss_fn)
        config = loss.resolve_config(loss_fn, loss_fn_config)
        return self._submit(self._run, tuple(data), loss_fn, loss, config, False)

    def _run(
        self, data: Sequence[Datum], name: str, loss: TokenLoss, config: dict[str, float], backward: bool
    ) -> ForwardBackwardOutput:
        """Logprobs and loss of a batch; with ``backward``, also add its gradient to the LoRA weights."""
        batch = build_batch(data, loss, base_linear(self._head).out_features)
        with torch.set_grad_enabled(backward):
            hidden = decoder_states(self._model, batch.input_ids)[0][batch.mask]
        grad_fn = _logprob_grad(loss, batch.inputs, config) if backward else None
        logprobs, grad = token_logprobs(self._head, hidden.detach(), batch.targets, grad_fn)
        if grad is not None:
            hidden.backward(grad)
        total = float(loss.fn(logprobs, batch.inputs, config).sum())
        return ForwardBackwardOutput(name, batch.split(logprobs), {"loss:sum": total})

    def optim_step(self, adam_params: AdamParams) -> ThreadFuture[OptimStepResponse]:
        return self._submit(self._optim_step, adam_params)

    def _optim_step(self, adam: AdamParams) -> OptimStepResponse:
        for group in self._optimizer.param_groups:
            group.update(lr=adam.learning_rate, betas=(adam.beta1, adam.beta2), eps=adam.eps,
                         weight_decay=adam.weight_decay)
        grads = [p.grad for p in self._params if p.grad is not None]
        norm = nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if adam.grad_clip_norm > 0 and grads:
            nn.utils.clip_grads_with_norm_(self._params, adam.grad_clip_norm, norm)
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        self._optim_steps += 1
        return OptimStepResponse({"grad_norm": float(norm), "learning_rate": adam.learning_rate,
                                  "optim_steps": float(self._optim_steps)})

    def _payload(self, with_optimizer: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "base_model": self._info.base_model, "rank": self._info.lora_rank,
            "base_seed": self._service.seed, "lora_seed": self._lora_seed,
            "lora": lora_state_dict(self._model),
        }
        if with_optimizer:
            payload |= {"optimizer": self._optimizer.state_dict(), "optim_steps": self._optim_steps}
        return payload

    def _save(self, name: str, kind: str) -> SaveStateResponse:
        key = f"{CHECKPOINT_PREFIX}/{self._info.model_id}/{name}/{kind}.pt"
        path = write_checkpoint(self._service.blob_store, key, self._payload(with_optimizer=kind == "state"))
        return SaveStateResponse(path)

    def save_state(self, name: str) -> ThreadFuture[SaveStateResponse]:
        """LoRA weights, optimizer state and step count, written atomically through the blob store."""
        return self._submit(self._save, name, "state")

    def save_weights_for_sampler(self, name: str) -> ThreadFuture[SaveStateResponse]:
        """LoRA weights only, for ``create_sampling_client(model_path=...)``."""
        return self._submit(self._save, name, "sampler")

    def load_state(self, path: str) -> ThreadFuture[LoadStateResponse]:
        return self._submit(self._load_state, path)

    def _load_state(self, path: str) -> LoadStateResponse:
        payload = read_checkpoint(self._service.blob_store, path)
        if "optimizer" not in payload:
            raise ValueError(f"{path!r} holds sampler weights only; load_state needs a save_state checkpoint")
        saved = (payload["base_model"], payload["rank"], payload["base_seed"])
        if saved != (self._info.base_model, self._info.lora_rank, self._service.seed):
            raise ValueError(f"checkpoint {path!r} is for (base model, rank, base seed) {saved}, not "
                             f"{(self._info.base_model, self._info.lora_rank, self._service.seed)}")
        load_lora_state_dict(self._model, payload["lora"])
        self._optimizer.load_state_dict(payload["optimizer"])
        self._optim_steps = int(payload["optim_steps"])
        return LoadStateResponse(path)

    def save_weights_and_get_sampling_client(self, name: str) -> LocalTorchSamplingClient:
        path = self.save_weights_for_sampler(name).result().path
        return self._service.create_sampling_client(model_path=path)

    def get_tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def get_info(self) -> ModelInfo:
        return self._info


def _logprob_grad(
    loss: TokenLoss, inputs: Mapping[str, Tensor], config: Mapping[str, float]
) -> Callable[[Tensor, slice], Tensor]:
    """dloss/dlogprobs for one chunk of tokens, by autograd through the per-token loss."""

    def grad(logprobs: Tensor, span: slice) -> Tensor:
        leaf = logprobs.detach().requires_grad_()
        with torch.enable_grad():
            total = loss.fn(leaf, {k: v[span] for k, v in inputs.items()}, config).sum()
            return torch.autograd.grad(total, leaf)[0]

    return grad


# Sampling.


@dataclass(frozen=True)
class StopRule:
    """Stop at any of ``token_ids``, or once the decoded tail contains any of ``strings``."""

    token_ids: frozenset[int]
    strings: tuple[str, ...]

    @classmethod
    def from_param(cls, stop: str | Sequence[str] | Sequence[int] | None) -> StopRule:
        items = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return cls(frozenset(int(s) for s in items if not isinstance(s, str)),
                   tuple(s for s in items if isinstance(s, str) and s))

    def hit(self, tokens: Sequence[int], tokenizer: HFTokenizer) -> bool:
        if tokens[-1] in self.token_ids:
            return True
        if not self.strings:
            return False
        window = 4 * max(len(s) for s in self.strings) + 1
        tail = tokenizer.decode(list(tokens[-window:]))
        return any(s in tail for s in self.strings)


def _top_k_top_p(scores: Tensor, top_k: int, top_p: float) -> Tensor:
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return scores


def pick_tokens(logits: Tensor, params: SamplingParams, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Next token per row (greedy at temperature 0) and its logprob under the model itself.

    The logprob ignores temperature, top_k and top_p, so it matches
    ``compute_logprobs`` and the trainer's logprobs for the same tokens.
    """
    logprobs = torch.log_softmax(logits.float(), -1)
    if params.temperature <= 0:
        chosen = logprobs.argmax(-1)
    else:
        scores = _top_k_top_p(logits.float() / params.temperature, params.top_k, params.top_p)
        chosen = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
    return chosen, logprobs.gather(1, chosen[:, None]).squeeze(1)


class LocalTorchSamplingClient:
    """Samples from fixed weights on the service's sampling worker; calls queue up in order."""

    def __init__(
        self, model: nn.Module, tokenizer: HFTokenizer, executor: ThreadPoolExecutor, seed: int
    ) -> None:
        self._model = model
        self._head = output_head(model)
        self._tokenizer = tokenizer
        self._executor = executor
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def model(self) -> nn.Module:
        return self._model

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> ThreadFuture[SampleResponse]:
        tokens = prompt.to_ints()
        if not tokens or num_samples < 1:
            raise ValueError(f"sample needs a non-empty prompt and num_samples >= 1 (got {num_samples})")
        return ThreadFuture(self._executor.submit(self._sample, tokens, num_samples, sampling_params))

    def compute_logprobs(self, prompt: ModelInput) -> ThreadFuture[list[float | None]]:
        return ThreadFuture(self._executor.submit(self._compute_logprobs, prompt.to_ints()))

    @torch.no_grad()
    def _compute_logprobs(self, tokens: list[int]) -> list[float | None]:
        if not tokens:
            return []
        ids = torch.tensor([tokens])
        hidden = decoder_states(self._model, ids)[0][0, :-1]
        logprobs, _ = token_logprobs(self._head, hidden, ids[0, 1:])
        return [None, *logprobs.tolist()]

    @torch.no_grad()
    def _sample(self, prompt: list[int], count: int, params: SamplingParams) -> SampleResponse:
        generator = self._generator if params.seed is None else torch.Generator().manual_seed(params.seed)
        stop = StopRule.from_param(params.stop)
        tokens: list[list[int]] = [[] for _ in range(count)]
        logprobs: list[list[float]] = [[] for _ in range(count)]
        stopped = [False] * count
        hidden, cache = decoder_states(self._model, torch.tensor([prompt] * count), use_cache=True)
        for _ in range(DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens):
            chosen, chosen_logprobs = pick_tokens(self._head(hidden[:, -1]), params, generator)
            for row in (r for r in range(count) if not stopped[r]):
                tokens[row].append(int(chosen[row]))
                logprobs[row].append(float(chosen_logprobs[row]))
                stopped[row] = stop.hit(tokens[row], self._tokenizer)
            if all(stopped):
                break
            hidden, cache = decoder_states(self._model, chosen[:, None], cache)
        return SampleResponse(tuple(
            SampledSequence("stop" if done else "length", tuple(t), tuple(lp))
            for t, lp, done in zip(tokens, logprobs, stopped, strict=True)
        ))
