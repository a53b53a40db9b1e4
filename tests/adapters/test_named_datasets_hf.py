"""Named datasets through the hf store: read from a Hugging Face cache on disk, offline, never downloaded.

The cache is built here from local files the way an earlier online ``load_dataset`` leaves it, under
``HF_HOME`` in ``tmp_path`` (the fixtures of ``test_hf_datasets.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")

from tests.adapters.test_hf_datasets import hf_home, store  # noqa: F401  (fixtures)
from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.datasets.hf import HFDatasetStore, HFIterableDataset
from tinkex_cookbook.errors import DatasetNotFoundError
from tinkex_cookbook.train.named_datasets import open_source


def cache_hub_dataset(tmp_path: Path, cache: Path, repo: str, config: str, splits: dict[str, list[dict[str, Any]]]) -> None:
    """What an online ``load_dataset(repo, config)`` leaves in the cache, built from JSONL files."""
    files = {}
    for split, rows in splits.items():
        path = tmp_path / "src" / repo / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files[split] = str(path)
    builder = datasets.load_dataset_builder("json", data_files=files, cache_dir=str(tmp_path / "build" / repo))
    builder.download_and_prepare()
    org, name = repo.split("/")
    target = cache / f"{org}___{name}" / config / "0.0.0" / "0123abcd"
    shutil.copytree(builder.cache_dir, target)
    for arrow in target.glob("json-*.arrow"):
        arrow.rename(target / arrow.name.replace("json-", f"{name}-"))
    info_path = target / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info.update(config_name=config, dataset_name=name)
    info_path.write_text(json.dumps(info))


def chats(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"q{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                              {"role": "assistant", "content": f"Answer {i}."}]} for i in range(n)]


def test_no_robots_by_name_from_the_cache(tmp_path: Path, hf_home: Path, store: HFDatasetStore) -> None:  # noqa: F811
    cache_hub_dataset(tmp_path, hf_home / "datasets", "HuggingFaceH4/no_robots", "default",
                      {"train": chats(24), "test": chats(3)})
    assert len(open_source(store, "no_robots", "test").to_list()) == 3
    streamed = open_source(store, "no_robots", "train", streaming=True)
    assert isinstance(streamed.parts[0], HFIterableDataset)
    result = Runtime.run(SlBasic, {"batch_size": 4, "test_size": 4, "save_every": 0, "eval_every": 0,
                                   "sample_prompts": 0, "streaming": True, "max_steps": 3},
                         manifest="test", ports={"dataset_store": store})
    assert result.state["rows_by_source"] == {"test": {"no_robots": 4}, "train": {"no_robots": 12}}


def test_gsm8k_by_name_with_its_config(tmp_path: Path, hf_home: Path, store: HFDatasetStore) -> None:  # noqa: F811
    rows = [{"question": f"{i} + 1?", "answer": f"#### {i + 1}"} for i in range(5)]
    cache_hub_dataset(tmp_path, hf_home / "datasets", "openai/gsm8k", "main", {"train": rows})
    loaded = open_source(store, "gsm8k", "train").to_list()
    assert loaded[4]["messages"][1] == {"role": "assistant", "content": "#### 5"}


def test_a_named_set_not_in_the_cache_says_how_to_get_it(store: HFDatasetStore) -> None:  # noqa: F811
    with pytest.raises(DatasetNotFoundError) as info:
        open_source(store, "tulu3-sft-mixture", "train")
    message = str(info.value)
    assert "not on disk nor in the Hugging Face datasets cache" in message
    assert 'datasets.load_dataset("allenai/tulu-3-sft-mixture")' in message and "ODC-BY-1.0" in message
