"""Which torch model serves a base-model name on the local backend, and how to read logprobs off it.

Tiny models are built here from a config, with a fixed-seed random init and a
real tokenizer vocabulary, so recipes run end to end offline in seconds. Any
other name must be a Hugging Face model folder under ``models_dir``. The 128k
vocabulary dominates a tiny model's cost, so ``token_logprobs`` never holds
more than one chunk of logits and gets the hidden-state gradient in the same
pass. transformers is imported only when a model is resolved.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.lora import LoRAHead
from tinkex_cookbook.errors import ConfigError, UnknownNameError
from tinkex_cookbook.train.tokenizer_sources import get_tokenizer
from tinkex_cookbook.train.tokenizers import HFTokenizer

CHUNK_LOGITS = 1 << 23
"""Logits per chunk (32 MB of float32): large enough for fast matmuls, small enough to stay warm in cache."""

LogprobGrad = Callable[[Tensor, slice], Tensor]
"""``(logprobs of a chunk, its rows) -> dloss/dlogprobs``: a loss that is a sum over tokens."""

Head = nn.Linear | LoRAHead
"""An output head ``token_logprobs`` reads: the base lm_head, or it with its LoRA adapter."""


@dataclass(frozen=True)
class TinyModel:
    """A Llama-architecture model small enough to train on CPU, over a real tokenizer's vocabulary."""

    tokenizer_model: str
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128


TINY_MODELS: dict[str, TinyModel] = {
    "tiny-llama3": TinyModel("meta-llama/Llama-3.2-1B"),
    "tiny-qwen3": TinyModel("Qwen/Qwen3-8B"),
    "tiny-bytes": TinyModel("tinkex/bytes"),
}

_INIT_LOCK = threading.Lock()


def resolve_model(
    name: str, models_dir: str | Path | None = None, seed: int = 0
) -> tuple[nn.Module, HFTokenizer]:
    """The frozen base model and tokenizer for ``name``: a tiny model, or a folder under ``models_dir``."""
    if name in TINY_MODELS:
        return build_tiny_model(TINY_MODELS[name], seed)
    folder = find_model_folder(name, models_dir)
    if folder is None:
        raise UnknownNameError(unknown_model_message(name, models_dir))
    return load_model_folder(name, folder)


def find_model_folder(name: str, models_dir: str | Path | None) -> Path | None:
    """``models_dir/<name>`` or ``models_dir/<org>--<model>``, whichever holds a config.json."""
    if models_dir is None:
        return None
    for candidate in (Path(models_dir) / name, Path(models_dir) / name.replace("/", "--")):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def unknown_model_message(name: str, models_dir: str | Path | None) -> str:
    where = f"models_dir {str(models_dir)!r}" if models_dir is not None else "models_dir (not set)"
    return (
        f"unknown model {name!r} for the local_torch backend. Tiny models: "
        f"{', '.join(sorted(TINY_MODELS))}. For any other model, put a Hugging Face model folder "
        f"(config.json, weights, tokenizer.json) at <models_dir>/{name} or "
        f"<models_dir>/{name.replace('/', '--')} and set the adapter's models_dir option; looked in {where}"
    )


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with torch's global RNG at ``seed`` (model init uses it), then restore the caller's RNG."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_tiny_model(spec: TinyModel, seed: int) -> tuple[nn.Module, HFTokenizer]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = get_tokenizer(spec.tokenizer_model)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with seeded(seed):
        model = LlamaForCausalLM(config)
    return frozen(model), tokenizer


def load_model_folder(name: str, folder: Path) -> tuple[nn.Module, HFTokenizer]:
    """A local Hugging Face folder, in float32 (CPU training); its own tokenizer if it ships one."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    has_tokenizer = (folder / "tokenizer.json").is_file()
    tokenizer = get_tokenizer(name, path=folder) if has_tokenizer else get_tokenizer(name)
    return frozen(model), tokenizer


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout, so steps are deterministic), no base gradients, a head we can fuse."""
    model.eval()
    model.requires_grad_(False)
    output_head(model)
    return model


def output_head(model: nn.Module) -> Head:
    """The plain linear lm_head (or its LoRA wrapper) ``token_logprobs`` reproduces; anything fancier is refused."""
    head = model.get_output_embeddings()
    base = base_linear(head)
    config = model.config
    scaled = getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None)
    if not isinstance(base, nn.Linear) or scaled:
        raise ConfigError(
            f"model {getattr(config, 'name_or_path', '')!r} has an output head the local_torch backend "
            "does not support (it needs a plain linear lm_head without logit scaling or softcapping)"
        )
    return head


def base_linear(head: Head) -> nn.Linear:
    """The frozen linear under a ``LoRAHead``; any other head as it is."""
    return head.base if isinstance(head, LoRAHead) else head


def decoder_states(
    model: nn.Module, input_ids: Tensor, cache: Any = None, use_cache: bool = False
) -> tuple[Tensor, Any]:
    """Final hidden states (and the KV cache when asked); the lm_head is left to ``token_logprobs``.

    No attention mask: batches are right-padded and attention is causal, so no
    real position ever sees a pad. The cache travels under the name the installed
    transformers declares, and is passed only when there is one, so no release
    sees a keyword it has deprecated.
    """
    decoder = model.base_model
    name = cache_keyword(type(decoder))
    use_cache = use_cache or cache is not None
    kwargs = {name: cache} if cache is not None else {}
    out = decoder(input_ids=input_ids, use_cache=use_cache, **kwargs)
    return out.last_hidden_state, (getattr(out, name) if use_cache else None)


@functools.cache
def cache_keyword(decoder: type[nn.Module]) -> str:
    """``cache`` (transformers 5.25 and newer) or ``past_key_values`` (older): the decoder's KV-cache argument."""
    parameters = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def token_logprobs(
    head: Head, hidden: Tensor, targets: Tensor, grad_fn: LogprobGrad | None = None
) -> tuple[Tensor, Tensor | None]:
    """``log softmax(head(hidden))[targets]`` per row, and with ``grad_fn`` also dloss/dhidden.

    One chunk of rows at a time: logits, then exp in place for the softmax,
    then the gradient through the head from the same buffer. The full
    [rows, vocab] logits never exist and each logit is exponentiated once.

    A ``LoRAHead`` is read as one matmul of the augmented hidden state
    ``cat([h, scale * h @ A^T])`` with ``cat([W, B], dim=1)``. With ``grad_fn``
    its A and B gradients are added to their ``.grad``, as ``backward`` would.
    """
    if not isinstance(head, LoRAHead):
        bias = None if head.bias is None else head.bias.detach()
        logprobs, grad, _ = _fused_logprobs(head.weight.detach(), bias, hidden, targets, grad_fn)
        return logprobs, grad
    training = grad_fn is not None
    with torch.set_grad_enabled(training):
        leaf = hidden.detach().requires_grad_(training)
        features = head.features(leaf)
    bias = None if head.base.bias is None else head.base.bias.detach()
    logprobs, grad, grad_b = _fused_logprobs(
        head.fused_weight(), bias, features.detach(), targets, grad_fn, extra=head.rank
    )
    if grad is None or grad_b is None:
        return logprobs, None
    if head.lora_b.requires_grad:
        head.lora_b.grad = grad_b if head.lora_b.grad is None else head.lora_b.grad.add_(grad_b)
    features.backward(grad)
    return logprobs, leaf.grad


def _fused_logprobs(
    weight: Tensor, bias: Tensor | None, hidden: Tensor, targets: Tensor, grad_fn: LogprobGrad | None,
    extra: int = 0,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Chunked logprobs of ``hidden @ weight.T (+ bias)``; with ``grad_fn`` also dloss/dhidden and,
    when ``extra`` > 0, dloss/dweight for the last ``extra`` columns of ``weight``."""
    rows = max(1, CHUNK_LOGITS // weight.shape[0])
    logprobs = hidden.new_empty(len(targets))
    grad = torch.empty_like(hidden) if grad_fn is not None else None
    grad_cols = hidden.new_zeros(weight.shape[0], extra) if grad_fn is not None and extra else None
    buffer = hidden.new_empty(min(rows, len(targets)), weight.shape[0])
    with torch.no_grad():
        for start in range(0, len(targets), rows):
            span = slice(start, start + rows)
            logprobs[span], sums = _chunk_logprobs(hidden[span], targets[span], weight, bias, buffer)
            if grad is not None and grad_fn is not None:
                dlogprobs = grad_fn(logprobs[span], span).detach()
                dlogits = buffer[: len(sums)]
                grad[span] = _chunk_grad(dlogits, sums, targets[span], dlogprobs, weight)
                if grad_cols is not None:
                    grad_cols.addmm_(dlogits.t(), hidden[span, -extra:])
    return logprobs, grad, grad_cols


def _chunk_logprobs(
    hidden: Tensor, targets: Tensor, weight: Tensor, bias: Tensor | None, buffer: Tensor
) -> tuple[Tensor, Tensor]:
    """Target logprobs of one chunk; leaves ``exp(logits - max)`` in ``buffer`` and returns its row sums."""
    logits = torch.mm(hidden, weight.t(), out=buffer[: len(targets)])
    if bias is not None:
        logits.add_(bias)
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    peak = logits.amax(1, keepdim=True)
    sums = logits.sub_(peak).exp_().sum(1)
    return picked - peak.squeeze(1) - sums.log(), sums


def _chunk_grad(exps: Tensor, sums: Tensor, targets: Tensor, dlogprobs: Tensor, weight: Tensor) -> Tensor:
    """dloss/dhidden = dlogits @ weight, with dlogits = dlogprobs * (onehot - softmax) built in place
    in the exp buffer (which holds dlogits afterwards)."""
    exps.mul_((-dlogprobs / sums)[:, None])
    exps.scatter_add_(1, targets[:, None], dlogprobs[:, None])
    return exps @ weight
