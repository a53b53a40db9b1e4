"""Crash anywhere, resume, get the same run.

A real process running a recipe on the `local` manifest is SIGKILLed at seeded random points: at
a chosen blob write (before it, half-way through it, with its temp file complete but not renamed,
right after it) or at a random wall-clock moment. After every kill nothing already written may be
damaged: every line of ``checkpoints.jsonl`` parses, every checkpoint it lists loads and equals
the uninterrupted run's, ``metrics.jsonl`` holds every row up to the last checkpoint, and no file
is visible half-written. Started again with the same ``log_path`` (after one kill or several in a
row) the run must end exactly as an uninterrupted run with the same seed: the same metrics rows
(wall-clock fields aside), the same checkpoint records and bit-identical weights and optimizer
state in every checkpoint. The same holds with the blob store on S3 (a moto server on 127.0.0.1).

Kill points come from ``random.Random(seed)``; every failure message names the seed, the plan and
the child's notes (each write it made, where it died). The short form uses fixed seeds; the long
form (``-m long``) tries many more points from a fresh seed each time. ``CRASH_RESUME_SEED=N``
replays a seed in either. Children are forked from a forkserver that has torch imported already
(``crash_child.start``); one long test also runs the child as ``python -m``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.faults import TIMING
from tests.reliability import crash_child
from tinkex_cookbook.adapters.blobs.keys import TEMP_PREFIX
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.training.local_checkpoints import (
    checkpoint_key,
    decode_checkpoint,
    read_checkpoint,
)
from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.train.checkpoints import CheckpointRecord, load_checkpoints

RECIPES = ["dpo", "rl", "sl"]
LONG_RECIPES = sorted(crash_child.RECIPES)
WALL_CLOCK = (*TIMING, "sample_seconds")
"""Metric fields that measure time, and so differ between otherwise equal runs."""
LOG = "run"
TIMEOUT = 120.0
SEED = int(os.environ.get("CRASH_RESUME_SEED", "20261123"))
KEYS = (None, "checkpoints.jsonl", "metrics.jsonl", ".safetensors")
"""Which writes a write kill counts: all, or those whose key contains this."""
BUCKET = "crash-resume"
WINDOW = {"local": 1.0, "s3": 2.0}
"""Seconds a child's uninterrupted run takes, about: wall-clock kills fall in this window."""
FIGURES: dict[tuple[str, str], dict[str, int]] = {}


# -- what a run leaves, and how to compare it ------------------------------------------------------

def normalize(path: str | None) -> str | None:
    """A checkpoint path without its training session's random model id, which every attempt renews."""
    return None if path is None else re.sub(r"checkpoints/[^/]+/", "checkpoints/*/", path)


def record_row(record: CheckpointRecord) -> dict[str, Any]:
    return {"name": record.name, "step": record.step, "epoch": record.epoch, "final": record.final,
            "tokens_seen": record.tokens_seen, "state_path": normalize(record.state_path),
            "sampler_path": normalize(record.sampler_path),
            "extra": {k: normalize(v) for k, v in sorted(record.extra.items())}}


def record_paths(record: CheckpointRecord) -> list[str]:
    return [p for p in (record.state_path, record.sampler_path, *record.extra.values()) if p]


def same(a: Any, b: Any) -> bool:
    """Exact equality through dicts, lists and tensors (bit-identical values, same dtype and shape)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclass
class RunFiles:
    """A run folder as a resume sees it: metric rows, checkpoint records, and the checkpoints themselves."""

    rows: list[dict[str, Any]]
    records: list[CheckpointRecord]
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Any) -> RunFiles:
        """Through the loaders a resume uses: a damaged line or checkpoint fails here as it would there."""
        rows = [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
                for line in text(store, f"{LOG}/metrics.jsonl").splitlines()]
        records = load_checkpoints(store, f"{LOG}/checkpoints.jsonl")
        payloads = {normalize(p): read_checkpoint(store, p) for r in records for p in record_paths(r)}
        return cls(rows, records, payloads)  # type: ignore[arg-type]

    def rows_through(self, step: int) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["step"] <= step]

    def steps(self) -> list[int]:
        return [row["step"] for row in self.rows if row["event"] == "train.step"]


def text(store: Any, key: str) -> str:
    try:
        return store.read(key).decode()
    except BlobNotFoundError:
        return ""


# -- storage: a local folder, or a prefix in a bucket on a moto server --------------------------------

@dataclass
class Storage:
    kind: str
    argv: list[str]
    store: Any
    root: Path | None = None

    def temp_files(self) -> list[Path]:
        """In-flight write files a killed writer left (the local store's; S3 has none to leave)."""
        return sorted(self.root.rglob(f"{TEMP_PREFIX}*")) if self.root else []


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    import boto3

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    try:
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test")
        client.create_bucket(Bucket=BUCKET)
        client.close()
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def make_storage(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """``make_storage(kind, name)``: a fresh, empty run store of that kind."""
    stores: list[Any] = []

    def make(kind: str, name: str) -> Storage:
        if kind == "local":
            root = tmp_path / name
            return Storage(kind, ["--root", str(root)], LocalBlobStore(root), root)
        from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore

        endpoint = request.getfixturevalue("moto_endpoint")
        for key, value in crash_child.FAKE_AWS.items():
            monkeypatch.setenv(key, value)
        prefix = f"{request.node.name}/{name}".replace("[", "-").replace("]", "")
        store = S3BlobStore(BUCKET, prefix, endpoint, "us-east-1")
        stores.append(store)
        return Storage(kind, ["--s3", endpoint, BUCKET, prefix], store)

    yield make
    for store in stores:
        store.close()


# -- the uninterrupted reference ------------------------------------------------------------------

class References(dict[str, RunFiles]):
    """Each recipe run once, uninterrupted, in this process, when a test first asks for it (the same
    numbers as a child's run: ``test_a_child_process_run_equals_the_in_process_reference``)."""

    def __init__(self, folders: pytest.TempPathFactory) -> None:
        super().__init__()
        self._folders = folders

    def __missing__(self, recipe: str) -> RunFiles:
        store = LocalBlobStore(self._folders.mktemp(f"reference-{recipe}"))
        before = torch.get_num_threads()
        try:
            crash_child.run(recipe, store)
        finally:
            torch.set_num_threads(before)
        self[recipe] = RunFiles.read(store)
        return self[recipe]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    crash_child.warm()  # the forkserver imports torch while this process runs the references
    return References(tmp_path_factory)


# -- killing and restarting -----------------------------------------------------------------------

@dataclass(frozen=True)
class Kill:
    """Where an attempt dies: at its ``write``-th blob write (of keys containing ``key``), or after
    ``delay`` seconds of wall-clock time."""

    write: int | None = None
    mode: str = "before"
    key: str | None = None
    delay: float | None = None

    def argv(self) -> list[str]:
        if self.write is None:
            return []
        return ["--kill-at-write", str(self.write), "--kill-mode", self.mode,
                *(["--kill-key", self.key] if self.key else [])]

    def __str__(self) -> str:
        if self.delay is not None:
            return f"at {self.delay:.3f}s"
        return f"write {self.write}{f' of {self.key}' if self.key else ''} ({self.mode})"


def random_kill(rng: random.Random, kind: str) -> Kill:
    modes = crash_child.KILL_MODES if kind == "local" else ("before", "partial", "after")
    if rng.random() < 0.35:
        return Kill(delay=round(rng.uniform(0.0, WINDOW[kind]), 3))
    key = rng.choice(KEYS)
    return Kill(write=rng.randint(1, 20 if key is None else 4), mode=rng.choice(modes), key=key)


def attempt(recipe: str, storage: Storage, kill: Kill, notes: Path) -> int:
    """One run in a child process, killed as ``kill`` says; its exit code."""
    process = crash_child.start([recipe, *storage.argv, *kill.argv()], notes)
    try:
        process.join(kill.delay if kill.delay is not None else TIMEOUT)
        if kill.delay is not None and process.is_alive():
            process.kill()
            with notes.open("a") as handle:
                handle.write(f"kill by parent after {kill.delay:.3f}s\n")
        process.join(TIMEOUT)
        if process.is_alive():
            pytest.fail(f"{recipe} child hung for {TIMEOUT}s; notes:\n{notes.read_text()}")
        assert process.exitcode is not None
        return process.exitcode
    finally:
        if process.is_alive():  # a hung child, or the test interrupted: never leave one running
            process.kill()
            process.join()
        process.close()


def check_after_kill(storage: Storage, reference: RunFiles, why: str) -> int:
    """Nothing written so far is damaged or ahead of what a resume needs; the last checkpoint's step."""
    files = RunFiles.read(storage.store)
    loaded = {checkpoint_key(p) for r in files.records for p in record_paths(r)}
    visible = storage.store.list("")
    for key in visible:
        if key in loaded:
            continue
        data = storage.store.read(key)
        if key.endswith(".safetensors"):
            decode_checkpoint(data)
        elif key.endswith(".jsonl"):
            [json.loads(line) for line in data.decode().splitlines()]
        elif key.endswith(".json"):
            json.loads(data)
        elif key.endswith(".html"):
            assert data.rstrip().endswith(b"</html>"), f"{key} is cut short; {why}"
        else:
            data.decode()
    assert not any(Path(key).name.startswith(TEMP_PREFIX) for key in visible), why
    expected = [record_row(r) for r in reference.records[: len(files.records)]]
    assert [record_row(r) for r in files.records] == expected, f"checkpoint records differ; {why}"
    for path, payload in files.payloads.items():
        assert same(payload, reference.payloads[path]), f"checkpoint {path} differs; {why}"
    last = files.records[-1].step if files.records else 0
    if files.records:  # before the first checkpoint a resume starts over, rewriting every row (step 0's too)
        assert files.rows_through(last) == reference.rows_through(last), (
            f"metrics.jsonl lost or changed rows at or before checkpoint step {last}; {why}")
    return last


@dataclass
class Outcome:
    kills: int = 0
    equal: bool = False
    lost_steps: int = 0
    temp_files: int = 0


def crash_and_resume(
    recipe: str, storage: Storage, kills: list[Kill], reference: RunFiles, notes: Path, seed: int,
) -> Outcome:
    """Run ``recipe`` dying at each of ``kills`` in turn (one attempt each, same log path), then once to
    the end; check the store after every kill and the finished run against ``reference``."""
    plan = ", ".join(map(str, kills))
    outcome = Outcome()
    for number, kill in enumerate(kills, start=1):
        why = f"{recipe} on {storage.kind}, seed {seed}, plan [{plan}], after kill {number} ({kill}); notes {notes}"
        code = attempt(recipe, storage, kill, notes)
        if code == 0:  # the run finished before its kill point came: the resume below finds it done
            break
        assert code == -signal.SIGKILL, f"exit {code}; {why}\n{notes.read_text()[-3000:]}"
        outcome.kills += 1
        check_after_kill(storage, reference, why)
    why = f"{recipe} on {storage.kind}, seed {seed}, plan [{plan}]; notes {notes}"
    code = attempt(recipe, storage, Kill(), notes)
    assert code == 0, f"final resume exited {code}; {why}\n{notes.read_text()[-3000:]}"
    done = RunFiles.read(storage.store)
    outcome.lost_steps = len(set(reference.steps()) - set(done.steps()))
    assert done.steps() == reference.steps(), f"steps lost or repeated; {why}"
    assert done.rows == reference.rows, f"metrics rows differ; {why}"
    assert [record_row(r) for r in done.records] == [record_row(r) for r in reference.records], why
    assert done.payloads.keys() == reference.payloads.keys(), why
    for path, payload in done.payloads.items():
        assert same(payload, reference.payloads[path]), f"checkpoint {path} differs; {why}"
    outcome.equal = True
    outcome.temp_files = len(storage.temp_files())
    assert outcome.temp_files == 0, f"killed writes' temp files left: {storage.temp_files()}; {why}"
    return outcome


def tally(recipe: str, kind: str, outcome: Outcome) -> None:
    figures = FIGURES.setdefault((recipe, kind), {"sequences": 0, "kills": 0, "equal": 0, "lost_steps": 0,
                                                  "temp_files_left": 0})
    figures["sequences"] += 1
    figures["kills"] += outcome.kills
    figures["equal"] += outcome.equal
    figures["lost_steps"] += outcome.lost_steps
    figures["temp_files_left"] += outcome.temp_files


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    yield
    for (recipe, kind), figures in sorted(FIGURES.items()):
        print(f"\ncrash-resume {recipe:>12} {kind:>5}: {figures}")


def seed_for(*parts: str) -> int:
    return random.Random(f"{SEED}:{':'.join(parts)}").randrange(2**32)


# -- the tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", RECIPES)
def test_a_child_process_run_equals_the_in_process_reference(
    recipe: str, references: References, make_storage: Any, tmp_path: Path,
) -> None:
    storage = make_storage("local", "child")
    assert attempt(recipe, storage, Kill(), tmp_path / "notes.txt") == 0
    outcome = crash_and_resume(recipe, storage, [], references[recipe], tmp_path / "notes.txt", 0)
    assert outcome.equal and outcome.temp_files == 0


@pytest.mark.parametrize("recipe", RECIPES)
def test_kills_right_after_checkpoint_records_lose_nothing(
    recipe: str, references: References, make_storage: Any, tmp_path: Path,
) -> None:
    """Right after the first record (metric rows not yet flushed would be lost), then, resumed, right
    after the last record before the final one (a resume with no step left to run)."""
    last = len(references[recipe].records) - 1
    kills = [Kill(write=1, mode="after", key="checkpoints.jsonl"),
             Kill(write=last - 1, mode="after", key="checkpoints.jsonl")]
    outcome = crash_and_resume(recipe, make_storage("local", "run"), kills, references[recipe],
                               tmp_path / "notes.txt", 0)
    assert outcome.kills == 2


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_killed_anywhere_and_resumed_equals_an_uninterrupted_run(
    recipe: str, kind: str, references: References, make_storage: Any, tmp_path: Path,
) -> None:
    seed = seed_for(recipe, kind, "short")
    rng = random.Random(seed)
    for sequence, count in enumerate((1, 3) if kind == "local" else (3,)):
        kills = [random_kill(rng, kind) for _ in range(count)]
        outcome = crash_and_resume(recipe, make_storage(kind, f"seq{sequence}"), kills, references[recipe],
                                   tmp_path / f"notes{sequence}.txt", seed)
        tally(recipe, kind, outcome)


@pytest.mark.long
@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("recipe", LONG_RECIPES)
def test_killed_anywhere_many_times_and_resumed_equals_an_uninterrupted_run(
    recipe: str, kind: str, references: References, make_storage: Any, tmp_path: Path,
) -> None:
    seed = int(os.environ.get("CRASH_RESUME_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    for sequence in range(12):
        kills = [random_kill(rng, kind) for _ in range(rng.randint(1, 4))]
        outcome = crash_and_resume(recipe, make_storage(kind, f"seq{sequence}"), kills, references[recipe],
                                   tmp_path / f"notes{sequence}.txt", seed)
        tally(recipe, kind, outcome)


@pytest.mark.long
def test_the_command_line_child_dies_where_told_and_a_forked_child_resumes_it(
    references: References, make_storage: Any, tmp_path: Path,
) -> None:
    """``python -m tests.reliability.crash_child`` is the same child as the forked one."""
    storage = make_storage("local", "run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKEX_", "TINKER_", "HF_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    argv = ["sl", *storage.argv, "--kill-at-write", "2", "--kill-mode", "partial", "--kill-key", ".safetensors"]
    killed = subprocess.run([sys.executable, "-m", "tests.reliability.crash_child", *argv], env=env,
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "kill write=2 mode=partial key=run/checkpoints/" in killed.stderr
    assert len(storage.temp_files()) == 1
    check_after_kill(storage, references["sl"], "after the command-line child died")
    outcome = crash_and_resume("sl", storage, [], references["sl"], tmp_path / "notes.txt", 0)
    assert outcome.equal and outcome.temp_files == 0  # the resume's first write beside it removed it
