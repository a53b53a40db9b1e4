"""A model known only by a local folder, trained through the `tinker` adapter against `serve`.

The server finds the weights in its models folder; the client finds the tokenizer in its own,
through the same model catalog the local backend uses (no packaged tokenizer, no hub). Then
`chat` talks to the Tinker checkpoint the run made.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.serve.conftest import API_KEY
from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.cli import app
from tinkex_cookbook.errors import StageError
from tinkex_cookbook.serve import LocalTinker, local_tinker
from tinkex_cookbook.train.tokenizer_sources import LLAMA3

MODEL = "acme/house-llama"
CFG = {"model_name": MODEL, "dataset": "chitchat", "batch_size": 4, "max_length": 96, "lora_rank": 4,
       "learning_rate": 1e-2, "test_size": 4, "train_size": 8, "eval_every": 0, "save_every": 0,
       "sample_prompts": 2, "sample_max_tokens": 4, "log_path": "run"}


def tokenizer_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(LLAMA3.folder_path() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def house_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTinker]:
    """`serve` over a local backend whose models folder holds the house model (weights + tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("house-serve")
    folder = tokenizer_files(root / "models" / MODEL.replace("/", "--"))
    config = LlamaConfig(vocab_size=128_257, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    blobs = LocalBlobStore(root / "blobs")
    with LocalTorchTrainingService(blobs, models_dir=str(root / "models")) as service, \
            local_tinker(service, blobs, API_KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def tinker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", API_KEY)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


def manifest(tmp_path: Path, server: LocalTinker, models_dir: Path | None) -> str:
    binding = {"adapter": "tinker", "base_url": server.base_url}
    if models_dir is not None:
        binding["models_dir"] = str(models_dir)
    path = tmp_path / "tinker-house.yaml"
    path.write_text(json.dumps({"extends": "local", "ports": {
        "training_client": binding, "blob_store": {"adapter": "local", "root": str(tmp_path / "runs")}}}))
    return str(path)


def test_a_model_whose_tokenizer_is_a_local_folder_trains_through_tinker_and_chats(
    tmp_path: Path, house_server: LocalTinker, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "client-models"
    tokenizer_files(models / MODEL.replace("/", "--"))  # the client needs only the tokenizer
    result = Runtime.run(SlBasic, CFG, manifest=manifest(tmp_path, house_server, models))
    assert result.experiment.config["renderer_name"] == "role_colon"  # no family: the template needing no specials
    assert result.state["final_sampler_path"].startswith("tinker://")
    summary = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    assert summary["base"]["test_mean_nll"] > 0 and len(summary["final"]["replies"]) == 2

    monkeypatch.chdir(tmp_path)
    chat = CliRunner().invoke(app, ["chat", str(tmp_path / "runs" / "run"), "--prompt", "Hello there",
                                    "--max-tokens", "3", "--manifest", manifest(tmp_path, house_server, models)])
    assert chat.exit_code == 0, chat.output
    assert chat.output.endswith("\n")


def test_without_the_folder_the_tinker_adapter_says_where_to_put_the_tokenizer(
    tmp_path: Path, house_server: LocalTinker
) -> None:
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, CFG, manifest=manifest(tmp_path, house_server, tmp_path / "empty"))
    message = str(caught.value)
    assert "no tokenizer for model 'acme/house-llama'" in message and "acme--house-llama" in message
