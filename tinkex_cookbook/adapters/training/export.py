"""Export a LoRA-trained local model as files other tools load: a PEFT adapter, or a merged model folder.

``export_peft`` writes the adapter alone (``adapter_model.safetensors`` and
``adapter_config.json``) under the names ``peft.PeftModel.from_pretrained`` looks
for, so anyone holding the base model applies it with one call. ``export_merged``
folds every adapter into its weight (``W + scale * B @ A``) and writes a plain
Hugging Face folder that ``AutoModelForCausalLM.from_pretrained`` loads with no
PEFT at all. The adapted head no longer equals the input embedding, so a model
with tied embeddings is written untied.

Both read the adapters off the model (``lora_modules``) and never change it.
Both write into a hidden staging folder beside ``out_dir`` and rename it into
place at the end, so an interrupted export never leaves a folder that looks
complete; an existing non-empty ``out_dir`` is refused rather than mixed into.
peft itself is not needed to export.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.lora import LoRALinear, lora_modules
from tinkex_cookbook.adapters.training.model_files import TOKENIZER_FILES, staging_path
from tinkex_cookbook.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PEFT_PREFIX = "base_model.model."
"""What ``PeftModel`` puts before a module path in its state-dict keys (``LoraModel`` over the model)."""

SAFETENSORS_METADATA = {"format": "pt"}
"""transformers and peft read a safetensors file's ``format`` to know it holds torch tensors."""

Adapters = Sequence[tuple[str, LoRALinear]]


# --- PEFT adapter --------------------------------------------------------------------------------


def export_peft(model: PreTrainedModel, out_dir: str | Path, base_model: str, *, card: str | None = None) -> Path:
    """Write the model's LoRA adapters as a PEFT LoRA adapter folder; returns ``out_dir``.

    ``base_model`` goes into ``base_model_name_or_path``: the name or path under
    which users find the base weights the adapter was trained on. ``card``, when
    given, is written as the folder's ``README.md`` (the model card hubs show).
    """
    from safetensors.torch import save_file

    adapters = require_adapters(model)
    config = peft_adapter_config(model, adapters, base_model)
    with staged_folder(out_dir) as staging:
        save_file(peft_state_dict(adapters), str(staging / "adapter_model.safetensors"),
                  metadata=SAFETENSORS_METADATA)
        write_json(staging / "adapter_config.json", config)
        if card is not None:
            (staging / "README.md").write_text(card, encoding="utf-8")
    return Path(out_dir)


def peft_state_dict(adapters: Adapters) -> dict[str, Tensor]:
    """A and B under PEFT's keys: ours are ``lora_a`` [rank, in] and ``lora_b`` [out, rank], which are
    exactly the weights of PEFT's ``lora_A`` and ``lora_B`` linears, so no transpose is needed."""
    state = {}
    for name, module in adapters:
        state[f"{PEFT_PREFIX}{name}.lora_A.weight"] = cpu_copy(module.lora_a)
        state[f"{PEFT_PREFIX}{name}.lora_B.weight"] = cpu_copy(module.lora_b)
    return state


def peft_adapter_config(model: PreTrainedModel, adapters: Adapters, base_model: str) -> dict[str, Any]:
    """``adapter_config.json``: only keys every recent peft knows, so none warns about unknown ones.

    ``lora_alpha`` is ``scale * r`` because peft scales by ``lora_alpha / r``.
    ``ensure_weight_tying`` stays unset (false): with it, peft would move a tied
    head's adapter onto the input embedding, which our LoRA leaves unadapted.
    """
    rank, scale = shared_rank_and_scale(adapters)
    alpha = round(rank * scale, 9)  # alpha / rank * rank may come back a hair off an integer
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "target_modules": peft_target_modules(model, adapters),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": None,
    }


def shared_rank_and_scale(adapters: Adapters) -> tuple[int, float]:
    """The one rank and scale all adapters share; a single ``r`` and ``lora_alpha`` cannot say more."""
    found = {(module.lora_a.shape[0], float(module.scale)) for _, module in adapters}
    if len(found) != 1:
        raise ConfigError(f"cannot export LoRA adapters with different (rank, scale) pairs {sorted(found)} "
                          "as one PEFT config; export_merged handles them")
    return next(iter(found))


def peft_target_modules(model: PreTrainedModel, adapters: Adapters) -> list[str] | str:
    """The adapted modules' leaf names (``q_proj``, ..., ``lm_head``), as peft configs usually list them.

    peft adapts every linear whose path ends in one of them, so when the leaf names
    would also catch a linear we left unadapted (say a vision tower's ``q_proj``),
    the config names the exact paths with an anchored regex instead.
    """
    adapted = {name for name, _ in adapters}
    leaves = sorted({name.rpartition(".")[2] for name in adapted})
    inner = {f"{name}.base" for name in adapted}
    caught = {
        name for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in inner and name.rpartition(".")[2] in leaves
    }
    if caught <= adapted:
        return leaves
    return "^(?:" + "|".join(re.escape(name) for name in sorted(adapted)) + ")$"


# --- merged model --------------------------------------------------------------------------------


def export_merged(
    model: PreTrainedModel, out_dir: str | Path, tokenizer_folder: Path | None = None, *, card: str | None = None,
) -> Path:
    """Write the model, every adapter folded into its weight, as a Hugging Face folder; returns ``out_dir``.

    The folder holds ``config.json``, ``model.safetensors``, ``generation_config.json``
    when the model has one, the tokenizer files found in ``tokenizer_folder``, and
    ``card`` as ``README.md`` when given.
    """
    from safetensors.torch import save_file

    adapters = require_adapters(model)
    tokenizer_files = find_tokenizer_files(Path(tokenizer_folder)) if tokenizer_folder is not None else []
    config = merged_config(model)
    state = merged_state_dict(model, adapters)
    with staged_folder(out_dir) as staging:
        save_file(state, str(staging / "model.safetensors"), metadata=SAFETENSORS_METADATA)
        config.save_pretrained(staging)
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None:
            deepcopy(generation_config).save_pretrained(staging)
        for source in tokenizer_files:
            shutil.copyfile(source, staging / source.name)
        if card is not None:
            (staging / "README.md").write_text(card, encoding="utf-8")
    return Path(out_dir)


def merged_state_dict(model: PreTrainedModel, adapters: Adapters) -> dict[str, Tensor]:
    """The model's state dict as the unwrapped model names it, with ``W + scale * B @ A`` for each adapter.

    Every tensor is a fresh copy: the passed model is left as it is, and safetensors
    refuses tensors that share memory (the tied embedding and head did).
    """
    wrapped = tuple(f"{name}." for name, _ in adapters)
    state = {key: cpu_copy(value) for key, value in model.state_dict().items() if not key.startswith(wrapped)}
    for name, module in adapters:
        state[f"{name}.weight"] = merged_weight(module)
        if module.base.bias is not None:
            state[f"{name}.bias"] = cpu_copy(module.base.bias)
    return state


def merged_weight(module: LoRALinear) -> Tensor:
    """``W + scale * B @ A``, summed in at least float32 and stored in the base weight's dtype."""
    weight = module.base.weight.detach()
    dtype = torch.promote_types(weight.dtype, torch.float32)
    delta = module.lora_b.detach().to(dtype) @ module.lora_a.detach().to(dtype)
    return (weight.to(dtype) + module.scale * delta).to(weight.dtype).to("cpu").contiguous()


def merged_config(model: PreTrainedModel) -> Any:
    """A copy of the model's config, untied (the merged head differs from the input embedding) and
    without ``quantization_config`` (the weights written are plain tensors).

    Like ``save_pretrained`` it records ``architectures`` and ``dtype`` (the base weights'; the
    adapters may be float32 over a bfloat16 base): a model built from a config (the tiny
    ones) has no ``architectures``, which tools such as vLLM need.
    """
    config = deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.dtype = str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    config.tie_word_embeddings = False
    text_config = config.get_text_config()
    if text_config is not config:  # a multimodal config: its language model has its own flag
        text_config.tie_word_embeddings = False
    if hasattr(config, "quantization_config"):  # set by a quantized load, not a declared field
        delattr(config, "quantization_config")
    return config


def find_tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files present in ``folder``; a folder with none of them is a mistake worth naming."""
    found = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not found:
        raise ConfigError(f"tokenizer_folder {str(folder)!r} holds none of {', '.join(TOKENIZER_FILES)}; "
                          "pass the folder the model's tokenizer.json is in, or None to export without one")
    return found


# --- shared --------------------------------------------------------------------------------------


def require_adapters(model: PreTrainedModel) -> list[tuple[str, LoRALinear]]:
    """The model's LoRA modules; without any, an export would be an empty adapter or a plain copy."""
    adapters = lora_modules(model)
    if not adapters:
        raise ConfigError(
            f"{type(model).__name__} has no LoRA modules to export; pass the model of a LoRA training "
            "client (create_lora_training_client(...).model)"
        )
    return adapters


@contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """A fresh staging folder beside ``out_dir``, renamed to ``out_dir`` when the block succeeds and
    removed when it fails, so ``out_dir`` only ever appears complete."""
    target = Path(out_dir)
    refuse_non_empty(target)
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
        if target.is_dir():
            target.rmdir()  # empty, checked above; fails loudly if something was written there meanwhile
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def refuse_non_empty(target: Path) -> None:
    """Never mix an export into an existing folder's files, or overwrite a file."""
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"export folder {str(target)!r} already exists and is not empty; "
                          "pass a new or empty folder (or remove the old export first)")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"export path {str(target)!r} is a file, not a folder; pass a new or empty folder")


def cpu_copy(tensor: Tensor) -> Tensor:
    """A contiguous CPU copy: safetensors writes from host memory, and the model's tensors stay untouched
    (a training client's base weights are shared with the service's other clients)."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
