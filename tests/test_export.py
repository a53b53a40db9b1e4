"""Exporting a LoRA-trained local model: a PEFT adapter and a merged folder other tools load as they are.

One tiny model is trained for a step at a large learning rate (so every B is
non-zero) and shared by the module; each test exports into its own tmp folder.
Loading checks compare full logits with our model's own forward.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training import export
from tinkex_cookbook.adapters.training.export import export_merged, export_peft, peft_adapter_config
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.adapters.training.lora import lora_modules
from tinkex_cookbook.ports import AdamParams, Datum, ModelInput, TensorData
from tinkex_cookbook.train.tokenizer_sources import LLAMA3

MODEL = "tiny-llama3"
TEXTS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Exported adapters should load anywhere.",
)
LEAVES = ["down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"]

PEFT_LOAD_WARNINGS = (
    # peft issue 2777: lm_head is targeted on a tied-embedding base. Unavoidable: the only way to silence it,
    # ensure_weight_tying, moves the head's adapter onto the input embedding, which our LoRA leaves alone.
    (UserWarning, "Model has `tie_word_embeddings=True` and a tied layer is part of the adapter"),
    # PeftModel.__init__ reads model.is_gradient_checkpointing, deprecated in transformers 5.25: any model.
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
)
"""Every warning ``PeftModel.from_pretrained`` emits on our adapter (peft 0.21.2, transformers 5.25)."""


@pytest.fixture(scope="module")
def service():
    with LocalTorchTrainingService(MemoryBlobStore(), seed=0) as svc:
        yield svc


@pytest.fixture(scope="module")
def model(service: LocalTorchTrainingService) -> nn.Module:
    """A rank-4 LoRA model after one Adam step at lr 1e-2, which moves the entries of every B by about
    1e-2: far from the zero B of a fresh adapter, so the export has an update to carry."""
    client = service.create_lora_training_client(MODEL, rank=4)
    tokenizer = client.get_tokenizer()
    data = []
    for text in TEXTS:
        tokens = tokenizer.encode(text)
        data.append(Datum(ModelInput.from_ints(tokens[:-1]), {
            "target_tokens": TensorData.from_list(tokens[1:], "int64"),
            "weights": TensorData.from_list([1.0] * (len(tokens) - 1), "float32"),
        }))
    client.forward_backward(data, "cross_entropy")
    client.optim_step(AdamParams(learning_rate=1e-2)).result()
    assert all(module.lora_b.any() for _, module in lora_modules(client.model))
    return client.model


@pytest.fixture(scope="module")
def base_folder(service: LocalTorchTrainingService, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained base model as a Hugging Face folder, as a PEFT user would have it."""
    folder = tmp_path_factory.mktemp("base")
    service.base_model(MODEL, 0)[0].save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sequences(service: LocalTorchTrainingService) -> list[torch.Tensor]:
    """Three token sequences of different lengths, each compared on its own."""
    tokenizer = service.base_model(MODEL, 0)[1]
    return [torch.tensor([tokenizer.encode(text)]) for text in (*TEXTS, "Short one.")]


def max_logit_diff(other: nn.Module, ours: nn.Module, sequences: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return max(float((other(ids).logits - ours(ids).logits).abs().max()) for ids in sequences)


def load_hf(folder: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert model.get_output_embeddings().base.weight is model.get_input_embeddings().weight  # still tied


# --- PEFT adapter --------------------------------------------------------------------------------


def test_peft_loads_the_adapter_with_our_logits_and_only_the_known_warnings(
    model: nn.Module, base_folder: Path, sequences: list[torch.Tensor], tmp_path: Path
) -> None:
    from peft import PeftModel

    before = snapshot(model)
    assert export_peft(model, tmp_path / "adapter", MODEL) == tmp_path / "adapter"
    assert_unchanged(model, before)
    base = load_hf(base_folder)
    assert max_logit_diff(base, model, sequences) > 0.1  # the adapter matters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    emitted = sorted((w.category.__name__, str(w.message)) for w in caught)
    assert len(emitted) == len(PEFT_LOAD_WARNINGS), emitted
    for category, text in PEFT_LOAD_WARNINGS:
        assert any(w.category is category and text in str(w.message) for w in caught), (category, emitted)
    assert max_logit_diff(peft_model, model, sequences) <= 1e-4


def test_adapter_config_and_weights_use_peft_names(model: nn.Module, tmp_path: Path) -> None:
    out = export_peft(model, tmp_path / "adapter", "acme/base-1b", card="# My adapter\n")
    files = ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == files
    assert (out / "README.md").read_text() == "# My adapter\n"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"]) == (4, 32)  # scale 8 = alpha / r
    assert config["target_modules"] == LEAVES
    assert config["base_model_name_or_path"] == "acme/base-1b"
    assert (config["lora_dropout"], config["bias"], config["fan_in_fan_out"]) == (0.0, "none", False)
    assert "ensure_weight_tying" not in config
    weights = load_file(out / "adapter_model.safetensors")
    assert len(weights) == 2 * (2 * 7 + 1)
    head = model.get_output_embeddings()
    assert torch.equal(weights["base_model.model.lm_head.lora_A.weight"], head.lora_a)
    assert torch.equal(weights["base_model.model.lm_head.lora_B.weight"], head.lora_b)
    q_proj = model.get_submodule("model.layers.1.self_attn.q_proj")
    key = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
    assert torch.equal(weights[key], q_proj.lora_b)


def test_target_modules_become_exact_paths_when_leaf_names_would_catch_more(model: nn.Module) -> None:
    """An unadapted linear named like an adapted one (a vision tower's q_proj) must not get an adapter."""
    wrapper = nn.ModuleDict({"lm": model, "vision": nn.ModuleDict({"q_proj": nn.Linear(2, 2)})})
    pattern = peft_adapter_config(wrapper, lora_modules(wrapper), MODEL)["target_modules"]
    assert isinstance(pattern, str)
    assert all(re.fullmatch(pattern, name) for name, _ in lora_modules(wrapper))
    assert not re.fullmatch(pattern, "vision.q_proj") and not re.fullmatch(pattern, "lm.lm_head.base")


# --- merged model --------------------------------------------------------------------------------


def test_merged_folder_loads_untied_without_peft_or_warnings(
    model: nn.Module, sequences: list[torch.Tensor], tmp_path: Path
) -> None:
    before = snapshot(model)
    out = export_merged(model, tmp_path / "merged", LLAMA3.folder_path())
    assert_unchanged(model, before)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (LLAMA3.folder_path() / name).read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    weights = load_file(out / "model.safetensors")
    assert not any("lora" in key or ".base." in key for key in weights)
    assert not torch.equal(weights["lm_head.weight"], weights["model.embed_tokens.weight"])
    assert torch.equal(weights["model.embed_tokens.weight"], model.get_input_embeddings().weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged = load_hf(out)
    assert [str(w.message) for w in caught] == []
    assert merged.lm_head.weight is not merged.get_input_embeddings().weight
    assert max_logit_diff(merged, model, sequences) <= 1e-4


def test_merged_config_drops_quantization_config(model: nn.Module, tmp_path: Path) -> None:
    model.config.quantization_config = {"quant_method": "gguf"}
    try:
        out = export_merged(model, tmp_path / "merged")
    finally:
        del model.config.quantization_config
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not (out / "tokenizer.json").exists()


# --- refusals and atomic writes ------------------------------------------------------------------


@pytest.mark.parametrize("write", [export_merged, lambda m, out: export_peft(m, out, MODEL)])
def test_refuses_a_non_empty_out_dir_and_accepts_an_empty_one(
    model: nn.Module, tmp_path: Path, write: Callable[[nn.Module, Path], Path]
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=rf"{re.escape(str(taken))}.*not empty.*new or empty folder"):
        write(model, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write(model, empty) == empty and any(empty.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "taken"]  # no staging folder left


def test_refuses_a_model_without_lora(service: LocalTorchTrainingService, tmp_path: Path) -> None:
    plain, _ = service.base_model(MODEL, 0)
    with pytest.raises(ValueError, match="no LoRA modules"):
        export_merged(plain, tmp_path / "merged")
    with pytest.raises(ValueError, match="no LoRA modules"):
        export_peft(plain, tmp_path / "adapter", MODEL)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_no_folder(
    model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export.shutil, "copyfile", fail)
    with pytest.raises(OSError, match="disk full"):
        export_merged(model, tmp_path / "merged", LLAMA3.folder_path())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="holds none of tokenizer.json"):
        export_merged(model, tmp_path / "merged", tmp_path)
