"""Resuming and replaying as a user does it: with the run folder the CLI printed, after Ctrl-C, into a new folder.

A ``log_path`` copied from a run's output (relative to the working directory, absolute, a
``file://`` URI) names that run's folder, not a new one below the blob store's root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.faults import CrashAfter, local_blobs
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.run_folder import folder_key

CFG = {"batch_size": 8, "save_every": 2, "test_size": 16, "num_epochs": 2}

segment = st.text(st.characters(whitelist_categories=("Ll", "Nd"), whitelist_characters="-_"), min_size=1, max_size=8)
keys = st.lists(segment, min_size=1, max_size=4).map("/".join)


# -- where a printed location leads -------------------------------------------------------------------------


@given(key=keys)
def test_a_location_the_local_store_prints_is_its_key(key: str) -> None:
    store = LocalBlobStore(Path("/srv/runs"))
    assert store.key_for(store.uri(key)) == key
    assert store.key_for("file://" + store.uri(key)) == key
    assert folder_key(store, store.uri(key)) == key


@given(key=keys)
def test_a_location_the_memory_store_prints_is_its_key(key: str) -> None:
    store = MemoryBlobStore()
    assert folder_key(store, store.uri(key)) == key


def test_a_path_relative_to_the_working_directory_leads_into_the_root(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalBlobStore("runs")
    assert folder_key(store, "runs/sl_basic/t") == "sl_basic/t"
    assert folder_key(store, "./runs/sl_basic/t/") == "sl_basic/t"
    assert folder_key(store, "sl_basic/t") == "sl_basic/t"  # not a path into the root: a key
    with pytest.raises(ConfigError, match="root itself"):
        folder_key(store, "runs")


def test_inside_the_root_a_relative_log_path_is_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs" / "sl_basic").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs" / "sl_basic")
    assert folder_key(LocalBlobStore(tmp_path / "runs"), "sl_basic/t") == "sl_basic/t"


def test_an_absolute_path_outside_the_root_says_where_the_root_is(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match=f"outside the blob store's root {tmp_path / 'runs'}.*'sl_basic/my-run'"):
        folder_key(store, str(tmp_path / "elsewhere" / "run"))


def test_a_uri_of_another_store_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a location in this blob store"):
        folder_key(LocalBlobStore("/srv/runs"), "s3://bucket/runs/x")
    store = S3BlobStore("bucket", "cookbook/")
    assert folder_key(store, store.uri("sl_basic/t")) == "sl_basic/t"
    with pytest.raises(ConfigError, match="outside this blob store"):
        folder_key(store, "s3://other/cookbook/sl_basic/t")


# -- a run resumed with the printed folder ------------------------------------------------------------------


def _crash_then_resume(root: Path, log_path: str) -> list[str]:
    """Crash a run at step 5 in ``root/first``; resume it with ``log_path``; the top-level folders of ``root``."""
    cfg = {**CFG, "log_path": "first"}
    with pytest.raises(StageError):
        Runtime.run(SlBasic, cfg, manifest="test", ports={**local_blobs(root), "training_client": CrashAfter(5)})
    resumed = Runtime.run(SlBasic, {**cfg, "log_path": log_path}, manifest="test", ports=local_blobs(root))
    assert next(e for e in resumed.events if e.name == "train.resume").data["step"] == 4
    assert resumed.artifacts["run"] == str(root / "first")
    return sorted(p.name for p in root.iterdir())


def test_the_printed_absolute_path_resumes_the_same_folder(tmp_path: Path) -> None:
    assert _crash_then_resume(tmp_path / "runs", str(tmp_path / "runs" / "first")) == ["first"]


def test_the_printed_relative_path_resumes_the_same_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _crash_then_resume(tmp_path / "runs", "runs/first") == ["first"]


def test_a_file_uri_resumes_the_same_folder(tmp_path: Path) -> None:
    assert _crash_then_resume(tmp_path / "runs", (tmp_path / "runs" / "first").as_uri()) == ["first"]
