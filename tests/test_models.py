"""The model catalog: names -> weights, tokenizer, renderer; and where a model's files are found.

Every packaged model gets its own chat template by default, a template whose special
tokens the tokenizer lacks is refused, users add models in code or in a manifest, and
tokenizers and weights are found in a folder, the models cache, the HF cache layout or
through the hub client, in that order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.hub.noop import NoopHubClient
from tinkex_cookbook.adapters.training.model_files import (
    ModelSources,
    candidate_folders,
    ensure_model_folder,
    find_model_folder,
    resolve_tokenizer,
)
from tinkex_cookbook.errors import ConfigError, ManifestError, RendererError, UnknownNameError
from tinkex_cookbook.recipes.dpo import DpoConfig
from tinkex_cookbook.recipes.sl_basic import SlBasicConfig
from tinkex_cookbook.train.models import (
    SMOLLM2_135M,
    HubRepo,
    ModelEntry,
    ModelFolder,
    catalog,
    find_model,
    recommended_renderer,
    register_model,
)
from tinkex_cookbook.train.renderers import get_renderer
from tinkex_cookbook.train.tokenizer_sources import LLAMA3, PACKAGED_TOKENIZERS, get_tokenizer

EXPECTED_RENDERERS = {
    "meta-llama/Llama-3.2-1B": "llama3", "meta-llama/Llama-3.1-8B-Instruct": "llama3",
    "Qwen/Qwen3-8B": "qwen3", "Qwen/Qwen3-30B-A3B": "qwen3", "deepseek-ai/DeepSeek-V3.1": "deepseekv3",
    SMOLLM2_135M: "chatml", "tiny-llama3": "llama3", "tiny-qwen3": "qwen3", "tiny-bytes": "llama3",
}


@pytest.fixture
def restore_catalog(monkeypatch: pytest.MonkeyPatch):
    """Tests that register models leave the catalog as they found it."""
    from tinkex_cookbook.train import models

    monkeypatch.setattr(models, "MODELS", models.MODELS.copy())
    monkeypatch.setattr(models, "_ALIASES", dict(models._ALIASES))


def llama3_folder(folder: Path) -> Path:
    """A folder holding the real Llama 3 tokenizer files, as a downloaded model's would."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(LLAMA3.folder_path() / name, folder / name)
    return folder


# --- renderer defaults --------------------------------------------------------------------------


@pytest.mark.parametrize("name, renderer", sorted(EXPECTED_RENDERERS.items()))
def test_each_packaged_model_defaults_to_its_own_renderer(name: str, renderer: str) -> None:
    assert recommended_renderer(name) == renderer
    assert SlBasicConfig(model_name=name).renderer_name == renderer
    assert DpoConfig.model_validate({"model_name": name, "dataset": "x"}).renderer_name == renderer


def test_every_catalog_model_with_a_packaged_tokenizer_renders_with_its_default() -> None:
    """The default renderer's special tokens are real tokens of the model's own tokenizer."""
    for entry in catalog():
        source = entry.tokenizer or entry.name
        if source in PACKAGED_TOKENIZERS:
            get_renderer(entry.renderer, get_tokenizer(source))


def test_names_outside_the_catalog_get_their_family_renderer() -> None:
    assert recommended_renderer("my-org/Qwen3-8B-finetune") == "qwen3"
    assert recommended_renderer("someone/Llama-3.3-70B-Instruct-abliterated") == "llama3"
    assert recommended_renderer("me/SmolLM2-1.7B-Instruct") == "chatml"
    assert recommended_renderer("acme/unheard-of") == "role_colon"


def test_an_explicit_renderer_wins_and_is_saved_in_the_spec() -> None:
    spec = Runtime.build_spec(SlBasic, {"model_name": "Qwen/Qwen3-8B"})
    assert spec.config["renderer_name"] == "qwen3"
    assert Runtime.build_spec(SlBasic, {"model_name": "Qwen/Qwen3-8B", "renderer_name": "qwen3_disable_thinking"}
                              ).config["renderer_name"] == "qwen3_disable_thinking"


def test_a_renderer_whose_special_tokens_the_tokenizer_lacks_is_refused_naming_both() -> None:
    qwen = get_tokenizer("Qwen/Qwen3-8B")
    with pytest.raises(RendererError) as caught:
        get_renderer("llama3", qwen)
    message = str(caught.value)
    assert "'llama3'" in message and "<|begin_of_text|>" in message and "Qwen/Qwen3-8B" in message
    assert "renderer_name='qwen3'" in message
    with pytest.raises(RendererError, match="<\\|im_start\\|>"):
        get_renderer("qwen3", get_tokenizer("meta-llama/Llama-3.2-1B"))
    get_renderer("role_colon", qwen)  # needs no special tokens


def test_a_mismatched_renderer_fails_the_run_before_training() -> None:
    from tinkex_cookbook import StageError

    with pytest.raises(StageError, match="init_tokenizer.*<\\|begin_of_text\\|>"):
        Runtime.run(SlBasic, {"model_name": "tiny-qwen3", "renderer_name": "llama3", "dataset": "chitchat",
                              "batch_size": 2, "train_size": 2, "test_size": 2}, manifest="local",
                    ports={"blob_store": "noop"})


# --- adding models ------------------------------------------------------------------------------


def test_register_model_adds_a_name_and_refuses_a_silent_clash(restore_catalog: None, tmp_path: Path) -> None:
    register_model(ModelEntry("acme/chat-1b", "chatml", ModelFolder(str(tmp_path)), 4096, aliases=("chat1b",)))
    assert find_model("chat1b").name == "acme/chat-1b" and recommended_renderer("acme/chat-1b") == "chatml"
    with pytest.raises(ConfigError, match="already in the catalog"):
        register_model(ModelEntry("acme/chat-1b", "llama3", HubRepo("acme/chat-1b")))
    register_model(ModelEntry("acme/chat-1b", "llama3", HubRepo("acme/chat-1b")), replace=True)
    assert recommended_renderer("acme/chat-1b") == "llama3"


def test_a_manifest_models_entry_adds_a_model_with_its_folder_and_renderer(
    restore_catalog: None, tmp_path: Path
) -> None:
    folder = llama3_folder(tmp_path / "weights")
    manifest = tmp_path / "mine.yaml"
    manifest.write_text(
        "extends: test\nmodels:\n"
        f"  acme/house-model: {{weights: {folder}, renderer: llama3, context_length: 4096}}\n")
    result = Runtime.run(SlBasic, {"model_name": "acme/house-model", "batch_size": 8}, manifest=str(manifest))
    assert result.experiment.config["renderer_name"] == "llama3"
    assert result.manifest.models["acme/house-model"]["renderer"] == "llama3"
    entry = find_model("acme/house-model")
    assert entry.weights == ModelFolder(str(folder)) and entry.context_length == 4096
    assert resolve_tokenizer("acme/house-model", ModelSources.of(models_cache=tmp_path / "cache")).vocab_size > 128_000


@pytest.mark.parametrize("body, problem", [
    ("{weights: 7}", "weights = 7"),
    ("{weights: /x, renderer: lama3}", "did you mean 'llama3'"),
    ("{weights: /x, context: 5}", "unknown key"),
    ("{weights: /x, context_length: 1}", "context_length"),
])
def test_a_bad_manifest_models_entry_names_the_file_model_and_field(tmp_path: Path, body: str, problem: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(f"extends: test\nmodels:\n  acme/m: {body}\n")
    with pytest.raises(ManifestError) as caught:
        Runtime.resolve_manifest(str(manifest))
    assert "bad.yaml" in str(caught.value) and "acme/m" in str(caught.value) and problem in str(caught.value)


# --- where files are found ---------------------------------------------------------------------


def test_files_are_looked_for_in_a_fixed_order(tmp_path: Path) -> None:
    sources = ModelSources.of(tmp_path / "models", tmp_path / "cache", tmp_path / "hub")
    snapshot = tmp_path / "hub" / "models--acme--m" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "hub" / "models--acme--m" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--m" / "refs" / "main").write_text("abc123")
    assert candidate_folders("acme/m", sources) == [
        tmp_path / "models" / "acme" / "m", tmp_path / "models" / "acme--m", tmp_path / "cache" / "acme--m", snapshot,
    ]


def test_a_tokenizer_in_the_hf_cache_layout_is_used(tmp_path: Path) -> None:
    snapshot = llama3_folder(tmp_path / "hub" / "models--acme--m" / "snapshots" / "abc123")
    tokenizer = resolve_tokenizer("acme/m", ModelSources.of(models_cache=tmp_path / "cache", hub_cache=tmp_path / "hub"))
    assert tokenizer.vocab_size == get_tokenizer("meta-llama/Llama-3.2-1B").vocab_size
    assert snapshot.is_dir()


def test_a_tokenizer_comes_through_the_hub_client_once_and_is_kept(tmp_path: Path) -> None:
    files = {name: (LLAMA3.folder_path() / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")}
    hub = NoopHubClient(repos={"acme/m": files})
    calls = []
    sources = ModelSources.of(models_cache=tmp_path / "cache", hub_client=lambda: calls.append(1) or hub)
    first = resolve_tokenizer("acme/m", sources)
    second = resolve_tokenizer("acme/m", sources)
    assert first.vocab_size == second.vocab_size > 128_000 and calls == [1]
    assert (tmp_path / "cache" / "tokenizers" / "acme--m" / "tokenizer.json").is_file()


def test_no_source_for_a_model_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    sources = ModelSources.of(tmp_path / "models", tmp_path / "cache")
    with pytest.raises(UnknownNameError) as caught:
        resolve_tokenizer("acme/nowhere", sources)
    message = str(caught.value)
    assert "acme--nowhere" in message and "hub_client" in message and str(tmp_path / "models") in message
    with pytest.raises(UnknownNameError, match="not in the model catalog"):
        ensure_model_folder("acme/nowhere", sources)


def test_a_hub_repository_without_weights_is_refused_and_leaves_no_folder(tmp_path: Path) -> None:
    hub = NoopHubClient(repos={"acme/m": {"tokenizer.json": b"{}"}})
    sources = ModelSources.of(models_cache=tmp_path / "cache", hub_client=lambda: hub)
    with pytest.raises(UnknownNameError, match="no config.json and model.safetensors"):
        ensure_model_folder("acme/m", sources)
    assert not any((tmp_path / "cache").iterdir()) and find_model_folder("acme/m", sources) is None


def test_local_torch_trains_a_model_fetched_through_the_hub_client(tmp_path: Path) -> None:
    """A hub repository's config, weights and tokenizer land in the models cache and train."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    source = llama3_folder(tmp_path / "source")
    config = LlamaConfig(vocab_size=128_257, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(source)
    hub = NoopHubClient(repos={"acme/tiny": {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}})
    cfg = {"model_name": "acme/tiny", "renderer_name": "llama3", "dataset": "chitchat", "batch_size": 2,
           "train_size": 4, "test_size": 2, "max_length": 64, "lora_rank": 2, "sample_prompts": 1,
           "sample_max_tokens": 2, "log_path": "r"}
    ports = {"blob_store": {"adapter": "local", "root": str(tmp_path / "runs")}, "hub_client": hub,
             "training_client": {"adapter": "local_torch", "models_cache": str(tmp_path / "cache")}}
    result = Runtime.run(SlBasic, cfg, manifest="local", ports=ports)
    assert result.state["step"] == 2
    assert (tmp_path / "cache" / "acme--tiny" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())["final"]["test_mean_nll"] > 0
