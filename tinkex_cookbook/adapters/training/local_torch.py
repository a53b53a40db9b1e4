"""Local torch training backend: LoRA on CPU with Tinker's semantics.

``LocalTorchTrainingService`` serves the ``training_client`` port. Each client
owns one worker thread, so calls run in submission order while the caller
submits step N+1 before awaiting step N, as it would against Tinker.
Checkpoints go through the run's blob store at
``local_torch/<model_id>/<name>/{state,sampler}.pt`` and are addressed as
``local://<key>``. Same seed and same calls give bit-identical weights.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from typing import Any, Self, TypeVar

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.local_checkpoints import (
    CHECKPOINT_PREFIX,
    read_checkpoint,
    write_checkpoint,
)
from tinkex_cookbook.adapters.training.local_losses import TokenLoss, build_batch, get_loss
from tinkex_cookbook.adapters.training.local_models import (
    base_linear,
    decoder_states,
    output_head,
    resolve_model,
    token_logprobs,
)
from tinkex_cookbook.adapters.training.local_sampling import LocalTorchSamplingClient
from tinkex_cookbook.adapters.training.lora import (
    apply_lora,
    load_lora_state_dict,
    lora_named_parameters,
    lora_state_dict,
)
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
from tinkex_cookbook.train.tokenizers import HFTokenizer

T = TypeVar("T")


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
