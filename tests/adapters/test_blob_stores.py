"""Contract tests shared by every blob store, plus what only the local store must guarantee."""

from __future__ import annotations

import itertools
import os
import posixpath
import secrets
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adapters.conftest import BUCKET
from tests.faults import dead_pid
from tinkex_cookbook.adapters.blobs.keys import TEMP_PREFIX, normalize_key
from tinkex_cookbook.adapters.blobs.local import (
    ABANDONED_AFTER,
    TEMP_NAME,
    LocalBlobStore,
    open_temp,
    temp_prefix,
)
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, InvalidKeyError
from tinkex_cookbook.ports.blobs import BlobStore, whole_lines

INVALID_KEYS = ["", "/abs", "../x", "a/../../b", "a/..", "a//b", "a/", ".", "./", "a\\b", "a\x00b", ".tinkex-tmp-x", "a/.append-1", "a\nb"]
shared_store = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
segment = st.text(
    st.characters(codec="ascii", exclude_characters="/\\", exclude_categories=("Cc",)), min_size=1, max_size=12
).filter(
    lambda s: s not in (".", "..") and not s.startswith((TEMP_PREFIX, ".append-"))
)
valid_key = st.lists(segment, min_size=1, max_size=4).map("/".join)
_examples = itertools.count()  # one fresh subtree per example: the store outlives the examples


_s3_prefixes = itertools.count()


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Every store the cookbook ships; S3 runs against a real S3 server on 127.0.0.1 (moto)."""
    if request.param == "memory":
        return MemoryBlobStore()
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("aws_env")
    from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore

    s3 = S3BlobStore(BUCKET, prefix=f"contract{next(_s3_prefixes)}", endpoint_url=endpoint)
    request.addfinalizer(s3.close)
    return s3


def test_satisfies_protocol(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_write_then_read(store: BlobStore) -> None:
    store.write("ckpt/step-1/weights.bin", b"\x00\x01abc")
    assert store.read("ckpt/step-1/weights.bin") == b"\x00\x01abc"


def test_overwrite_replaces_content(store: BlobStore) -> None:
    store.write("a", b"old content that is longer")
    store.write("a", b"new")
    assert store.read("a") == b"new"


def test_write_accepts_bytearray_and_copies_it(store: BlobStore) -> None:
    data = bytearray(b"abc")
    store.write("a", data)
    data[0] = ord("z")
    assert store.read("a") == b"abc"


def test_write_rejects_non_bytes(store: BlobStore) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        store.write("a", "text")  # type: ignore[arg-type]
    assert store.list() == []


def test_read_missing_names_key(store: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError, match="nope/x") as info:
        store.read("nope/x")
    assert isinstance(info.value, KeyError)


def test_exists(store: BlobStore) -> None:
    assert not store.exists("a/b")
    store.write("a/b", b"")
    assert store.exists("a/b")
    assert not store.exists("a/b/c")


def test_list_sorted_and_filtered_by_prefix(store: BlobStore) -> None:
    for key in ["runs/b/x", "runs/a/y", "other", "runs/a/x"]:
        store.write(key, b"1")
    assert store.list() == ["other", "runs/a/x", "runs/a/y", "runs/b/x"]
    assert store.list("runs/a") == ["runs/a/x", "runs/a/y"]
    assert store.list("runs/a/") == ["runs/a/x", "runs/a/y"]
    assert store.list("zzz") == []


def test_list_empty_store(store: BlobStore) -> None:
    assert store.list() == []


def test_delete(store: BlobStore) -> None:
    store.write("a/b", b"1")
    store.delete("a/b")
    assert not store.exists("a/b")
    assert store.list() == []


def test_delete_missing_is_noop(store: BlobStore) -> None:
    store.delete("never/written")


def test_dot_segments_are_normalised(store: BlobStore) -> None:
    store.write("./a/./b", b"1")
    assert store.read("a/b") == b"1"
    assert store.list() == ["a/b"]


def test_uri_names_key(store: BlobStore) -> None:
    assert store.uri("a/b.bin").endswith("a/b.bin")


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_rejected_everywhere(store: BlobStore, key: str) -> None:
    for call in (store.read, store.exists, store.delete, store.uri, lambda k: store.write(k, b"x"),
                 lambda k: store.create(k, b"x")):
        with pytest.raises(InvalidKeyError, match="invalid blob key"):
            call(key)
    assert store.list() == []


def test_non_string_key_rejected(store: BlobStore) -> None:
    with pytest.raises(InvalidKeyError, match="non-empty string"):
        store.read(3)  # type: ignore[arg-type]


def test_concurrent_writes_all_land(store: BlobStore) -> None:
    def worker(n: int) -> None:
        for i in range(5):
            store.write(f"t{n}/{i}", bytes([n, i]))
            store.write("shared", bytes([n]) * 64)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.list("t")) == 40
    shared = store.read("shared")
    assert len(shared) == 64 and len(set(shared)) == 1


# -- create: write only if absent, the one step the run lease needs ----------------------------------------


def test_create_when_absent_writes_and_is_readable(store: BlobStore) -> None:
    assert store.create("run/run.lock", b"mine") is True
    assert store.read("run/run.lock") == b"mine"
    assert store.exists("run/run.lock") and store.list("run/") == ["run/run.lock"]


def test_create_when_present_leaves_it_unchanged(store: BlobStore) -> None:
    store.write("a", b"first")
    assert store.create("a", b"second") is False
    assert store.create("./a", b"third") is False  # the same key, spelt otherwise
    assert store.read("a") == b"first"
    store.delete("a")
    assert store.create("a", b"again") is True and store.read("a") == b"again"


def test_create_rejects_non_bytes(store: BlobStore) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        store.create("a", "text")  # type: ignore[arg-type]
    assert store.list() == []


def test_create_race_has_exactly_one_winner(store: BlobStore) -> None:
    """Threads released at one instant, each creating the same key with its own bytes, over several keys."""
    for key in ("race/0", "race/1", "race/2"):
        barrier, won = threading.Barrier(8), [False] * 8

        def worker(n: int, key: str = key, barrier: threading.Barrier = barrier, won: list[bool] = won) -> None:
            barrier.wait()
            won[n] = store.create(key, bytes([n]) * 32)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert won.count(True) == 1, (key, won)
        assert store.read(key) == bytes([won.index(True)]) * 32  # the winner's bytes, whole
    assert store.list("race/") == ["race/0", "race/1", "race/2"]


@settings(shared_store, max_examples=15)
@given(ops=st.lists(st.tuples(st.sampled_from(["create", "write", "delete"]), st.sampled_from("ab"),
                              st.binary(max_size=8)), max_size=8))
def test_create_agrees_with_a_dict_model(store: BlobStore, ops: list[tuple[str, str, bytes]]) -> None:
    """Any mix of create, write and delete: create succeeds exactly when the key is free."""
    base, model = f"model-{next(_examples)}", {}
    for op, name, data in ops:
        key = f"{base}/{name}"
        if op == "create":
            assert store.create(key, data) is (key not in model)
            model.setdefault(key, data)
        elif op == "write":
            store.write(key, data)
            model[key] = data
        else:
            store.delete(key)
            model.pop(key, None)
    assert {key: store.read(key) for key in store.list(f"{base}/")} == model


def test_append_creates_then_extends(store: BlobStore) -> None:
    store.append("run/metrics.jsonl", b"1\n")
    store.append("run/metrics.jsonl", b"2\n3\n")
    assert store.read("run/metrics.jsonl") == b"1\n2\n3\n"
    assert store.exists("run/metrics.jsonl") and store.list("run/") == ["run/metrics.jsonl"]


def test_append_after_write_and_write_after_append(store: BlobStore) -> None:
    store.write("log", b"old\n")
    store.append("log", b"more\n")
    assert store.read("log") == b"old\nmore\n"
    store.write("log", b"new\n")
    assert store.read("log") == b"new\n"
    store.append("log", b"after\n")
    assert store.read("log") == b"new\nafter\n"


def test_delete_removes_appended_lines_too(store: BlobStore) -> None:
    store.append("gone/log", b"a\n")
    store.append("gone/log", b"b\n")
    store.delete("gone/log")
    assert not store.exists("gone/log") and store.list("gone") == []
    with pytest.raises(BlobNotFoundError):
        store.read("gone/log")
    store.append("gone/log", b"c\n")
    assert store.read("gone/log") == b"c\n"


@pytest.mark.parametrize("data", [b"", b"no newline", "text\n"])
def test_append_takes_only_whole_lines_of_bytes(store: BlobStore, data: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        store.append("x", data)  # type: ignore[arg-type]
    assert not store.exists("x")


def test_a_key_beside_an_appended_key_is_its_own(store: BlobStore) -> None:
    store.append("a/log", b"1\n")
    store.write("a/log2", b"2")
    store.append("a/log", b"3\n")
    assert store.list("a/") == ["a/log", "a/log2"] and store.read("a/log2") == b"2"


@settings(shared_store, max_examples=15)
@given(ops=st.lists(st.tuples(st.sampled_from(["append", "write", "delete"]), st.sampled_from("ab"),
                              st.lists(st.binary(max_size=6).map(lambda b: b.replace(b"\n", b"")), min_size=1,
                                       max_size=3)), max_size=10))
def test_append_agrees_with_a_dict_model(store: BlobStore, ops: list[tuple[str, str, list[bytes]]]) -> None:
    """Any mix of append, write and delete reads back as the concatenation a dict would hold."""
    base, model = f"append-{next(_examples)}", {}
    for op, name, lines in ops:
        key, data = f"{base}/{name}", b"".join(line + b"\n" for line in lines)
        if op == "append":
            store.append(key, data)
            model[key] = model.get(key, b"") + data
        elif op == "write":
            store.write(key, data)
            model[key] = data
        else:
            store.delete(key)
            model.pop(key, None)
    assert {key: store.read(key) for key in store.list(f"{base}/")} == model


def test_whole_lines_skips_a_torn_tail() -> None:
    assert whole_lines(b"a\nb\n") == [b"a", b"b"]
    assert whole_lines(b"a\n{\"step\": 3") == [b"a"]
    assert whole_lines(b"") == whole_lines(b"torn") == []


def test_local_append_drops_a_torn_tail_before_appending(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.append("log", b"one\n")
    with (tmp_path / "log").open("ab") as handle:  # what a power cut mid-append can leave
        handle.write(b'{"half": ')
    assert whole_lines(store.read("log")) == [b"one"]
    store.append("log", b"two\n")
    assert store.read("log") == b"one\ntwo\n"
    (tmp_path / "all-torn").write_bytes(b"x" * 10_000)
    store.append("all-torn", b"fresh\n")
    assert store.read("all-torn") == b"fresh\n"


def test_local_append_cuts_back_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path)
    store.append("log", b"kept\n")

    def half_then_fail(fd: int, data: bytes) -> int:
        os.pwrite(fd, data[:3], os.fstat(fd).st_size)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(BlobStoreError, match="cannot append blob 'log'.*No space left"):
        store.append("log", b"lost line\n")
    monkeypatch.undo()
    assert store.read("log") == b"kept\n"


def test_local_append_is_a_real_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes written per append are its own, however long the file: no rewrite, no temp file."""
    store = LocalBlobStore(tmp_path)
    store.write("big", b"x" * 1_000_000 + b"\n")
    written: list[int] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: written.append(len(data)) or real_write(fd, data))
    store.append("big", b"small\n")
    assert written == [6] and not list(tmp_path.glob(TEMP_PREFIX + "*"))


@shared_store
@given(key=valid_key, data=st.binary(max_size=256))
def test_round_trip_arbitrary_bytes(store: BlobStore, key: str, data: bytes) -> None:
    key = f"example-{next(_examples)}/{key}"
    store.write(key, data)
    assert store.read(key) == data
    assert store.list(key) == [key]


tricky_key = st.lists(st.sampled_from(["..", ".", "", "a", "b", "/", "\\"]), max_size=6).map("/".join)


@given(key=st.one_of(st.text(max_size=30), tricky_key))
def test_normalised_key_never_escapes_root(key: str) -> None:
    try:
        normalized = normalize_key(key)
    except InvalidKeyError:
        return
    joined = posixpath.normpath(posixpath.join("/root", normalized))
    assert joined.startswith("/root/")
    assert normalize_key(normalized) == normalized


@given(key=valid_key)
def test_valid_keys_normalise_to_themselves(key: str) -> None:
    assert normalize_key(key) == key


def test_invalid_key_error_names_key_and_rule() -> None:
    with pytest.raises(InvalidKeyError, match=r"'a/\.\./\.\./b'.*'\.\.' segments") as info:
        normalize_key("a/../../b")
    assert isinstance(info.value, ValueError)


def test_memory_blobs_is_a_copy() -> None:
    store = MemoryBlobStore()
    store.write("a", b"1")
    view = store.blobs
    view["b"] = b"2"
    assert view == {"a": b"1", "b": b"2"}
    assert store.blobs == {"a": b"1"}


def test_memory_uri() -> None:
    assert MemoryBlobStore().uri("./runs/x") == "memory://runs/x"


def test_local_root_created_lazily(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    store = LocalBlobStore(root)
    assert not root.exists()
    assert store.list() == [] and not store.exists("a")
    store.write("a/b", b"1")
    assert (root / "a" / "b").read_bytes() == b"1"


def test_local_uri_is_absolute_path(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    assert store.uri("a/b") == str(tmp_path / "a" / "b")
    assert os.path.isabs(store.uri("a/b"))


def test_local_repr_shows_root(tmp_path: Path) -> None:
    assert str(tmp_path) in repr(LocalBlobStore(tmp_path))


def test_local_write_is_atomic_when_replace_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("ckpt/a", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(BlobStoreError, match="ckpt/a") as info:
        store.write("ckpt/a", b"new")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert store.read("ckpt/a") == b"old"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["a"]


def test_local_create_leaves_no_temp_file_win_or_lose(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    assert store.create("run/run.lock", b"1") and not store.create("run/run.lock", b"2")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.lock"]
    assert (tmp_path / "run" / "run.lock").stat().st_nlink == 1  # the temp name is gone, not just hidden


def test_local_create_over_a_directory_fails_like_write(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("dir/x", b"1")
    with pytest.raises(BlobStoreError, match="cannot create blob 'dir'"):
        store.create("dir", b"2")
    assert store.list() == ["dir/x"] and not list(tmp_path.rglob(TEMP_PREFIX + "*"))


def test_local_list_skips_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("a/b", b"1")
    _fd, temp = open_temp(tmp_path / "a")
    os.close(_fd)
    (tmp_path / "a" / ".tmp-draft.md").write_bytes(b"a user's file, not a temp of the store's")
    assert store.list() == ["a/.tmp-draft.md", "a/b"] and temp.exists()


def test_local_temp_files_are_named_for_their_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(Path(src).name), real_replace(src, dst)))
    LocalBlobStore(tmp_path).write("a/b", b"1")
    assert len(renamed) == 1 and renamed[0].startswith(temp_prefix()) and TEMP_NAME.fullmatch(renamed[0])
    assert temp_prefix().startswith(f".tinkex-tmp-{os.getpid()}@")
    assert oct(os.stat(tmp_path / "a" / "b").st_mode & 0o777) == oct(0o600)  # as tempfile.mkstemp made them


def _temp_name(pid: int, host: str) -> str:
    return f"{TEMP_PREFIX}{pid}@{host}-{secrets.token_hex(8)}"


def test_local_first_write_under_a_top_folder_removes_temps_killed_writers_left(tmp_path: Path) -> None:
    """Gone writer on this host: removed at once. Live writer, or one elsewhere: kept until an hour old.
    The killed writer's folder need not be the one written: a resumed run saves into a new session's."""
    folder = tmp_path / "ckpt" / "killed-session"
    folder.mkdir(parents=True)
    here = temp_prefix().split("@")[1][:-1]  # the host tag
    names = {
        "killed": _temp_name(dead_pid(), here),
        "live": _temp_name(os.getpid(), here),
        "elsewhere": _temp_name(dead_pid(), "00000000"),
        "elsewhere, old": _temp_name(dead_pid(), "00000000"),
    }
    for name in names.values():
        (folder / name).write_bytes(b"half a checkpoint")
    hour_ago = time.time() - ABANDONED_AFTER - 60
    os.utime(folder / names["elsewhere, old"], (hour_ago, hour_ago))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / names["killed"]).write_bytes(b"")  # another top folder: not this write's
    store = LocalBlobStore(tmp_path)
    store.write("ckpt/new-session/state.pt", b"whole")
    left = {p.name for p in folder.iterdir()}
    assert left == {names["live"], names["elsewhere"]}
    assert (tmp_path / "other" / names["killed"]).exists()
    assert store.list() == ["ckpt/new-session/state.pt"]


def test_local_sweep_removes_only_names_of_its_own_scheme(tmp_path: Path) -> None:
    """A user's files that look like temps survive the sweep, however old, and stay keys: only an exact
    ``.tinkex-tmp-<pid>@<host tag>-<16 hex>`` is the store's."""
    here = temp_prefix().split("@")[1][:-1]
    dead = dead_pid()
    look_alikes = [
        ".tmp-draft.md", ".tmp-x4", f".tmp-{dead}@{here}-abcdefgh",  # the old scheme's shape
        f"{TEMP_PREFIX}notes", f"{TEMP_PREFIX}{dead}@{here}-{'a' * 15}",  # random part one short
        f"{TEMP_PREFIX}{dead}@{here}-{'a' * 16}.md", f"{TEMP_PREFIX}{dead}@{here}-{'A' * 16}",
        f"{TEMP_PREFIX}0{dead}@{here}-{'a' * 16}", f"{TEMP_PREFIX}{dead}@{here.upper()}x-{'a' * 16}",
        f"x{TEMP_PREFIX}{dead}@{here}-{'a' * 16}", "draft.tmp", ".tmp",
    ]
    notes = tmp_path / "proj" / "notes"
    notes.mkdir(parents=True)
    old = time.time() - 10 * ABANDONED_AFTER
    for name in look_alikes:
        (notes / name).write_bytes(b"mine")
        os.utime(notes / name, (old, old))
    ours = notes / _temp_name(dead, here)
    ours.write_bytes(b"half")
    LocalBlobStore(tmp_path).write("proj/run1/config.json", b"{}")
    assert sorted(p.name for p in notes.iterdir()) == sorted(look_alikes)
    assert all((notes / name).read_bytes() == b"mine" for name in look_alikes)


def test_local_temps_it_cannot_remove_do_not_fail_the_write(tmp_path: Path) -> None:
    odd = tmp_path / "a" / _temp_name(dead_pid(), temp_prefix().split("@")[1][:-1])
    odd.mkdir(parents=True)  # a directory: unlink fails
    store = LocalBlobStore(tmp_path)
    store.create("a/b", b"1")
    assert store.read("a/b") == b"1" and odd.is_dir()


def test_local_writes_fsync_the_folder_that_holds_the_new_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    store = LocalBlobStore(tmp_path)
    store.write("a/b", b"1")
    assert synced == [False, True]  # the file, then its folder
    store.create("a/c", b"1")
    assert synced[2:] == [False, True]


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b"])
def test_local_escape_attempts_rejected(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    with pytest.raises(InvalidKeyError):
        store.write(key, b"evil")
    assert list(tmp_path.rglob("*")) == []


def test_local_symlink_outside_root_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret")
    store = LocalBlobStore(root)
    for key in ("link/x", "link/secret", "file-link"):
        with pytest.raises(InvalidKeyError, match="outside the root"):
            store.write(key, b"evil")
        with pytest.raises(InvalidKeyError):
            store.read(key)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert store.list() == []


def test_local_symlink_inside_root_allowed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("real/x", b"1")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert store.read("alias/x") == b"1"


def test_local_os_error_becomes_blob_store_error(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("a", b"file, not a directory")
    with pytest.raises(BlobStoreError, match="'a/b'") as info:
        store.write("a/b", b"1")
    assert isinstance(info.value.__cause__, OSError)
    assert not isinstance(info.value, BlobNotFoundError)


def test_local_read_of_directory_is_not_found(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.write("dir/x", b"1")
    with pytest.raises(BlobNotFoundError, match="'dir'"):
        store.read("dir")
    store.delete("dir")
    assert store.exists("dir/x")
