"""SmolLM2-135M-Instruct end to end: dequantised from the PyPI GGUF, asked a question, trained, exported.

Marked ``long`` (a minute or two on 2 cores; run with ``-m long``): the default suite covers
the same code on tiny models, and CI's quickstart trains this model for real.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.long,
    pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs gguf: pip install -e '.[local]'"),
]

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
IDS = [[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models-cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """A two-step LoRA run on chitchat; returns the folder holding ``runs/sl``."""
    from tinkex_cookbook import Runtime, SlBasic

    root = tmp_path_factory.mktemp("smollm2-run")
    cfg = {"model_name": MODEL, "dataset": "chitchat", "batch_size": 4, "train_size": 8, "test_size": 8,
           "max_length": 128, "lora_rank": 8, "learning_rate": 1e-3, "eval_every": 0, "save_every": 0,
           "sample_prompts": 1, "sample_max_tokens": 8, "log_path": "sl"}
    ports = {"blob_store": {"adapter": "local", "root": str(root / "runs")},
             "training_client": {"adapter": "local_torch", "models_cache": str(cache), "threads": 2}}
    Runtime.run(SlBasic, cfg, manifest="local", ports=ports)
    return root


def test_the_base_model_answers_with_its_own_chat_template(cache: Path) -> None:
    from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.adapters.training.model_files import ModelSources
    from tinkex_cookbook.train.renderers import get_renderer
    from tinkex_cookbook.train.replies import Prompt, replies, sampling_params

    with LocalTorchTrainingService(MemoryBlobStore(), sources=ModelSources.of(models_cache=cache)) as service:
        sampler = service.create_sampling_client(base_model=MODEL)
        renderer = get_renderer("chatml", sampler.get_tokenizer())
        prompt = Prompt([{"role": "user", "content": "What is the capital of France?"}])
        [reply] = replies(sampler, renderer, [prompt], sampling_params(renderer, 24))
    assert "Paris" in reply
    assert (cache / "HuggingFaceTB--SmolLM2-135M-Instruct" / "model.safetensors").is_file()


def test_training_lowers_the_held_out_nll_and_the_run_chats(trained: Path, monkeypatch: pytest.MonkeyPatch,
                                                          cache: Path) -> None:
    from typer.testing import CliRunner

    from tinkex_cookbook.cli import app

    summary = json.loads((trained / "runs" / "sl" / "summary.json").read_text())
    assert summary["final"]["test_mean_nll"] < summary["base"]["test_mean_nll"]
    monkeypatch.chdir(trained)
    monkeypatch.setenv("TINKEX_MODELS_CACHE", str(cache))
    result = CliRunner().invoke(app, ["chat", "runs/sl", "--prompt", "Hi! How are you?", "--max-tokens", "12"])
    assert result.exit_code == 0 and result.output.strip(), result.output


def logits(model, ids):  # noqa: ANN001, ANN201
    import torch

    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def test_exports_load_in_peft_and_transformers_with_our_logits(
    trained: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.adapters.training.model_files import ModelSources
    from tinkex_cookbook.cli import app

    monkeypatch.chdir(trained)
    monkeypatch.setenv("TINKEX_MODELS_CACHE", str(cache))
    for fmt in ("peft", "merged"):
        result = CliRunner().invoke(app, ["export", "runs/sl", "--format", fmt, "--out", str(tmp_path / fmt)])
        assert result.exit_code == 0, result.output
    record = json.loads((trained / "runs/sl/checkpoints.jsonl").read_text().splitlines()[-1])
    sources = ModelSources.of(models_cache=cache)
    with LocalTorchTrainingService(LocalBlobStore(trained / "runs"), sources=sources) as service:
        ours = logits(service.create_sampling_client(model_path=record["sampler_path"]).model, IDS)
    base = AutoModelForCausalLM.from_pretrained(cache / "HuggingFaceTB--SmolLM2-135M-Instruct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's own notes on a tied head (its issue 2777)
        adapted = PeftModel.from_pretrained(base, tmp_path / "peft")
    assert (logits(adapted, IDS) - ours).abs().max() <= 1e-4
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert (logits(merged, IDS) - ours).abs().max() <= 1e-4
