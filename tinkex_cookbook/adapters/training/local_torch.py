"""Local torch training backend: LoRA on this machine's CPU (or GPU) with Tinker's semantics.

``LocalTorchTrainingService`` serves the ``training_client`` port. All torch work of a
service (loading, copying, LoRA set-up, training, sampling) runs on its one worker thread,
in submission order: once torch ops run on a second thread, two OpenMP thread teams share
the cores and every later op in the process slows down. Callers still submit step N+1
before awaiting step N, as they would against Tinker. Clients share the frozen base weights
(only their adapters are their own). Checkpoints go through the blob store at
``<checkpoint prefix>/<model_id>/<name>/{state,sampler}.safetensors`` and are addressed as
``local://<key>``: inside a run the runtime sets the prefix to the run folder's ``checkpoints/``
(``place_checkpoints``), so deleting the folder deletes them; elsewhere it is ``local_torch``. Same seed and same calls give bit-identical weights.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.local_checkpoints import (
    CHECKPOINT_PREFIX,
    SUFFIX,
    checkpoint_file,
    read_checkpoint,
    write_checkpoint,
)
from tinkex_cookbook.adapters.training.local_losses import (
    TokenLoss,
    build_batch,
    get_loss,
    plan_micro_batches,
    prepare_rows,
)
from tinkex_cookbook.adapters.training.local_models import (
    DTYPES,
    base_linear,
    decoder_states,
    moved,
    output_head,
    resolve_model,
    token_logprobs,
)
from tinkex_cookbook.adapters.training.local_sampling import LocalTorchSamplingClient
from tinkex_cookbook.adapters.training.lora import (
    DEFAULT_ALPHA,
    apply_lora,
    load_lora_state_dict,
    lora_named_parameters,
    lora_state_dict,
)
from tinkex_cookbook.adapters.training.model_files import ModelSources
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.ports import (
    AdamParams,
    BlobStore,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    OptimStepResponse,
    SaveStateResponse,
    ThreadFuture,
)
from tinkex_cookbook.ports.training import CheckpointFile
from tinkex_cookbook.train.tokenizers import HFTokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)

DEFAULT_MICRO_BATCH_TOKENS = 512
"""Padded tokens per forward pass: a batch runs in parts of similar length (little padding, one part's
activations at a time), gradients summed. On SmolLM2-135M with 8 conversations, 512 took 0.4x the peak
memory of one pass and 15% less time."""


@dataclass(frozen=True)
class LocalTrainerOptions:
    """What a user tunes on a local trainer: precision, device, the adapter's shape, memory per pass."""

    dtype: str = "float32"
    device: str = "cpu"
    lora_alpha: float = DEFAULT_ALPHA
    lora_targets: tuple[str, ...] | None = None
    micro_batch_tokens: int | None = DEFAULT_MICRO_BATCH_TOKENS

    def __post_init__(self) -> None:
        if self.lora_targets is not None:  # a list from a manifest is the same choice
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.dtype not in DTYPES:
            raise ConfigError(f"local_torch dtype {self.dtype!r} is not supported; use one of {sorted(DTYPES)}")
        check_device(self.device)
        if self.lora_alpha <= 0:
            raise ConfigError(f"local_torch lora_alpha must be positive, got {self.lora_alpha}")

    def adapter_shape(self) -> tuple[float, list[str] | None]:
        """(alpha, targets) as a checkpoint records them."""
        return self.lora_alpha, None if self.lora_targets is None else list(self.lora_targets)


def saved_adapter_shape(payload: dict[str, Any]) -> tuple[float, list[str] | None]:
    """(alpha, targets) a checkpoint was trained with; one written before they were recorded had the defaults."""
    return payload.get("alpha", DEFAULT_ALPHA), payload.get("targets")


def check_device(device: str) -> torch.device:
    """``device`` as torch knows it; a device this machine lacks is a ``ConfigError`` saying so."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"local_torch device {device!r} is not a device name (use cpu, cuda, cuda:N or mps): "
                          f"{exc}") from None
    present = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (parsed.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }.get(parsed.type, False)
    if not present:
        raise ConfigError(
            f"local_torch device {device!r} is not available on this machine (torch {torch.__version__} "
            f"sees {torch.cuda.device_count()} CUDA device(s), MPS {'on' if torch.backends.mps.is_available() else 'off'}); "
            "set the adapter option device: cpu"
        )
    return parsed


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _init_worker(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def shared_copy(model: M) -> M:
    """A module tree of its own over the same frozen tensors: LoRA can rewrap its linears, and the
    base's weights exist once in memory however many clients train on them."""
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return deepcopy(model, memo)


class LocalTorchTrainingService:
    """Opens LoRA training clients and sampling clients on this machine."""

    def __init__(
        self, blob_store: BlobStore, models_dir: str | None = None, seed: int = 0, threads: int | None = None,
        *, sources: ModelSources | None = None, options: LocalTrainerOptions | None = None,
    ) -> None:
        self.blob_store = blob_store
        self.models_dir = models_dir
        self.seed = seed
        self.threads = threads
        self.sources = sources or ModelSources.of(models_dir)
        self.options = options or LocalTrainerOptions()
        self.checkpoint_prefix = CHECKPOINT_PREFIX
        self.device = check_device(self.options.device)
        self._bases: dict[tuple[str, int], tuple[PreTrainedModel, HFTokenizer]] = {}
        self._worker = ThreadPoolExecutor(1, "local-torch", _init_worker, (threads,))
        self._worker_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        _init_worker(threads)

    def __repr__(self) -> str:
        return (f"LocalTorchTrainingService(models_dir={self.models_dir!r}, seed={self.seed}, "
                f"dtype={self.options.dtype!r}, device={self.options.device!r})")

    def place_checkpoints(self, prefix: str) -> None:
        """Save checkpoints under ``prefix`` from now on (a run folder's ``checkpoints/``)."""
        self.checkpoint_prefix = prefix

    def checkpoint_file(self, path: str) -> CheckpointFile | None:
        """What a ``local://`` checkpoint path holds now (``FileCheckpoints``): read from the blob store in
        pieces, off the torch thread (a save must have returned before its file is asked for)."""
        return checkpoint_file(self.blob_store, path)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the torch thread; calls run one at a time, in submission order."""
        return self._worker.submit(self._on_worker, fn, *args)

    def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        self._worker_thread = threading.current_thread()
        return fn(*args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the torch thread, waited for (run at once when already on it)."""
        if threading.current_thread() is self._worker_thread:
            return fn(*args)
        return self.submit(fn, *args).result()

    def base_model(self, name: str, seed: int) -> tuple[PreTrainedModel, HFTokenizer]:
        """A module tree of the frozen base model of its own, over weights loaded once per (name, seed)."""
        return self.call(self._base_model, name, seed)

    def _base_model(self, name: str, seed: int) -> tuple[PreTrainedModel, HFTokenizer]:
        if (name, seed) not in self._bases:
            model, tokenizer = resolve_model(name, self.sources, seed, self.options.dtype)
            self._bases[name, seed] = (moved(model, self.device), tokenizer)
        model, tokenizer = self._bases[name, seed]
        return shared_copy(model), tokenizer

    def tokenizer_for(self, base_model: str) -> HFTokenizer:
        return self.base_model(base_model, self.seed)[1]

    def model_names(self) -> list[str]:
        return sorted({name for name, _ in self._bases})

    def _new_model_id(self, base_model: str, seed: int) -> str:
        """``<base slug>-seed<seed>-<session>``: unique per training session, as Tinker's model ids are,
        so two runs checkpointing into one blob store never overwrite each other's weights."""
        return f"{_slug(base_model)}-seed{seed}-{uuid.uuid4().hex[:8]}"

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> LocalTorchTrainingClient:
        lora_seed = self.seed if seed is None else seed
        return self.call(self._create_training_client, base_model, rank, lora_seed)

    def _create_training_client(self, base_model: str, rank: int, lora_seed: int) -> LocalTorchTrainingClient:
        model, tokenizer = self._base_model(base_model, self.seed)
        self._apply_lora(model, rank, lora_seed, self.options.lora_alpha, self.options.lora_targets)
        info = ModelInfo(self._new_model_id(base_model, lora_seed), base_model, rank, tokenizer.name_or_path)
        return LocalTorchTrainingClient(self, model, tokenizer, info, lora_seed)

    @staticmethod
    def _apply_lora(
        model: PreTrainedModel, rank: int, seed: int, alpha: float, targets: Sequence[str] | None
    ) -> None:
        try:
            apply_lora(model, rank, seed, alpha, targets)
        except ValueError as exc:
            raise ConfigError(f"local_torch lora_targets: {exc}") from None

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> LocalTorchSamplingClient:
        """From saved sampler weights (``model_path``) or the bare base model."""
        if model_path is None and base_model is None:
            raise ValueError("create_sampling_client needs model_path or base_model")
        model, tokenizer = self.call(self._sampling_model, model_path, base_model)
        return LocalTorchSamplingClient(model, tokenizer, self, self.seed)

    def _sampling_model(self, model_path: str | None, base_model: str | None) -> tuple[PreTrainedModel, HFTokenizer]:
        if model_path is None:
            assert base_model is not None
            return self._base_model(base_model, self.seed)
        payload = read_checkpoint(self.blob_store, model_path)
        model, tokenizer = self._base_model(payload["base_model"], payload["base_seed"])
        alpha, targets = saved_adapter_shape(payload)
        self._apply_lora(model, payload["rank"], payload["lora_seed"], alpha, targets)
        load_lora_state_dict(model, payload["lora"])
        return model, tokenizer

    def close(self) -> None:
        """Finish queued calls and stop the worker thread."""
        self._worker.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalTorchTrainingClient:
    """One LoRA model in training; every call runs on the service's torch thread, in order."""

    def __init__(
        self, service: LocalTorchTrainingService, model: PreTrainedModel, tokenizer: HFTokenizer,
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

    @property
    def model(self) -> PreTrainedModel:
        """The torch model, for inspection; do not touch it while calls are pending."""
        return self._model

    def _submit(self, fn: Callable[..., T], *args: Any) -> ThreadFuture[T]:
        return ThreadFuture(self._service.submit(fn, *args))

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
        """Logprobs and loss of a batch, one micro-batch at a time; with ``backward``, also add its
        gradient to the LoRA weights (the losses are sums over tokens, so the parts add up exactly)."""
        rows = prepare_rows(data, loss)
        vocab = base_linear(self._head).out_features
        budget = self._service.options.micro_batch_tokens
        groups = plan_micro_batches([len(row.input_ids) for row in rows], budget)
        outputs: list[dict[str, Any]] = [{} for _ in data]
        total = 0.0
        for group in groups:
            batch = build_batch([rows[i] for i in group], loss, vocab)
            logprobs, part = self._micro_batch(batch, loss, config, backward)
            total += part
            for index, output in zip(group, batch.split(logprobs), strict=True):
                outputs[index] = output
        return ForwardBackwardOutput(name, tuple(outputs), {"loss:sum": total})

    def _micro_batch(self, batch: Any, loss: TokenLoss, config: dict[str, float], backward: bool) -> tuple[Tensor, float]:
        device = self._service.device
        with torch.set_grad_enabled(backward):
            hidden = decoder_states(self._model, batch.input_ids.to(device))[0][batch.mask.to(device)]
        inputs = {k: v.to(device) for k, v in batch.inputs.items()}
        grad_fn = _logprob_grad(loss, inputs, config) if backward else None
        logprobs, grad = token_logprobs(self._head, hidden.detach().float(), batch.targets.to(device), grad_fn)
        if grad is not None:
            hidden.backward(grad.to(hidden.dtype))
        return logprobs.cpu(), float(loss.fn(logprobs, inputs, config).sum())

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
        alpha, targets = self._service.options.adapter_shape()
        payload: dict[str, Any] = {
            "base_model": self._info.base_model, "rank": self._info.lora_rank,
            "base_seed": self._service.seed, "lora_seed": self._lora_seed,
            "alpha": alpha, "targets": targets,
            "lora": {name: value.cpu() for name, value in lora_state_dict(self._model).items()},
        }
        if with_optimizer:
            payload |= {"optimizer": self._optimizer.state_dict(), "optim_steps": self._optim_steps}
        return payload

    def _save(self, name: str, kind: str) -> SaveStateResponse:
        key = f"{self._service.checkpoint_prefix}/{self._info.model_id}/{name}/{kind}{SUFFIX}"
        path = write_checkpoint(self._service.blob_store, key, self._payload(with_optimizer=kind == "state"))
        return SaveStateResponse(path)

    def save_state(self, name: str) -> ThreadFuture[SaveStateResponse]:
        """LoRA weights, optimizer state and step count, written atomically through the blob store."""
        return self._submit(self._save, name, "state")

    def save_weights_for_sampler(self, name: str) -> ThreadFuture[SaveStateResponse]:
        """LoRA weights only, for ``create_sampling_client(model_path=...)``."""
        return self._submit(self._save, name, "sampler")

    def checkpoint_file(self, path: str) -> CheckpointFile | None:
        return self._service.checkpoint_file(path)

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
        self._check_adapter_shape(path, payload)
        load_lora_state_dict(self._model, payload["lora"])
        self._optimizer.load_state_dict(payload["optimizer"])
        self._optim_steps = int(payload["optim_steps"])
        return LoadStateResponse(path)

    def _check_adapter_shape(self, path: str, payload: dict[str, Any]) -> None:
        saved, wanted = saved_adapter_shape(payload), self._service.options.adapter_shape()
        if saved != wanted:
            raise ValueError(f"checkpoint {path!r} was trained with (lora_alpha, lora_targets) {saved}, not "
                             f"{wanted}; set the local_torch options it was trained with")

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
