"""ListDataset semantics and how the memory and local dataset stores find and parse data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook.adapters.datasets.local import SHIPPED, LocalDatasetStore
from tinkex_cookbook.adapters.datasets.memory import ListDataset, MemoryDatasetStore
from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports.datasets import Dataset, DatasetStore


def rows(n: int) -> list[dict[str, Any]]:
    return [{"i": i} for i in range(n)]


def ids(dataset: Dataset) -> list[int]:
    return [row["i"] for row in dataset]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def test_list_dataset_satisfies_protocol() -> None:
    assert isinstance(ListDataset(rows(1)), Dataset)


def test_stores_satisfy_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryDatasetStore(), DatasetStore)
    assert isinstance(LocalDatasetStore(tmp_path), DatasetStore)


def test_len_iter_and_to_list_share_rows() -> None:
    data = rows(3)
    dataset = ListDataset(data)
    assert len(dataset) == 3 and ids(dataset) == [0, 1, 2]
    copy = dataset.to_list()
    copy.append({"i": 99})
    assert len(dataset) == 3
    assert copy[0] is data[0]


def test_input_list_mutation_does_not_leak_in() -> None:
    data = rows(2)
    dataset = ListDataset(data)
    data.append({"i": 2})
    assert len(dataset) == 2


def test_non_dict_row_names_index() -> None:
    with pytest.raises(DatasetError, match="row 1 is a list"):
        ListDataset([{"a": 1}, [1, 2]])  # type: ignore[list-item]


def test_shuffle_is_deterministic_and_leaves_original_alone() -> None:
    dataset = ListDataset(rows(20))
    first, again, other = dataset.shuffle(7), dataset.shuffle(7), dataset.shuffle(8)
    assert ids(first) == ids(again)
    assert ids(first) != ids(other)
    assert sorted(ids(first)) == list(range(20))
    assert ids(dataset) == list(range(20))


def test_take_skip_select_return_new_datasets() -> None:
    dataset = ListDataset(rows(5))
    assert ids(dataset.take(2)) == [0, 1]
    assert ids(dataset.take(10)) == [0, 1, 2, 3, 4]
    assert ids(dataset.skip(3)) == [3, 4]
    assert ids(dataset.select([4, 0, 4])) == [4, 0, 4]
    assert isinstance(dataset.take(1), ListDataset)
    assert ids(dataset) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("index", [5, -1])
def test_select_out_of_range_names_index_and_length(index: int) -> None:
    with pytest.raises(DatasetError, match=rf"index {index} .*length 5"):
        ListDataset(rows(5)).select([0, index])


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_take_and_skip_reject_bad_counts(n: Any) -> None:
    dataset = ListDataset(rows(3))
    with pytest.raises(DatasetError, match="integer >= 0"):
        dataset.take(n)
    with pytest.raises(DatasetError, match="integer >= 0"):
        dataset.skip(n)


def test_batches_drop_last() -> None:
    dataset = ListDataset(rows(7))
    assert [ids(b) for b in dataset.batches(3)] == [[0, 1, 2], [3, 4, 5]]
    assert [ids(b) for b in dataset.batches(3, drop_last=False)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(ListDataset([]).batches(2, drop_last=False)) == []


@pytest.mark.parametrize("size", [0, -2])
def test_bad_batch_size_fails_eagerly(size: int) -> None:
    with pytest.raises(DatasetError, match="batch_size"):
        ListDataset(rows(3)).batches(size)


@given(n=st.integers(0, 30), k=st.integers(0, 35), seed=st.integers())
def test_slicing_properties(n: int, k: int, seed: int) -> None:
    dataset = ListDataset(rows(n))
    assert ids(dataset.take(k)) + ids(dataset.skip(k)) == list(range(n))
    assert sorted(ids(dataset.shuffle(seed))) == list(range(n))
    assert sum(len(b) for b in dataset.batches(max(k, 1), drop_last=False)) == n


def test_memory_store_lookup_prefers_split_key() -> None:
    store = MemoryDatasetStore({"gsm8k": rows(3), "gsm8k:test": rows(1)})
    assert len(store.load_dataset("gsm8k")) == 3
    assert len(store.load_dataset("gsm8k", split="test")) == 1
    assert len(store.load_dataset("gsm8k", limit=2)) == 2


def test_memory_store_unknown_lists_known_names() -> None:
    store = MemoryDatasetStore({"a": rows(1), "b:test": rows(1)})
    with pytest.raises(DatasetError, match=r"'zzz'.*'a', 'b:test'"):
        store.load_dataset("zzz")


def test_memory_store_rejects_unknown_option() -> None:
    with pytest.raises(DatasetError, match="'shuffle'.*valid options: 'config', 'limit', 'streaming'"):
        MemoryDatasetStore({"a": rows(1)}).load_dataset("a", shuffle=True)


def test_local_resolution_order(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    write_json(tmp_path / "ds.json", [{"src": "root-json"}])
    assert store.load_dataset("ds").to_list() == [{"src": "root-json"}]
    write_jsonl(tmp_path / "ds.jsonl", [{"src": "root-jsonl"}])
    assert store.load_dataset("ds").to_list() == [{"src": "root-jsonl"}]
    write_json(tmp_path / "ds" / "train.json", [{"src": "dir-json"}])
    assert store.load_dataset("ds").to_list() == [{"src": "dir-json"}]
    write_jsonl(tmp_path / "ds" / "train.jsonl", [{"src": "dir-jsonl"}])
    assert store.load_dataset("ds").to_list() == [{"src": "dir-jsonl"}]


def test_local_root_files_only_serve_train_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ds.jsonl", rows(2))
    with pytest.raises(DatasetError, match="split 'test'"):
        LocalDatasetStore(tmp_path).load_dataset("ds", split="test")


def test_local_direct_file_path(tmp_path: Path) -> None:
    elsewhere = write_jsonl(tmp_path / "elsewhere" / "data.jsonl", rows(3))
    store = LocalDatasetStore(tmp_path / "root")
    assert ids(store.load_dataset(str(elsewhere))) == [0, 1, 2]
    write_jsonl(tmp_path / "root" / "sub" / "d.jsonl", rows(2))
    assert ids(store.load_dataset("sub/d.jsonl", split="validation")) == [0, 1]


def test_local_json_object_keyed_by_split(tmp_path: Path) -> None:
    write_json(tmp_path / "ds.json", {"train": rows(2), "test": rows(1)})
    store = LocalDatasetStore(tmp_path)
    assert ids(store.load_dataset("ds")) == [0, 1]
    assert ids(store.load_dataset("ds.json", split="test")) == [0]
    with pytest.raises(DatasetError, match=r"no split 'validation'.*'test', 'train'"):
        store.load_dataset("ds.json", split="validation")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [([{"a": 1}, 3], "row 1 is a int"), ({"train": "text"}, "got str"), (7, "got int")],
)
def test_local_json_wrong_shape(tmp_path: Path, payload: Any, reason: str) -> None:
    write_json(tmp_path / "ds.json", payload)
    with pytest.raises(DatasetError, match=rf"ds\.json: .*{reason}"):
        LocalDatasetStore(tmp_path).load_dataset("ds")


def test_local_jsonl_skips_blank_lines_and_limits(tmp_path: Path) -> None:
    (tmp_path / "ds.jsonl").write_text('{"i": 0}\n\n   \n{"i": 1}\n{"i": 2}\n', encoding="utf-8")
    store = LocalDatasetStore(tmp_path)
    assert ids(store.load_dataset("ds")) == [0, 1, 2]
    assert ids(store.load_dataset("ds", limit=2)) == [0, 1]
    write_json(tmp_path / "j.json", rows(4))
    assert ids(store.load_dataset("j", limit=1)) == [0]


@pytest.mark.parametrize(
    ("bad_line", "reason"), [("{not json", "the line is not JSON"), ("[1, 2]", "expected a JSON object")]
)
def test_local_malformed_jsonl_names_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    (tmp_path / "ds.jsonl").write_text(f'{{"i": 0}}\n\n{bad_line}\n{{"i": 1}}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"ds\.jsonl, line 3: {reason}"):
        LocalDatasetStore(tmp_path).load_dataset("ds")


def test_local_invalid_json_file_names_file(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text("[\n{]", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"ds\.json is not JSON .*at line 2"):
        LocalDatasetStore(tmp_path).load_dataset("ds")


def test_local_missing_dataset_lists_tried_paths_and_fix(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    with pytest.raises(DatasetError) as info:
        store.load_dataset("gsm8k")
    message = str(info.value)
    for name in ("gsm8k/train.jsonl", "gsm8k/train.json", "gsm8k.jsonl", "gsm8k.json"):
        assert str(tmp_path / name) in message
    assert "'gsm8k'" in message and "split 'train'" in message
    assert f"put a JSONL file (one JSON object per row) at {tmp_path / 'gsm8k' / 'train.jsonl'}" in message


def test_local_candidates_order(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    assert store.candidates("d.jsonl", "test") == [
        tmp_path / "d.jsonl", tmp_path / "d.jsonl" / "test.jsonl", tmp_path / "d.jsonl" / "test.json",
        SHIPPED / "d.jsonl" / "test.jsonl",
    ]


def test_shipped_chat_sample_loads_from_any_root(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    train, test = store.load_dataset("chitchat"), store.load_dataset("chitchat", "test")
    assert (len(train), len(test)) == (300, 40)
    roles = {m["role"] for row in train for m in row["messages"]}
    assert roles == {"user", "assistant"} and all(row["messages"][-1]["role"] == "assistant" for row in train)
    write_jsonl(tmp_path / "chitchat" / "train.jsonl", rows(2))
    assert len(store.load_dataset("chitchat")) == 2


def test_local_unknown_option_lists_valid_ones(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ds.jsonl", rows(1))
    with pytest.raises(DatasetError, match="'shuffle'.*valid options: 'config', 'limit', 'streaming'"):
        LocalDatasetStore(tmp_path).load_dataset("ds", shuffle=True)
    with pytest.raises(DatasetError, match="'streaming'.*must be true or false"):
        LocalDatasetStore(tmp_path).load_dataset("ds", streaming="yes")


@pytest.mark.parametrize("limit", [-1, "3"])
def test_bad_limit_rejected(tmp_path: Path, limit: Any) -> None:
    with pytest.raises(DatasetError, match="limit"):
        MemoryDatasetStore({"a": rows(1)}).load_dataset("a", limit=limit)


def test_missing_dataset_error_offers_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="shipped with the cookbook: 'chitchat'"):
        LocalDatasetStore(tmp_path).load_dataset("no_robots")
