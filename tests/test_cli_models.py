"""`chat`, `sample` and `export` on a run the local backend trained (a tiny model), as a user runs them.

The exported adapter loads in PEFT and the merged folder in plain transformers, each with the
logits of the checkpoint the run saved; `--push` uploads through the hub client port to a fake
Hugging Face Hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.adapters.hub_server import FakeHub, isolate_huggingface_hub
from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.cli import app

CFG = {"model_name": "tiny-llama3", "dataset": "chitchat", "batch_size": 4, "train_size": 8, "test_size": 4,
       "max_length": 64, "lora_rank": 4, "learning_rate": 2e-2, "save_every": 1, "eval_every": 0,
       "sample_prompts": 2, "sample_max_tokens": 4, "log_path": "sl"}
TINY_EVAL = json.dumps([{"task": "chitchat_nll", "limit": 2}])
IDS = [[128000, 9906, 11, 1268, 527, 499, 30], [128000, 791, 6864, 315]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``runs/sl``: a finished tiny run on `local` (its blob store is ./runs)."""
    root = tmp_path_factory.mktemp("cli-models")
    Runtime.run(SlBasic, CFG, manifest="local", ports={"blob_store": {"adapter": "local", "root": str(root / "runs")}})
    return root


@pytest.fixture(autouse=True)
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def checkpoint_logits(workdir: Path, name: str = "final") -> torch.Tensor:
    """Logits of the run's checkpoint as the local backend computes them."""
    record = next(json.loads(line) for line in (workdir / "runs/sl/checkpoints.jsonl").read_text().splitlines()
                  if json.loads(line)["name"] == name)
    with LocalTorchTrainingService(LocalBlobStore(workdir / "runs")) as service:
        model = service.create_sampling_client(model_path=record["sampler_path"] or record["state_path"]).model
        with torch.no_grad():
            return torch.cat([model(torch.tensor([ids])).logits[0] for ids in IDS])


def test_chat_prompt_answers_once_from_the_final_checkpoint(workdir: Path) -> None:
    out = cli("chat", "runs/sl", "--prompt", "Hello!", "--max-tokens", "5")
    again = cli("chat", "runs/sl", "--prompt", "Hello!", "--max-tokens", "5")
    assert out == again and out.endswith("\n") and out.strip()  # greedy: the same reply every time


def test_chat_reads_lines_keeps_the_conversation_and_leaves_on_exit() -> None:
    result = CliRunner().invoke(app, ["chat", "runs/sl", "--max-tokens", "3"], input="Hi\nAnd then?\n/reset\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("model> ") == 2


def test_chat_with_a_named_checkpoint_a_base_model_and_bad_names() -> None:
    cli("chat", "runs/sl", "--checkpoint", "000001", "--prompt", "Hi", "--max-tokens", "2")
    cli("chat", "runs/sl/000002", "--prompt", "Hi", "--max-tokens", "2")
    cli("chat", "tiny-llama3", "--manifest", "local", "--prompt", "Hi", "--max-tokens", "2")
    missing = CliRunner().invoke(app, ["chat", "runs/sl", "--checkpoint", "nope", "--prompt", "Hi"])
    assert missing.exit_code == 2 and "no checkpoint 'nope'" in missing.output and "'000001'" in missing.output


def test_sample_answers_a_jsonl_file(workdir: Path) -> None:
    prompts = workdir / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n\n{"messages": [{"role": "user", "content": "Yo"}, '
                       '{"role": "assistant", "content": "Hey"}]}\n')
    cli("sample", "runs/sl", str(prompts), "--out", str(workdir / "replies.jsonl"), "--max-tokens", "3")
    rows = [json.loads(line) for line in (workdir / "replies.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == [None, "Hey"] and all(isinstance(r["reply"], str) for r in rows)
    prompts.write_text('{"prompt": "Hi"}\nnot json\n')
    bad = CliRunner().invoke(app, ["sample", "runs/sl", str(prompts)])
    assert bad.exit_code == 2 and "line 2" in bad.output


def test_the_run_folder_shows_replies_before_and_after(workdir: Path) -> None:
    samples = [json.loads(line) for line in (workdir / "runs/sl/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all({"messages", "reference", "base", "final"} <= s.keys() for s in samples)
    summary = json.loads((workdir / "runs/sl/summary.json").read_text())
    assert summary["final"]["test_mean_nll"] < summary["base"]["test_mean_nll"]
    page = (workdir / "runs/sl/loss.html").read_text()
    assert "Replies before and after" in page and "held-out NLL" in page


def test_export_peft_loads_in_peft_with_our_logits(workdir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = cli("export", "runs/sl", "--format", "peft", "--out", str(tmp_path / "adapter"))
    assert "wrote peft export" in out
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {
        "adapter_model.safetensors", "adapter_config.json", "README.md"}
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "base_model: tiny-llama3" in card and "chitchat" in card and "held-out NLL" in card
    with LocalTorchTrainingService(LocalBlobStore(workdir / "runs")) as service:
        base = service.base_model("tiny-llama3", 0)[0]
        base.save_pretrained(tmp_path / "base")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                               tmp_path / "adapter")
    assert {type(w.message).__name__ for w in caught} <= {"UserWarning", "FutureWarning"}  # peft's own (#2777)
    with torch.no_grad():
        theirs = torch.cat([peft_model(torch.tensor([ids])).logits[0] for ids in IDS])
    assert (theirs - checkpoint_logits(workdir)).abs().max() <= 1e-4


def test_export_merged_loads_in_transformers_alone(workdir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cli("export", "runs/sl", "--format", "merged", "--out", str(tmp_path / "merged"), "--checkpoint", "000001")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tokenizer.encode("Hello", add_special_tokens=False) == [9906]
    with torch.no_grad():
        theirs = torch.cat([model(torch.tensor([ids])).logits[0] for ids in IDS])
    assert (theirs - checkpoint_logits(workdir, "000001")).abs().max() <= 1e-4


def test_export_refuses_a_non_empty_folder_a_base_model_and_an_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    for args, problem in (
        (["runs/sl", "--out", str(tmp_path / "full")], "not empty"),
        (["tiny-llama3", "--out", str(tmp_path / "a")], "names a base model"),
        (["runs/sl", "--out", str(tmp_path / "b"), "--format", "gguf"], "'gguf' is not a format"),
    ):
        result = CliRunner().invoke(app, ["export", *args])
        assert result.exit_code == 2 and problem in result.output, result.output


def test_export_push_uploads_through_the_hub_client(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_huggingface_hub(monkeypatch, tmp_path / "hf-home")
    with FakeHub({"me/tiny-adapter": {}}) as hub:
        manifest = tmp_path / "push.yaml"
        manifest.write_text(json.dumps({"extends": "local", "ports": {
            "blob_store": {"adapter": "local", "root": str(workdir / "runs")},
            "hub_client": {"adapter": "hf", "endpoint": hub.endpoint}}}))
        out = cli("export", "runs/sl", "--out", str(tmp_path / "adapter"), "--push", "me/tiny-adapter",
                  "--manifest", str(manifest))
        files = hub.files("me/tiny-adapter")
    assert set(files) == {"adapter_model.safetensors", "adapter_config.json", "README.md"}
    assert files["adapter_config.json"] == (tmp_path / "adapter" / "adapter_config.json").read_bytes()
    assert out.count("uploaded ") == 3


def test_chat_talks_to_an_exported_model_folder_by_its_path(tmp_path: Path) -> None:
    cli("export", "runs/sl", "--format", "merged", "--out", str(tmp_path / "mine"))
    out = cli("chat", str(tmp_path / "mine"), "--prompt", "Hi", "--max-tokens", "3")
    assert out.strip()


def test_chat_on_what_is_not_a_run_or_a_model_says_so_in_one_line(workdir: Path, tmp_path: Path) -> None:
    from tinkex_cookbook.runs import Run

    result = CliRunner().invoke(app, ["chat", "runs", "--prompt", "Hi"])
    assert result.exit_code == 2 and "neither a run folder" in result.output and "runs/sl" in result.output
    failed = tmp_path / "failed"
    with pytest.raises(Exception, match="no weights"):
        Runtime.run(SlBasic, {**CFG, "model_name": "acme/missing", "renderer_name": "role_colon", "log_path": "f"},
                    manifest="local", ports={"blob_store": {"adapter": "local", "root": str(failed)}})
    result = CliRunner().invoke(app, ["chat", str(failed / "f"), "--prompt", "Hi"])
    assert result.exit_code == 2 and "no checkpoints yet" in result.output and "Traceback" not in result.output
    assert Run.load(failed / "f").status == "failed"


def test_a_run_found_under_the_log_dir_opens_its_checkpoints_there_from_any_folder(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`local` roots its blob store at ./runs; a run found under $TINKEX_LOG_DIR (or named by its path) is
    read from the root it was found under, not from this folder's ./runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINKEX_LOG_DIR", str(workdir / "runs"))
    assert cli("chat", "sl", "--manifest", "local", "--prompt", "Hi", "--max-tokens", "2")
    assert cli("chat", str(workdir / "runs/sl"), "--manifest", "local", "--checkpoint", "000001", "--prompt", "Hi",
               "--max-tokens", "2")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    cli("sample", "sl", str(prompts), "--manifest", "local", "--out", str(tmp_path / "replies.jsonl"),
        "--max-tokens", "2")
    assert (tmp_path / "replies.jsonl").read_text()
    out = cli("eval", "--run", "sl", "--manifest", "local", "--tasks", TINY_EVAL, "--no-base", "--out", "evals/e1")
    assert "chitchat_nll" in out and (workdir / "runs/evals/e1/summary.json").is_file()  # beside the run
    assert not (tmp_path / "runs").exists()
