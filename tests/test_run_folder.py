"""The run folder: one layout, read and written through ``RunFolder`` over any blob store, holding all of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.run_folder import CHECKPOINTS, METRICS, RunFolder

TINY_LOCAL = {"model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 4, "max_length": 64, "lora_rank": 4,
              "learning_rate": 1e-2, "test_size": 4, "train_size": 8, "eval_every": 0, "save_every": 1, "sample_prompts": 1,
              "sample_max_tokens": 2,
              "log_path": "exp/one"}


def test_deleting_a_noop_run_folder_leaves_nothing_of_the_run(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    Runtime.run(SlBasic, {"log_path": "exp/one", "save_every": 2}, manifest="test", ports={"blob_store": store})
    folder = RunFolder(store, "exp/one")
    assert {"exp/one/spec.json", "exp/one/metrics.jsonl", "exp/one/checkpoints.jsonl"} <= set(folder.keys())
    folder.delete()
    assert store.list() == []


def test_local_torch_checkpoints_live_in_the_run_folder_and_go_with_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    store = LocalBlobStore(tmp_path)
    result = Runtime.run(SlBasic, TINY_LOCAL, manifest="local", ports={"blob_store": store})
    folder = RunFolder(store, "exp/one")
    records = folder.read_rows(CHECKPOINTS)
    assert records and all(r["state_path"].startswith("local://exp/one/checkpoints/") for r in records)
    assert result.state["final_checkpoint"].startswith("local://exp/one/checkpoints/")
    assert store.list() == folder.keys()  # nothing of the run outside its folder
    folder.delete()
    assert store.list() == []


def test_outside_a_run_the_local_backend_keeps_its_default_place(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    store = LocalBlobStore(tmp_path)
    with Runtime.open("local", {"blob_store": store}) as ports:
        client = ports.training_client.create_lora_training_client("tiny-llama3", rank=2)
        assert client.save_state("s").result().path.startswith("local://local_torch/")


def test_rows_skip_a_torn_tail_and_bad_lines() -> None:
    store = MemoryBlobStore()
    store.write("r/metrics.jsonl", b'{"step": 1}\nnot json\n[1]\n{"step": 2}\n{"step": ')
    assert RunFolder(store, "r").read_rows(METRICS) == [{"step": 1}, {"step": 2}]
    assert RunFolder(store, "r").read_rows("absent.jsonl") == []


def test_keys_are_the_folder_and_nothing_beside_it() -> None:
    store = MemoryBlobStore()
    for key in ("a/spec.json", "a/checkpoints/m/x/state.safetensors", "ab/spec.json", "a.txt"):
        store.write(key, b"{}")
    assert RunFolder(store, "a/").keys() == ["a/checkpoints/m/x/state.safetensors", "a/spec.json"]
    assert RunFolder(store, "a").uri("spec.json") == "memory://a/spec.json"
