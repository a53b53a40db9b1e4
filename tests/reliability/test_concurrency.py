"""Runs at the same time: two in one process (threads), two processes on one blob root (a local folder,
and S3 through moto), and two processes on the same log path.

Different log paths must not notice each other: each run's folder holds what the same run done alone
holds (metrics, checkpoints, config, spec, log lines; wall-clock fields aside), nothing of the other run,
and each run's telemetry events are its own. Two runs on the *same* log path are a mistake the cookbook
refuses: the run folder's lease (``run.lock``) lets the first in, the second fails at once naming the folder
and the run holding it, and the folder ends as one run alone leaves it (``test_same_log_path_*``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tinkex_cookbook import Runtime
from tinkex_cookbook.adapters.blobs.keys import TEMP_PREFIX
from tinkex_cookbook.pipeline import MemorySink

REPO = Path(__file__).resolve().parents[2]
TIMING = re.compile(r"(^|_)seconds$|^tokens_per_second$")
"""Wall-clock fields: the only ones two equal runs may differ in."""
RUN_FILES = ("config.json", "spec.json", "manifest.json", "metrics.jsonl", "checkpoints.jsonl", "run.log")

TEST_A = {"dataset": "chitchat", "batch_size": 2, "num_epochs": 1, "test_size": 8, "eval_every": 5,
          "save_every": 3, "learning_rate": 1e-4, "log_path": "a"}
TEST_B = {**TEST_A, "batch_size": 3, "learning_rate": 3e-4, "seed": 7, "log_path": "b"}
"""Two different runs on `test` (44 and 30 steps): long enough to overlap, different enough that a row
of one in the other's folder shows."""
LOCAL_A = {"model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 2, "train_size": 12, "test_size": 4,
           "max_length": 64, "lora_rank": 4, "learning_rate": 1e-2, "eval_every": 3, "save_every": 2,
           "log_path": "a"}
LOCAL_B = {**LOCAL_A, "learning_rate": 3e-2, "seed": 5, "log_path": "b"}


# -- what a run left behind, without its wall-clock fields ------------------------------------------------------


def without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def json_lines(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode().splitlines()]


def log_lines(data: bytes) -> list[str]:
    """``run.log`` without its timestamps and durations, and without the lines of tasks that were slow this
    time (a run sharing the CPU with another crosses the threshold where it alone would not)."""
    lines = [line.split(" ", 1)[1] for line in data.decode().splitlines()]
    lines = [line for line in lines if not re.search(r": \d+/\d+ in [\d.]+ s$", line)]
    return [re.sub(r"(seconds|tokens_per_second)=\S+", r"\1=*", line) for line in lines]


def renamed(text: str, paths: dict[str, str] | None) -> str:
    for path, name in sorted((paths or {}).items(), key=lambda item: -len(item[0])):
        text = text.replace(path, name)
    return text


def folder(read: Callable[[str], bytes], root_text: str, paths: dict[str, str] | None = None) -> dict[str, Any]:
    """A run folder's files, parsed, wall-clock fields dropped, the blob root replaced by ``ROOT`` and
    checkpoint paths by their names in ``paths`` (the local backend names every model uniquely)."""
    files = {name: renamed(read(name).decode(), paths).encode() for name in RUN_FILES}
    return {
        "config.json": json.loads(files["config.json"]), "spec.json": json.loads(files["spec.json"]),
        "manifest.json": json.loads(files["manifest.json"].decode().replace(root_text, "ROOT"))["ports"],
        "metrics.jsonl": without_timing(json_lines(files["metrics.jsonl"])),
        "checkpoints.jsonl": [_digests_named(row) for row in json_lines(files["checkpoints.jsonl"])],
        "run.log": log_lines(files["run.log"]),
    }


def _digests_named(row: dict[str, Any]) -> dict[str, Any]:
    """A record with which files it hashed, not their digests: safetensors writes its header's metadata in a
    random order, so equal checkpoints differ in bytes (the weights are compared tensor by tensor in
    ``lora_weights``)."""
    return {**row, "sha256": sorted(row["sha256"])} if "sha256" in row else row


def local_folder(root: Path, log_path: str, paths: dict[str, str] | None = None) -> dict[str, Any]:
    return folder(lambda name: (root / log_path / name).read_bytes(), str(root), paths)


def event_view(events: list[Any], paths: dict[str, str] | None = None) -> list[tuple[str, Any]]:
    return [(event.name, json.loads(renamed(json.dumps(without_timing(event.data)), paths))) for event in events]


def blob(root: Path) -> dict[str, Any]:
    return {"blob_store": {"adapter": "local", "root": str(root)}}


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released at the same instant; their results, or the first error raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def target(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]
    return results


def overlapped(first: Any, second: Any) -> bool:
    """Did two runs' step events interleave in time (so the test exercised concurrency at all)?"""
    def span(result: Any) -> tuple[float, float]:
        times = [e.time for e in result.events if e.name == "train.step"]
        return min(times), max(times)

    (a0, a1), (b0, b1) = span(first), span(second)
    return a0 < b1 and b0 < a1


# -- two runs in one process -----------------------------------------------------------------------------------


def run_with_sink(cfg: dict[str, Any], manifest: str, root: Path, **ports: Any) -> tuple[Any, MemorySink]:
    sink = MemorySink()
    result = Runtime.run("sl_basic", cfg, manifest=manifest, ports={**blob(root), **ports}, sinks=[sink])
    return result, sink


def assert_alone_and_together_agree(solo_root: Path, shared_root: Path, solo: dict[str, Any],
                                    both: dict[str, Any], names: dict[str, dict[str, str]] | None = None) -> None:
    for log_path in ("a", "b"):
        alone, together_ = solo[log_path], both[log_path]
        paths = (names or {}).get(log_path)
        assert event_view(together_[0].events, paths) == event_view(alone[0].events, paths), log_path
        assert event_view(together_[1].events) == event_view(together_[0].events), log_path  # its sink: its own
        assert without_timing(together_[0].metrics) == without_timing(alone[0].metrics), log_path
        assert local_folder(shared_root, log_path, paths) == local_folder(solo_root / log_path, log_path, paths)
    shared = sorted(p.relative_to(shared_root).as_posix() for p in shared_root.rglob("*") if p.is_file())
    assert not [p for p in shared if Path(p).name.startswith(TEMP_PREFIX)]
    assert {p.split("/")[0] for p in shared} <= {"a", "b", "local_torch"}
    for log_path, other in (("a", "b"), ("b", "a")):  # nothing of one run in the other's folder
        mine = (shared_root / log_path / "config.json").read_text()
        assert json.loads(mine)["log_path"] == log_path
        for name in RUN_FILES:
            assert f'"log_path": "{other}"' not in (shared_root / log_path / name).read_text()


def test_two_runs_in_threads_on_test_match_their_solo_runs(tmp_path: Path) -> None:
    solo = {cfg["log_path"]: run_with_sink(cfg, "test", tmp_path / "solo" / cfg["log_path"])
            for cfg in (TEST_A, TEST_B)}
    both = together(*(lambda cfg=cfg: run_with_sink(cfg, "test", tmp_path / "shared") for cfg in (TEST_A, TEST_B)))
    assert overlapped(both[0][0], both[1][0])
    assert_alone_and_together_agree(tmp_path / "solo", tmp_path / "shared", solo, dict(zip("ab", both, strict=True)))


def test_two_runs_in_threads_sharing_one_blob_store_object(tmp_path: Path) -> None:
    """One store object handed to both runs (a notebook's ``ports={"blob_store": store}``): still apart.
    (The saved manifest.json then names the manifest's binding, not the object: solo runs get objects too.)"""
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    solo = {}
    for cfg in (TEST_A, TEST_B):
        root = tmp_path / "solo" / cfg["log_path"]
        solo[cfg["log_path"]] = run_with_sink(cfg, "test", root, blob_store=LocalBlobStore(root))
    store = LocalBlobStore(tmp_path / "shared")
    both = together(*(lambda cfg=cfg: run_with_sink(cfg, "test", tmp_path / "shared", blob_store=store)
                      for cfg in (TEST_A, TEST_B)))
    assert_alone_and_together_agree(tmp_path / "solo", tmp_path / "shared", solo, dict(zip("ab", both, strict=True)))


def local_checkpoint_names(root: Path, log_path: str) -> dict[str, str]:
    """``local://...`` checkpoint path -> ``<log_path>:<checkpoint name>:<kind>``: the local backend gives every
    model a unique folder, so equal runs differ in their paths but not in what the paths hold."""
    names = {}
    for row in json_lines((root / log_path / "checkpoints.jsonl").read_bytes()):
        for kind in ("state_path", "sampler_path"):
            if row.get(kind):
                names[row[kind]] = f"{log_path}:{row['name']}:{kind}"
        for key, value in (row.get("extra") or {}).items():
            names[value] = f"{log_path}:{row['name']}:{key}"
    return names


def lora_weights(root: Path, uri: str) -> dict[str, Any]:
    from tinkex_cookbook.adapters.training.local_checkpoints import decode_checkpoint

    return decode_checkpoint((root / uri.removeprefix("local://")).read_bytes())["lora"]


def test_two_runs_in_threads_on_local_match_their_solo_runs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    manifest = "local"
    one_thread = {"training_client": {"adapter": "local_torch", "threads": 1}}
    solo = {cfg["log_path"]: run_with_sink(cfg, manifest, tmp_path / "solo" / cfg["log_path"], **one_thread)
            for cfg in (LOCAL_A, LOCAL_B)}
    both = together(*(lambda cfg=cfg: run_with_sink(cfg, manifest, tmp_path / "shared", **one_thread)
                      for cfg in (LOCAL_A, LOCAL_B)))
    assert overlapped(both[0][0], both[1][0])
    names = {}
    for log_path in "ab":
        names[log_path] = {**local_checkpoint_names(tmp_path / "solo" / log_path, log_path),
                           **local_checkpoint_names(tmp_path / "shared", log_path)}
    assert_alone_and_together_agree(tmp_path / "solo", tmp_path / "shared", solo, dict(zip("ab", both, strict=True)),
                                    names)
    for log_path, (result, _sink) in zip("ab", both, strict=True):
        alone = lora_weights(tmp_path / "solo" / log_path, solo[log_path][0].state["final_checkpoint"])
        shared = lora_weights(tmp_path / "shared", result.state["final_checkpoint"])
        assert alone.keys() == shared.keys() and all(torch.equal(alone[k], shared[k]) for k in alone), log_path


# -- processes: the CLI started twice at the same instant ---------------------------------------------------------

DRIVER = """
import os, sys, time
go = sys.argv[1]
import tinkex_cookbook.cli as cli
from tinkex_cookbook import Runtime  # every import done before the start line
open(f"{go}.ready-{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
sys.argv = ["tinkex-cookbook", *sys.argv[2:]]
cli.main()
"""
"""The CLI's ``main`` (what the ``tinkex-cookbook`` script calls), held at a start line so that processes
begin their runs within a millisecond or two of each other rather than a startup apart."""


def cli_together(runs: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list[Any]:
    """``tinkex-cookbook ARGS`` once per entry, all released at one instant; finished processes."""
    go = cwd / f"go-{time.monotonic_ns()}"
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "PYTHONWARNINGS": "error", **(env or {})}
    processes = [subprocess.Popen([sys.executable, "-c", DRIVER, str(go), *args], cwd=cwd, env=environ,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in runs]
    deadline = time.monotonic() + 120
    while len(list(cwd.glob(f"{go.name}.ready-*"))) < len(runs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), [
            p.communicate() for p in processes if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    done = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def write_manifest(path: Path, ports: dict[str, Any], extends: str = "test") -> str:
    path.write_text(json.dumps({"extends": extends, "description": "concurrency", "ports": ports}))
    return str(path)


def cli_args(manifest: str, cfg: dict[str, Any]) -> list[str]:
    return ["run", "sl_basic", "-m", manifest, "-q", *(f"{k}={v}" for k, v in cfg.items())]


@pytest.mark.parametrize("extends", ["test", pytest.param("local", marks=pytest.mark.long)])
def test_two_processes_on_one_local_root_match_their_solo_runs(tmp_path: Path, extends: str) -> None:
    if extends == "local":
        pytest.importorskip("torch")
    configs = (TEST_A, TEST_B) if extends == "test" else (LOCAL_A, LOCAL_B)
    ports = {} if extends == "test" else {"training_client": {"adapter": "local_torch", "threads": 1}}
    shared = tmp_path / "shared"
    manifest = write_manifest(tmp_path / "shared.yaml", {**blob(shared), **ports}, extends)
    done = cli_together([cli_args(manifest, cfg) for cfg in configs], tmp_path)
    assert [p.returncode for p in done] == [0, 0], [p.stderr.decode()[-2000:] for p in done]
    for cfg in configs:
        log_path, solo_root = cfg["log_path"], tmp_path / "solo" / cfg["log_path"]
        Runtime.run("sl_basic", cfg, manifest=extends, ports={**blob(solo_root), **ports})
        names = {**local_checkpoint_names(shared, log_path), **local_checkpoint_names(solo_root, log_path)}
        assert local_folder(shared, log_path, names) == local_folder(solo_root, log_path, names)
    files = [p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file()]
    assert {f.split("/")[0] for f in files} <= {"a", "b"}  # checkpoint weights live in the run folders
    assert not [f for f in files if Path(f).name.startswith(TEMP_PREFIX)]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from tests.adapters.conftest import moto_server

    with moto_server() as endpoint:
        yield endpoint


def s3_folder(endpoint: str, prefix: str, log_path: str) -> dict[str, Any]:
    """Read through the S3 store: appended files are the key's object plus its numbered parts."""
    from tests.adapters.conftest import BUCKET
    from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore

    store = S3BlobStore(BUCKET, prefix, endpoint)
    return folder(lambda name: store.read(f"{log_path}/{name}"), prefix)


def test_two_processes_on_one_s3_prefix_match_their_solo_runs(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.adapters.conftest import BUCKET, FAKE_CREDENTIALS, raw_s3_client

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    prefix = f"concurrent-{time.monotonic_ns()}"

    def s3(where: str) -> dict[str, Any]:
        return {"blob_store": {"adapter": "s3", "bucket": BUCKET, "prefix": where, "endpoint_url": moto_endpoint}}

    slower = {"save_every": 10}  # fewer requests to moto
    manifest = write_manifest(tmp_path / "s3.yaml", s3(prefix))
    done = cli_together([cli_args(manifest, {**TEST_A, **slower}), cli_args(manifest, {**TEST_B, **slower})],
                        tmp_path)
    assert [p.returncode for p in done] == [0, 0], [p.stderr.decode()[-2000:] for p in done]
    for cfg in (TEST_A, TEST_B):
        solo = f"{prefix}-solo-{cfg['log_path']}"
        Runtime.run("sl_basic", {**cfg, **slower}, manifest="test", ports=s3(solo))
        assert s3_folder(moto_endpoint, prefix, cfg["log_path"]) == s3_folder(moto_endpoint, solo, cfg["log_path"])
    keys = [o["Key"] for o in raw_s3_client(moto_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
            .get("Contents", [])]
    assert sorted({k.split("/")[1] for k in keys}) == ["a", "b"]


# -- the same log path twice at once -------------------------------------------------------------------------

SAME = {"dataset": "chitchat", "batch_size": 2, "num_epochs": 1, "test_size": 8, "eval_every": 10, "save_every": 1,
        "log_path": "run"}
"""About 45 steps with a checkpoint after each: many read-modify-writes of ``checkpoints.jsonl`` to race."""


def same_path_race(tmp_path: Path) -> tuple[list[Any], Path, Path]:
    shared, solo = tmp_path / "shared", tmp_path / "solo"
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(tmp_path / "same.yaml", blob(shared))
    done = cli_together([cli_args(manifest, SAME), cli_args(manifest, SAME)], tmp_path)
    Runtime.run("sl_basic", SAME, manifest="test", ports=blob(solo))
    return done, shared, solo


def checkpoint_damage(shared: Path, solo: Path) -> dict[str, int]:
    """How ``checkpoints.jsonl`` of the raced folder differs from the solo run's: steps recorded twice,
    steps lost, and records out of step order."""
    def rows(root: Path) -> list[dict[str, Any]]:
        return json_lines((root / "run" / "checkpoints.jsonl").read_bytes())

    raced, alone = [r["step"] for r in rows(shared) if not r.get("final")], [r["step"] for r in rows(solo)
                                                                             if not r.get("final")]
    counts = Counter(raced)
    return {"records": len(raced), "solo records": len(alone), "repeated": sum(c - 1 for c in counts.values()),
            "lost": len(set(alone) - set(raced)), "out of order": sum(a > b for a, b in pairwise(raced)),
            "final records": sum(bool(r.get("final")) for r in rows(shared))}


@pytest.fixture(scope="module")
def same_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Path, Path]:
    return same_path_race(tmp_path_factory.mktemp("same-path"))


def test_same_log_path_twice_never_tears_a_file(same_path: tuple[list[Any], Path, Path]) -> None:
    """What holds today: writes are atomic, so whatever the race, every file is whole and every line
    parses; each process either finished or failed with a one-line error, never a traceback."""
    done, shared, _solo = same_path
    for process in done:
        assert process.returncode in (0, 2), process.stderr.decode()[-2000:]
        assert b"Traceback" not in process.stderr
    for name in RUN_FILES:
        data = (shared / "run" / name).read_bytes()
        if name.endswith(".jsonl"):
            json_lines(data)
        elif name.endswith(".json"):
            json.loads(data)
    assert not [p for p in shared.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_same_log_path_twice_leaves_one_run_or_refuses_the_second(same_path: tuple[list[Any], Path, Path]) -> None:
    """The contract: the second run fails at once with a one-line error naming the folder and saying it is
    in use, and the folder ends exactly as one run alone leaves it."""
    done, shared, solo = same_path
    codes = sorted(p.returncode for p in done)
    refused = [p for p in done if p.returncode != 0]
    assert codes == [0, 2], codes
    assert b"in use" in refused[0].stderr and b"run" in refused[0].stderr
    assert local_folder(shared, "run") == local_folder(solo, "run")
    assert checkpoint_damage(shared, solo)["repeated"] == 0


@pytest.mark.long
def test_same_log_path_race_damage_over_rounds(tmp_path: Path) -> None:
    """Several rounds of the race: every time one run is refused and ``checkpoints.jsonl`` is undamaged."""
    rounds = [same_path_race(tmp_path / f"round-{i}") for i in range(5)]
    damage = [checkpoint_damage(shared, solo) for _done, shared, solo in rounds]
    print("\nsame log path, 5 rounds:", json.dumps(damage))
    assert all(sorted(p.returncode for p in done) == [0, 2] for done, _s, _o in rounds)
    assert all(d["records"] == d["solo records"] and d["repeated"] == d["lost"] == d["out of order"] == 0
               for d in damage)
