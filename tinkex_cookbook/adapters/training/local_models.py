"""Which torch model serves a base-model name on the local backend, and how to read logprobs off it.

The model catalog (``train/models.py``) says where a name's weights are: tiny models are
built here from a config, with a fixed-seed random init and a real tokenizer vocabulary, so
recipes run end to end offline in seconds; every other model is a Hugging Face folder that
``model_files`` finds or makes (a packaged GGUF dequantised once, a folder, the HF cache, the
hub). A large vocabulary dominates a small model's cost, so ``token_logprobs`` never holds
more than one chunk of logits and gets the hidden-state gradient in the same pass.
transformers is imported only when a model is resolved.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.lora import LoRAHead
from tinkex_cookbook.adapters.training.model_files import (
    ModelSources,
    ensure_model_folder,
    quiet_progress,
    resolve_tokenizer,
)
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.train.models import ModelEntry, TinyRandom, catalog, find_model
from tinkex_cookbook.train.tokenizer_sources import get_tokenizer, load_tokenizer_folder
from tinkex_cookbook.train.tokenizers import HFTokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CHUNK_LOGITS = 1 << 23
"""Logits per chunk (32 MB of float32): large enough for fast matmuls, small enough to stay warm in cache."""

LogprobGrad = Callable[[Tensor, slice], Tensor]
"""``(logprobs of a chunk, its rows) -> dloss/dlogprobs``: a loss that is a sum over tokens."""

Head = nn.Linear | LoRAHead
"""An output head ``token_logprobs`` reads: the base lm_head, or it with its LoRA adapter."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Compute dtypes of the frozen base; LoRA weights and the optimizer stay float32 either way."""

_INIT_LOCK = threading.Lock()


def tiny_models() -> dict[str, ModelEntry]:
    """The catalog's tiny random models, by name: what runs with no weights anywhere."""
    return {entry.name: entry for entry in catalog() if isinstance(entry.weights, TinyRandom)}


def resolve_model(
    name: str, sources: ModelSources | None = None, seed: int = 0, dtype: str = "float32",
) -> tuple[PreTrainedModel, HFTokenizer]:
    """The frozen base model and tokenizer for ``name``: a tiny model, or a model folder found or made."""
    entry = find_model(name)
    if entry is not None and isinstance(entry.weights, TinyRandom):
        model, tokenizer = build_tiny_model(entry, seed)
    else:
        sources = sources or ModelSources.of()
        folder = ensure_model_folder(name, sources)
        model, tokenizer = load_model_folder(name, folder, sources)
    return in_dtype(model, dtype), tokenizer


def in_dtype(model: PreTrainedModel, dtype: str) -> PreTrainedModel:
    """The decoder in ``dtype``; the output head stays float32 (untied if need be), as logprobs need."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported by the local_torch backend; use one of {sorted(DTYPES)}")
    if DTYPES[dtype] is torch.float32:
        return model
    head = base_linear(output_head(model))
    head_weight = head.weight.detach().float().clone()
    moved(model, DTYPES[dtype])
    head.weight = nn.Parameter(head_weight, requires_grad=False)
    return model


def moved(model: PreTrainedModel, to: torch.device | torch.dtype) -> PreTrainedModel:
    """``model.to(to)``, which moves or casts it in place, through transformers' own ``to`` and its checks.

    The cast is for type checkers only: transformers decorates ``to`` with ``functools.wraps``, which
    they read as the unbound ``nn.Module.to`` (asking for ``self``).
    """
    cast(nn.Module, model).to(to)
    return model


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with torch's global RNG at ``seed`` (model init uses it), then restore the caller's RNG."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_tiny_model(entry: ModelEntry, seed: int) -> tuple[PreTrainedModel, HFTokenizer]:
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = entry.weights
    assert isinstance(shape, TinyRandom)
    tokenizer = get_tokenizer(entry.tokenizer or entry.name)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        intermediate_size=shape.intermediate_size,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with seeded(seed):
        model = LlamaForCausalLM(config)
    return frozen(model), tokenizer


def load_model_folder(
    name: str, folder: Path, sources: ModelSources | None = None
) -> tuple[PreTrainedModel, HFTokenizer]:
    """A local Hugging Face folder, in float32; its own tokenizer if it ships one, else the catalog's."""
    from transformers import AutoModelForCausalLM

    with quiet_progress():
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    if (folder / "tokenizer.json").is_file():
        tokenizer = load_tokenizer_folder(folder, name)
    else:
        tokenizer = resolve_tokenizer(name, sources or ModelSources.of())
    return frozen(model), tokenizer


def frozen(model: PreTrainedModel) -> PreTrainedModel:
    """Eval mode (no dropout, so steps are deterministic), no base gradients, a head we can fuse."""
    model.eval()
    model.requires_grad_(False)
    output_head(model)
    return model


def output_head(model: PreTrainedModel) -> Head:
    """The plain linear lm_head (or its LoRA wrapper) ``token_logprobs`` reproduces; anything fancier is refused."""
    head = model.get_output_embeddings()
    config = model.config
    scaled = getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None)
    if not isinstance(head, Head) or scaled:
        raise ConfigError(
            f"model {getattr(config, 'name_or_path', '')!r} has an output head the local_torch backend "
            "does not support (it needs a plain linear lm_head without logit scaling or softcapping)"
        )
    return head


def base_linear(head: Head) -> nn.Linear:
    """The frozen linear under a ``LoRAHead``; any other head as it is."""
    return head.base if isinstance(head, LoRAHead) else head


def decoder_states(
    model: PreTrainedModel, input_ids: Tensor, cache: Any = None, use_cache: bool = False,
    attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """Final hidden states (and the KV cache when asked); the lm_head is left to ``token_logprobs``.

    Training batches need no attention mask: they are right-padded and attention is
    causal, so no real position ever sees a pad. Left-padded sampling batches pass
    ``attention_mask`` and ``position_ids``. The cache travels under the name the installed
    transformers declares, and is passed only when there is one, so no release
    sees a keyword it has deprecated.
    """
    decoder = model.base_model
    name = cache_keyword(type(decoder))
    use_cache = use_cache or cache is not None
    kwargs: dict[str, Any] = {name: cache} if cache is not None else {}
    if attention_mask is not None:
        kwargs.update(attention_mask=attention_mask, position_ids=position_ids)
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
