"""The Hugging Face datasets store: local files in four formats, splits, offline mode, and both wrappers.

Nothing here touches the network or the user's Hugging Face cache: every test runs
with the store offline and ``HF_HOME`` (and the module-level paths ``datasets`` and
``huggingface_hub`` computed from it at import time) pointed under ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tinkex_cookbook.adapters.datasets.hf import (
    HFDataset,
    HFDatasetStore,
    HFIterableDataset,
)
from tinkex_cookbook.adapters.datasets.memory import ListDataset
from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.ports.datasets import Dataset, DatasetStore

ROWS = [{"i": i, "text": f"row {i}", "score": i / 2} for i in range(12)]
CHATS = [
    {
        "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
        "tags": ["x"] * i,
    }
    for i in range(3)
]


def ids(dataset: Any) -> list[int]:
    return [row["i"] for row in dataset]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        header = list(rows[0])
        lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME under tmp_path; also the paths both libraries already derived from it when imported."""
    import datasets.config as dc
    import huggingface_hub.constants as hc

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    for attr, value in {
        "HF_CACHE_HOME": str(home), "HF_DATASETS_CACHE": home / "datasets",
        "HF_MODULES_CACHE": home / "modules",
        "DOWNLOADED_DATASETS_PATH": home / "datasets" / "downloads",
        "EXTRACTED_DATASETS_PATH": home / "datasets" / "downloads" / "extracted",
    }.items():
        monkeypatch.setattr(dc, attr, value, raising=False)
    for attr, value in {
        "HF_HOME": home, "HF_HUB_CACHE": home / "hub", "HF_ASSETS_CACHE": home / "assets",
        "HF_XET_CACHE": home / "xet", "HF_TOKEN_PATH": home / "token",
        "HF_STORED_TOKENS_PATH": home / "stored_tokens",
    }.items():
        monkeypatch.setattr(hc, attr, str(value), raising=False)
    return home


@pytest.fixture
def store(hf_home: Path) -> HFDatasetStore:
    return HFDatasetStore(cache_dir=str(hf_home / "datasets"))


@pytest.fixture
def loaded(tmp_path: Path, store: HFDatasetStore) -> HFDataset:
    dataset = store.load_dataset(str(write(tmp_path / "rows.jsonl", ROWS)))
    assert isinstance(dataset, HFDataset)
    return dataset


def test_store_and_datasets_satisfy_protocols(
    loaded: HFDataset, tmp_path: Path, store: HFDatasetStore
) -> None:
    assert isinstance(store, DatasetStore)
    assert isinstance(loaded, Dataset)
    streamed = store.load_dataset(str(tmp_path / "rows.jsonl"), streaming=True)
    assert isinstance(streamed, HFIterableDataset) and isinstance(streamed, Dataset)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_each_format_loads_the_same_plain_rows(tmp_path: Path, store: HFDatasetStore, suffix: str) -> None:
    dataset = store.load_dataset(str(write(tmp_path / f"data{suffix}", ROWS)))
    assert dataset.to_list() == ROWS and list(dataset) == ROWS and len(dataset) == 12
    row = next(iter(dataset))
    assert type(row) is dict
    assert [type(row[k]) for k in ("i", "text", "score")] == [int, str, float]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_nested_values_come_back_as_python_lists_and_dicts(
    tmp_path: Path, store: HFDatasetStore, suffix: str
) -> None:
    dataset = store.load_dataset(str(write(tmp_path / f"chat{suffix}", CHATS)))
    assert dataset.to_list() == CHATS
    row = dataset.to_list()[2]
    assert type(row["messages"]) is list and type(row["messages"][0]) is dict and type(row["tags"]) is list


def test_rows_are_fresh_dicts(loaded: HFDataset) -> None:
    loaded.to_list()[0]["i"] = 99
    assert ids(loaded)[0] == 0


def test_folder_splits_and_unknown_split_lists_them(tmp_path: Path, store: HFDatasetStore) -> None:
    write(tmp_path / "ds" / "train.jsonl", ROWS[:5])
    write(tmp_path / "ds" / "test.jsonl", ROWS[5:7])
    folder = str(tmp_path / "ds")
    assert ids(store.load_dataset(folder)) == [0, 1, 2, 3, 4]
    assert ids(store.load_dataset(folder, split="test")) == [5, 6]
    with pytest.raises(DatasetError, match=r"no split 'validation'; available splits: 'test', 'train'"):
        store.load_dataset(folder, split="validation")


def test_data_files_mapping_names_the_splits(tmp_path: Path, store: HFDatasetStore) -> None:
    files = {
        "train": str(write(tmp_path / "a.jsonl", ROWS[:3])),
        "test": str(write(tmp_path / "b.jsonl", ROWS[3:4])),
    }
    assert ids(store.load_dataset("json", data_files=files)) == [0, 1, 2]
    assert ids(store.load_dataset("json", split="test", data_files=files)) == [3]
    assert ids(store.load_dataset("json", split="train+test", data_files=files)) == [0, 1, 2, 3]
    with pytest.raises(DatasetError, match=r"'json'.*split 'dev'.*available splits: 'test', 'train'"):
        store.load_dataset("json", split="dev", data_files=files)


def test_a_file_serves_any_split_and_split_slices(tmp_path: Path, store: HFDatasetStore) -> None:
    path = str(write(tmp_path / "d.parquet", ROWS))
    assert ids(store.load_dataset(path, split="validation")) == list(range(12))
    assert ids(store.load_dataset(path, split="train[:3]")) == [0, 1, 2]


def test_limit(tmp_path: Path, store: HFDatasetStore) -> None:
    path = str(write(tmp_path / "d.csv", ROWS))
    assert ids(store.load_dataset(path, limit=4)) == [0, 1, 2, 3]
    assert ids(store.load_dataset(path, limit=0)) == []
    assert ids(store.load_dataset(path, limit=50)) == list(range(12))
    with pytest.raises(DatasetError, match="limit"):
        store.load_dataset(path, limit=-1)


def test_shuffle_matches_list_dataset_and_leaves_original_alone(loaded: HFDataset) -> None:
    first, again, other = loaded.shuffle(7), loaded.shuffle(7), loaded.shuffle(8)
    assert ids(first) == ids(again) == ids(ListDataset(ROWS).shuffle(7))
    assert ids(first) != ids(other)
    assert sorted(ids(first)) == list(range(12))
    assert ids(loaded) == list(range(12))
    assert ids(first.shuffle(-3)) == ids(ListDataset(ROWS).shuffle(7).shuffle(-3))


def test_take_skip_select_batches_match_list_dataset(loaded: HFDataset) -> None:
    ref = ListDataset(ROWS)
    for n in (0, 2, 12, 20):
        assert ids(loaded.take(n)) == ids(ref.take(n)) and ids(loaded.skip(n)) == ids(ref.skip(n))
    assert ids(loaded.select([11, 0, 11])) == ids(ref.select([11, 0, 11])) == [11, 0, 11]
    assert ids(loaded.skip(2).take(3).select([2, 0])) == [4, 2]
    assert len(loaded.select([])) == 0
    for size, drop_last in ((5, True), (5, False), (12, True), (13, True), (13, False)):
        got, want = loaded.batches(size, drop_last), ref.batches(size, drop_last)
        assert [ids(b) for b in got] == [ids(b) for b in want]
    assert isinstance(loaded.take(1), HFDataset)
    assert ids(loaded) == list(range(12))


@pytest.mark.parametrize("index", [12, -1])
def test_select_out_of_range_names_index_and_length(loaded: HFDataset, index: int) -> None:
    with pytest.raises(DatasetError, match=rf"index {index} .*length 12"):
        loaded.select([0, index])


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_bad_counts_seeds_and_batch_sizes(loaded: HFDataset, n: Any) -> None:
    with pytest.raises(DatasetError, match="integer >= 0"):
        loaded.take(n)
    with pytest.raises(DatasetError, match="integer >= 0"):
        loaded.skip(n)
    with pytest.raises(DatasetError, match="batch_size"):
        loaded.batches(0 if n is True else n)
    if not isinstance(n, int) or n is True:
        with pytest.raises(DatasetError, match="seed"):
            loaded.shuffle(n)


IN_MEMORY = HFDataset(datasets.Dataset.from_list([{"i": i} for i in range(30)]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), k=st.integers(0, 35), seed=st.integers())
def test_slicing_properties_match_list_dataset(n: int, k: int, seed: int) -> None:
    dataset, ref = IN_MEMORY.take(n), ListDataset([{"i": i} for i in range(n)])
    assert ids(dataset.take(k)) + ids(dataset.skip(k)) == list(range(n))
    assert ids(dataset.shuffle(seed)) == ids(ref.shuffle(seed))
    assert [ids(b) for b in dataset.batches(max(k, 1), drop_last=False)] == [
        ids(b) for b in ref.batches(max(k, 1), drop_last=False)
    ]


def test_streaming_basics(tmp_path: Path, store: HFDatasetStore) -> None:
    path = str(write(tmp_path / "s.jsonl", ROWS))
    stream = store.load_dataset(path, streaming=True)
    assert isinstance(stream, HFIterableDataset) and bool(stream)
    assert [r for r in stream] == ROWS and stream.to_list() == ROWS  # re-iterable
    assert ids(stream.take(3)) == [0, 1, 2] and ids(stream.skip(10)) == [10, 11]
    assert ids(stream.skip(2).take(2)) == [2, 3]
    assert [ids(b) for b in stream.batches(5)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [ids(b) for b in stream.batches(5, drop_last=False)][-1] == [10, 11]
    shuffled = stream.shuffle(3)
    assert ids(shuffled) == ids(stream.shuffle(3)) == ids(shuffled)
    assert ids(shuffled) != ids(stream.shuffle(4)) and sorted(ids(shuffled)) == list(range(12))
    assert ids(stream) == list(range(12))
    assert ids(store.load_dataset(path, streaming=True, limit=2)) == [0, 1]
    assert isinstance(HFDatasetStore(streaming=True).load_dataset(path), HFIterableDataset)
    assert isinstance(HFDatasetStore(streaming=True).load_dataset(path, streaming=False), HFDataset)


def test_streaming_has_no_length_and_no_select(tmp_path: Path, store: HFDatasetStore) -> None:
    stream = store.load_dataset(str(write(tmp_path / "s.jsonl", ROWS)), streaming=True)
    with pytest.raises(DatasetError, match=r"streaming dataset .*s\.jsonl' has no length") as info:
        len(stream)
    assert "limit" in str(info.value) and ".take(n).to_list()" in str(info.value)
    with pytest.raises(DatasetError, match="has no length"):
        list(stream)  # list() asks for a length hint first; a for loop or to_list() does not
    with pytest.raises(DatasetError, match=r"cannot select .*\.take\(n\)\.to_list\(\)"):
        stream.select([0])
    with pytest.raises(DatasetError, match="batch_size"):
        stream.batches(0)
    with pytest.raises(DatasetError, match="buffer_size"):
        stream.shuffle(1, buffer_size=0)


def test_hub_id_not_cached_fails_fast_offline_and_says_how_to_provide_it(store: HFDatasetStore) -> None:
    import datasets.config as dc
    import huggingface_hub.constants as hc

    flags = (dc.HF_HUB_OFFLINE, hc.HF_HUB_OFFLINE)
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        store.load_dataset("acme/no-such-dataset", split="test")
    assert time.monotonic() - started < 5
    message = str(info.value)
    for part in ("'acme/no-such-dataset'", "split 'test'", "`local` dataset store", "offline: false"):
        assert part in message
    for part in ("HF_HOME", str(store.cache_dir)):
        assert part in message
    assert (dc.HF_HUB_OFFLINE, hc.HF_HUB_OFFLINE) == flags  # forced only for the load


def fake_cached_hub_dataset(tmp_path: Path, cache: Path, repo: str) -> None:
    """What a previous online ``load_dataset(repo)`` leaves in the cache, built from local files."""
    files = {"train": str(write(tmp_path / "src" / "train.jsonl", ROWS[:4])),
             "test": str(write(tmp_path / "src" / "test.jsonl", ROWS[4:5]))}
    builder = datasets.load_dataset_builder("json", data_files=files, cache_dir=str(tmp_path / "build"))
    builder.download_and_prepare()
    org, name = repo.split("/")
    target = cache / f"{org}___{name}" / "default" / "0.0.0" / "0123abcd"
    shutil.copytree(builder.cache_dir, target)
    for arrow in target.glob("json-*.arrow"):
        arrow.rename(target / arrow.name.replace("json-", f"{name}-"))


def test_offline_reads_a_cached_hub_dataset(tmp_path: Path, hf_home: Path, store: HFDatasetStore) -> None:
    fake_cached_hub_dataset(tmp_path, hf_home / "datasets", "acme/tiny")
    assert ids(store.load_dataset("acme/tiny")) == [0, 1, 2, 3]
    assert ids(store.load_dataset("acme/tiny", split="test", streaming=True)) == [4]
    with pytest.raises(DatasetError, match=r"no split 'validation'; available splits: 'test', 'train'"):
        store.load_dataset("acme/tiny", split="validation")
    with pytest.raises(DatasetError, match=r"config 'other'.*\n.*configs in the cache: \['default'\]"):
        store.load_dataset("acme/tiny", config="other")


def test_missing_local_file_and_bad_suffix(tmp_path: Path, store: HFDatasetStore) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl' \(split 'train'\) not found"):
        store.load_dataset(str(tmp_path / "nope.jsonl"))
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unsupported suffix '\.txt'"):
        store.load_dataset(str(tmp_path / "notes.txt"))


def test_malformed_file_names_the_file_and_line(tmp_path: Path, store: HFDatasetStore) -> None:
    (tmp_path / "bad.jsonl").write_text('{"i": 0}\n{not json\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 2: the line is not JSON"):
        store.load_dataset(str(tmp_path / "bad.jsonl"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"shuffle": True},
            r"'shuffle'.*valid options: 'config', 'data_files', 'limit', 'revision', 'streaming'",
        ),
        ({"config": 3}, "option 'config'"),
        ({"revision": ""}, "option 'revision'"),
        ({"streaming": "yes"}, "option 'streaming'"),
        ({"data_files": {"train": 5}}, "option 'data_files'"),
        ({"data_files": "x.jsonl"}, "is a file, so the 'data_files' option does not apply"),
    ],
)
def test_bad_options(tmp_path: Path, store: HFDatasetStore, options: dict[str, Any], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        store.load_dataset(str(write(tmp_path / "d.jsonl", ROWS)), **options)


def test_bad_names_and_splits(store: HFDatasetStore) -> None:
    with pytest.raises(DatasetError, match="non-empty string"):
        store.load_dataset("")
    with pytest.raises(DatasetError, match="split"):
        store.load_dataset("acme/x", split="")


def test_repr_never_shows_the_token(loaded: HFDataset) -> None:
    text = repr(HFDatasetStore(token="hf_secret_value", offline=False))
    assert "hf_secret_value" not in text and "offline=False" in text and "token='***'" in text
    assert "token=None" in repr(HFDatasetStore())
    assert repr(loaded).startswith("HFDataset(12 rows")


def test_importing_the_adapter_does_not_import_datasets() -> None:
    code = "import sys, tinkex_cookbook.adapters.datasets.hf; print('datasets' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert result.stdout.strip() == "False"
