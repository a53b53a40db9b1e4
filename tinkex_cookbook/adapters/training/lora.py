"""LoRA for the local backend: low-rank adapters over a frozen base model.

Every ``nn.Linear`` inside the decoder layers (or those whose names ``targets`` lists)
becomes ``base(x) + (alpha/rank) * B(A(x))`` with A drawn from a seeded generator and B
zero, so a fresh adapter leaves the model's outputs unchanged, only A and B train, and the
same seed always gives the same adapter. The output head gets an adapter too (``LoRAHead``,
drawn after the decoder's), as Tinker's LoRA trains the unembedding by default; the input
embedding, even when tied to the head, stays as it is. A and B are float32 whatever the
base's dtype, so a bfloat16 base still trains and steps its adapters in full precision.
The layout is PEFT's (``lora_A``/``lora_B`` per linear, ``lora_alpha / r`` scaling), which
is what lets ``export`` write an adapter PEFT loads as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFAULT_ALPHA = 32.0
HEAD = "lm_head"
"""The name ``targets`` uses for the output head, as PEFT's ``target_modules`` does."""


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable rank-``rank`` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.alpha = alpha
        lora_a = torch.empty(rank, base.in_features)  # drawn on the CPU generator, whatever the device
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5), generator=generator)
        self.lora_a = nn.Parameter(lora_a.to(base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        update = nn.functional.linear(nn.functional.linear(x.to(self.lora_a.dtype), self.lora_a), self.lora_b)
        return self.base(x) + (update * self.scale).to(x.dtype)


class LoRAHead(LoRALinear):
    """The output head's adapter, which the fused logprob head reads as one augmented matmul.

    ``features(h) @ fused_weight().T`` equals ``self(h)`` without bias: the hidden
    state gains ``rank`` columns ``scale * h @ A^T`` and the weight gains ``B``.
    """

    @property
    def rank(self) -> int:
        return self.lora_a.shape[0]

    def features(self, hidden: Tensor) -> Tensor:
        """``cat([h, scale * h @ A^T])``, built with autograd so A's gradient flows through it."""
        hidden = hidden.to(self.lora_a.dtype)
        return torch.cat([hidden, nn.functional.linear(hidden, self.lora_a) * self.scale], -1)

    def fused_weight(self) -> Tensor:
        """``cat([W, B], dim=1)``: [vocab, hidden + rank], detached, in the adapters' float32."""
        return torch.cat([self.base.weight.detach().to(self.lora_b.dtype), self.lora_b.detach()], 1)


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The stack of decoder blocks (``model.base_model.layers`` in Llama-family models)."""
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"cannot find the decoder layers of {type(model).__name__} to put LoRA on")
    return layers


def linear_names(model: PreTrainedModel) -> list[str]:
    """The leaf names LoRA can target in ``model`` (``q_proj``, ``down_proj``, ...), plus ``lm_head``."""
    layers = decoder_layers(model)
    names = {name.rpartition(".")[2] for name, m in layers.named_modules() if isinstance(m, nn.Linear)}
    return [*sorted(names), HEAD]


def apply_lora(
    model: PreTrainedModel, rank: int, seed: int, alpha: float = DEFAULT_ALPHA, targets: Sequence[str] | None = None,
) -> list[nn.Parameter]:
    """Freeze ``model``, wrap its decoder linears and output head in place, return the trainable parameters.

    ``targets`` names the linears by their leaf name (``q_proj``, ``lm_head``, ...); ``None`` means all.
    The generator draws the decoder adapters' A in module order, then the head's.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    if lora_modules(model):
        raise ValueError("this model already has LoRA adapters")
    wanted = set(linear_names(model) if targets is None else targets)
    unknown = sorted(wanted - set(linear_names(model)))
    if unknown or not wanted:
        raise ValueError(f"LoRA targets {sorted(wanted)} do not fit {type(model).__name__}: unknown {unknown}; "
                         f"it has {linear_names(model)}")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    layers = decoder_layers(model)
    chosen = [(name, m) for name, m in layers.named_modules()
              if isinstance(m, nn.Linear) and name.rpartition(".")[2] in wanted]
    for name, linear in chosen:
        parent_name, _, attribute = name.rpartition(".")
        setattr(layers.get_submodule(parent_name), attribute, LoRALinear(linear, rank, alpha, generator))
    if HEAD in wanted:
        head = model.get_output_embeddings()
        if not isinstance(head, nn.Linear):
            raise TypeError(f"cannot put LoRA on the output head of {type(model).__name__}: not an nn.Linear")
        model.set_output_embeddings(LoRAHead(head, rank, alpha, generator))
    return [parameter for _, parameter in lora_named_parameters(model)]


def lora_modules(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def lora_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """A and B of every adapter (the head's last), in module order: the order the optimizer state refers to."""
    return [
        (f"{name}.{part}", getattr(module, part))
        for name, module in lora_modules(model)
        for part in ("lora_a", "lora_b")
    ]


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    return {name: parameter.detach().clone() for name, parameter in lora_named_parameters(model)}


def load_lora_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy saved adapter weights in; names and shapes must match exactly."""
    parameters = dict(lora_named_parameters(model))
    missing, unexpected = sorted(set(parameters) - set(state)), sorted(set(state) - set(parameters))
    if missing or unexpected:
        raise ValueError(
            f"LoRA weights do not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for name, value in state.items():
        if value.shape != parameters[name].shape:
            raise ValueError(f"LoRA weight {name!r} has shape {tuple(value.shape)}, "
                             f"the model needs {tuple(parameters[name].shape)}")
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)
