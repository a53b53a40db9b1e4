"""One run folder, one run: the lease (``run.lock``) and the refusal to resume a folder under another config.

A run holds ``{log_path}/run.lock`` from before it writes its run files until it ends, refreshing a
heartbeat on every checkpoint. A second run on the folder fails at once naming the holder and the fix; a
lock whose run is surely gone (same host and a dead pid, or a heartbeat older than the threshold) is
taken over without a word. Rerunning a folder that holds checkpoints with a config other than its saved
``config.json`` is refused, listing what differs, before anything in the folder changes.
(Two processes racing for one folder: ``test_concurrency.py``; SIGKILL and resume: ``test_crash_resume.py``.)
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults import CrashAfter, dead_pid
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.errors import ConfigError, RunFolderInUseError
from tinkex_cookbook.pipeline import Event
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.lease import STALE_AFTER, Holder, RunLease, current_pid_space, stale_reason

CFG = {"batch_size": 8, "save_every": 2, "eval_every": 3, "test_size": 16, "log_path": "run"}
"""Ten steps on `test`, a checkpoint every second one (and a final one)."""


def blob(root: Path) -> dict[str, Any]:
    return {"blob_store": {"adapter": "local", "root": str(root)}}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temp files included) with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def lock(root: Path, **fields: Any) -> bytes:
    """Write a ``run.lock`` under ``root/run`` as another run would have; its bytes."""
    now = time.time()
    holder = {"owner": "someone-else", "host": socket.gethostname(), "pid": os.getppid(), "started": now - 5,
              "heartbeat": now - 1, "pid_space": current_pid_space(), **fields}
    data = json.dumps(holder).encode()
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "run" / "run.lock").write_bytes(data)
    return data


class RecordingStore(LocalBlobStore):
    """A local store noting each mutating call, so a test sees when the lock was made, beaten and removed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def write(self, key: str, data: bytes) -> None:
        self.calls.append(("write", key))
        super().write(key, data)

    def create(self, key: str, data: bytes) -> bool:
        self.calls.append(("create", key))
        return super().create(key, data)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        super().delete(key)


class LockWatcher:
    """A sink reading ``run.lock`` at every event: the run holds it throughout."""

    def __init__(self, root: Path) -> None:
        self.path, self.seen = root / "run" / "run.lock", []

    def handle(self, event: Event) -> None:
        self.seen.append((event.name, Holder.parse(self.path.read_bytes() if self.path.exists() else None)))

    def close(self) -> None:
        pass


# -- the lease around a run -------------------------------------------------------------------------------


def test_a_run_holds_its_folder_from_first_write_to_last_and_beats_on_each_checkpoint(tmp_path: Path) -> None:
    store, watcher = RecordingStore(tmp_path), LockWatcher(tmp_path)
    result = Runtime.run(SlBasic, CFG, manifest="test", ports={"blob_store": store}, sinks=[watcher])
    lock_calls = [i for i, (_op, key) in enumerate(store.calls) if key == "run/run.lock"]
    assert store.calls[0] == ("create", "run/run.lock")  # before config.json and everything else
    assert store.calls[lock_calls[-1]] == ("delete", "run/run.lock")
    assert lock_calls[-1] == len(store.calls) - 1  # after loss.html, the last file the run writes
    beats = [store.calls[i] for i in lock_calls[1:-1]]
    checkpoints = result.event_names.count("train.checkpoint")
    assert checkpoints >= 5 and beats == [("write", "run/run.lock")] * checkpoints
    holders = [holder for _name, holder in watcher.seen]
    assert None not in holders and len({h.owner for h in holders}) == 1  # type: ignore[union-attr]
    first = holders[0]
    assert (first.host, first.pid) == (socket.gethostname(), os.getpid())  # type: ignore[union-attr]
    heartbeats = [h.heartbeat for h in holders]  # type: ignore[union-attr]
    assert heartbeats == sorted(heartbeats) and len(set(heartbeats)) > 1
    assert not (tmp_path / "run" / "run.lock").exists() and "run.lock" not in result.artifacts


def test_a_second_run_on_a_held_folder_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    store = LocalBlobStore(tmp_path)
    with RunLease(store, "run"):  # a live run in this very process (another thread, say)
        before = snapshot(tmp_path)
        with pytest.raises(RunFolderInUseError) as info:
            Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
        assert snapshot(tmp_path) == before
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and "\n" not in message
    assert f"run folder {tmp_path / 'run'} is in use by another run" in message
    assert f"host {socket.gethostname()}, pid {os.getpid()}, started 20" in message and " UTC" in message
    assert f"wait for it, pick another log_path, or delete {tmp_path / 'run' / 'run.lock'} if that run is dead" \
        in message
    assert not (tmp_path / "run" / "run.lock").exists()  # released by its holder; the folder is free again
    Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))


@pytest.mark.parametrize("holder", [
    {"pid": os.getppid()},  # a live process on this host
    {"host": "another-host", "pid": 1},  # another machine, heartbeat fresh
    {"host": "another-host", "heartbeat": time.time() + 60},  # a clock ahead of ours
])
def test_a_lock_of_a_run_that_may_be_alive_is_respected(tmp_path: Path, holder: dict[str, Any]) -> None:
    data = lock(tmp_path, **holder)
    with pytest.raises(RunFolderInUseError, match="is in use by another run"):
        Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    assert snapshot(tmp_path) == {"run/run.lock": data}


def test_an_unreadable_lock_is_respected_and_named(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.lock").write_bytes(b"not a lock")
    with pytest.raises(RunFolderInUseError, match=r"\(its lock is unreadable\).*or delete .*run\.lock"):
        Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    assert snapshot(tmp_path) == {"run/run.lock": b"not a lock"}


@pytest.mark.parametrize("holder", [
    pytest.param({"pid": "dead"}, id="same host, pid dead"),
    pytest.param({"pid": os.getpid()}, id="same host, this pid, not held here"),
    pytest.param({"host": "another-host", "heartbeat": time.time() - STALE_AFTER - 5}, id="heartbeat too old"),
])
def test_a_lock_whose_run_is_gone_is_taken_over_silently(
    tmp_path: Path, holder: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    lock(tmp_path, **{**holder, "pid": dead_pid() if holder.get("pid") == "dead" else holder.get("pid", 1)})
    result = Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    assert result.state["final_checkpoint"] and not (tmp_path / "run" / "run.lock").exists()
    assert capsys.readouterr().err == ""


def test_staleness_rules() -> None:
    now, here = time.time(), socket.gethostname()

    def holder(**fields: Any) -> Holder:
        return Holder(**{"owner": "x", "host": here, "pid": os.getppid(), "started": now, "heartbeat": now,
                         "pid_space": current_pid_space(), **fields})

    assert stale_reason(holder(), now) is None
    assert stale_reason(holder(host="elsewhere", pid=dead_pid()), now) is None  # a pid elsewhere says nothing
    assert stale_reason(holder(pid_space="pid:[1]", pid=dead_pid()), now) is None  # nor one in another container
    assert "is gone" in (stale_reason(holder(pid=dead_pid()), now) or "")
    assert "earlier process" in (stale_reason(holder(pid=os.getpid()), now) or "")
    assert "no heartbeat for 901 s" == stale_reason(holder(host="elsewhere", heartbeat=now - 901), now)
    assert stale_reason(holder(host="elsewhere", heartbeat=now - 60), now, stale_after=120) is None
    assert Holder.parse(b'{"owner": "x", "host": "h", "pid": 0, "started": 1, "heartbeat": 1}') is None
    assert Holder.parse(b"[]") is None and Holder.parse(None) is None


def test_a_failing_run_releases_its_folder(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, CFG, manifest="test", ports={**blob(tmp_path), "training_client": CrashAfter(5)})
    assert not (tmp_path / "run" / "run.lock").exists()
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    assert next(e for e in resumed.events if e.name == "train.resume").data["step"] == 4


def test_dry_run_touches_no_lock(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    with RunLease(LocalBlobStore(tmp_path), "run"):
        before = snapshot(tmp_path)
        result = Runtime.run(SlBasic, CFG, manifest="test", ports={"blob_store": store}, dry_run=True, out=None)
        assert result.dry_run and store.calls == [] and snapshot(tmp_path) == before


def test_the_lease_holds_on_s3_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal and release through the S3 store (a moto server on 127.0.0.1)."""
    from tests.adapters.conftest import BUCKET, FAKE_CREDENTIALS, moto_server

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        prefix = f"lease-{time.monotonic_ns()}"
        ports = {"blob_store": {"adapter": "s3", "bucket": BUCKET, "prefix": prefix, "endpoint_url": endpoint}}
        cfg = {**CFG, "save_every": 5, "eval_every": 0}  # fewer requests to moto
        with Runtime.open("test", ports) as opened:
            store: Any = opened.blob_store
            with RunLease(store, "run"):
                with pytest.raises(RunFolderInUseError, match=(
                        rf"^run folder s3://{BUCKET}/{prefix}/run is in use by another run \(host .*\): wait for it, "
                        rf"pick another log_path, or delete s3://{BUCKET}/{prefix}/run/run.lock if that run is dead$")):
                    Runtime.run(SlBasic, cfg, manifest="test", ports=ports)
                assert store.list() == ["run/run.lock"]
            Runtime.run(SlBasic, cfg, manifest="test", ports=ports)
            assert "run/checkpoints.jsonl" in store.list() and "run/run.lock" not in store.list()


# -- the heartbeat, and a lease lost while running -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_beats_at_most_every_interval_unless_forced(tmp_path: Path) -> None:
    store, clock = RecordingStore(tmp_path), Clock()
    with RunLease(store, "run", heartbeat_every=60, clock=clock) as lease:
        clock.now += 59
        lease.heartbeat(force=False)
        assert Holder.parse(store.read("run/run.lock")).heartbeat == 1_000_000.0  # type: ignore[union-attr]
        clock.now += 2
        lease.heartbeat(force=False)
        assert Holder.parse(store.read("run/run.lock")).heartbeat == 1_000_061.0  # type: ignore[union-attr]
        clock.now += 1
        lease.heartbeat()
        assert Holder.parse(store.read("run/run.lock")).heartbeat == 1_000_062.0  # type: ignore[union-attr]
        assert Holder.parse(store.read("run/run.lock")).started == 1_000_000.0  # type: ignore[union-attr]
    assert [op for op, _key in store.calls] == ["create", "write", "write", "delete"]


def test_a_lease_taken_from_a_run_stops_it_and_is_left_to_its_new_holder(tmp_path: Path) -> None:
    """Another run took the lock over (this one looked dead): this run fails at its next checkpoint, before
    recording it, rather than keep writing, and leaves the other's lock and files alone when it ends."""
    theirs = {"owner": "other", "host": "another-host", "pid": 1, "started": time.time(), "heartbeat": time.time()}

    taken: dict[str, bytes] = {}

    class TakeOver:
        def handle(self, event: Event) -> None:
            if event.name == "train.checkpoint" and event.data["step"] == 4:
                (tmp_path / "run" / "run.lock").write_text(json.dumps(theirs))
                taken.update(snapshot(tmp_path))

        def close(self) -> None:
            pass

    with pytest.raises(StageError, match=r"RunFolderInUseError: run folder .* is no longer this run's: its lock "
                                         r".* now names another run \(host another-host, pid 1"):
        Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path), sinks=[TakeOver()])
    assert json.loads((tmp_path / "run" / "run.lock").read_text()) == theirs
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # taken after step 4's record; found before step 6's record was written
    assert snapshot(tmp_path) == taken  # no metric row, log line or loss curve written after the takeover


def test_a_deleted_lock_stops_the_run_too(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    lease = RunLease(store, "run")
    lease.acquire()
    store.delete("run/run.lock")
    with pytest.raises(RunFolderInUseError, match="its lock .*run.lock was deleted; this run stops"):
        lease.heartbeat()
    lease.release()
    assert store.list() == []


# -- resuming a folder under another config ----------------------------------------------------------------


def test_a_folder_with_checkpoints_refuses_another_config_and_changes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StageError):
        Runtime.run(SlBasic, CFG, manifest="test", ports={**blob(tmp_path), "training_client": CrashAfter(7)})
    before = snapshot(tmp_path)
    changed = {**CFG, "batch_size": 4, "learning_rate": 3e-4}
    with pytest.raises(ConfigError) as info:
        Runtime.run(SlBasic, changed, manifest="test", ports=blob(tmp_path))
    assert snapshot(tmp_path) == before  # no lock left, no run file rewritten
    message = str(info.value)
    assert not isinstance(info.value, RunFolderInUseError) and "\n" not in message
    assert message == (
        f"log_path 'run' holds checkpoints of a run with another config ({tmp_path / 'run' / 'config.json'}): "
        "batch_size: saved 8, now 4; learning_rate: saved 1e-05, now 0.0003; "
        "rerun with the saved values, or pick a new log_path"
    )
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))  # the saved values: resumes
    assert next(e for e in resumed.events if e.name == "train.resume").data["step"] == 6


def test_a_folder_without_checkpoints_takes_the_new_config(tmp_path: Path) -> None:
    """Nothing was trained there yet (a run that failed before its first checkpoint): nothing to mix up."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({**CFG, "batch_size": 2}))
    Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 8


def test_a_config_holding_a_secret_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    secret = "tml-Zq4NsecretLeaseW7x"
    settings = Settings(tinker_api_key=secret)
    pasted = {**CFG, "model_name": f"org/{secret}", "save_every": 0, "eval_every": 0}
    with pytest.raises(ConfigError, match="'model_name' in the config holds the secret TINKER_API_KEY") as info:
        Runtime.run(SlBasic, pasted, manifest="test", ports=blob(tmp_path), settings=settings)
    assert secret not in str(info.value) and secret not in repr(info.value.args)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_saved_config_is_named(tmp_path: Path) -> None:
    Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
    (tmp_path / "run" / "config.json").write_text("{cut sho")
    with pytest.raises(ConfigError, match=r"saved config .*config\.json cannot be read \(config\.json is not JSON .*restore it, or pick"):
        Runtime.run(SlBasic, CFG, manifest="test", ports=blob(tmp_path))
