"""One recipe run on the `local` manifest in its own process, for crash-and-resume tests to SIGKILL.

    python -m tests.reliability.crash_child RECIPE (--root DIR | --s3 ENDPOINT BUCKET PREFIX)
        [--kill-at-write N [--kill-key TEXT] --kill-mode before|partial|unrenamed|after]

The run's blob store is wrapped so the process can kill itself at its N-th blob write or append (of
keys containing TEXT, if given): before the write, with a half-written upload or temp file on the way
(an append: half its bytes at the end of the file, a torn tail), with the whole temp file written but
not renamed into place (an append: all but its last newline), or right after. Every write is noted
on stderr with its time since start, so a failure can be traced to the write it died in. Exit
status 0 means the run finished; a killed run ends with -SIGKILL, as a crashed machine leaves it.

``start`` runs the same entry point in a process forked from a forkserver that has torch and
transformers imported already, so a test can kill and restart runs many times without paying
seconds of imports for each.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

STARTED = [time.monotonic()]
NOTES: list[TextIO] = [sys.stderr]

ONE_THREAD = {"adapter": "local_torch", "threads": 1}
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "sl": ("sl_basic", {
        "model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 4, "max_length": 128, "lora_rank": 4,
        "learning_rate": 1e-2, "test_size": 4, "train_size": 20, "num_epochs": 2, "eval_every": 3,
        "save_every": 2, "log_path": "run",
    }),
    "rl": ("rl_basic", {
        "model_name": "tiny-bytes", "env": "digits", "batch_size": 2, "group_size": 4, "max_tokens": 6,
        "learning_rate": 2e-2, "lora_rank": 4, "num_steps": 6, "save_every": 2, "off_policy_steps": 1,
        "log_path": "run",
    }),
    "rl_on_policy": ("rl_basic", {
        "model_name": "tiny-bytes", "env": "digits", "batch_size": 2, "group_size": 4, "max_tokens": 6,
        "learning_rate": 2e-2, "lora_rank": 4, "num_steps": 8, "save_every": 3, "off_policy_steps": 0,
        "log_path": "run",
    }),
    "dpo": ("dpo", {
        "model_name": "tiny-bytes", "dataset": "preference_pairs", "dataset_split": "test", "test_size": 8,
        "batch_size": 4, "max_length": 128, "lora_rank": 4, "learning_rate": 2e-2, "eval_every": 3,
        "save_every": 2, "log_path": "run",
    }),
}
"""Tiny runs (well under a second each, once torch is imported) that checkpoint every few steps.
``rl`` samples off-policy, so its checkpoints also carry the prefetch sampler a resume needs;
``rl_on_policy`` saves every third of its 8 steps, so the final save follows a step it never
checkpointed. The tiny-bytes model keeps a step cheap (a 128k vocabulary would cost ~0.3 s a step)."""

KILL_MODES = ("before", "partial", "unrenamed", "after")
PRELOAD = ["torch", "transformers.models.llama.modeling_llama", "tinkex_cookbook.adapters.training.local_torch",
           "tinkex_cookbook.recipes", "tinkex_cookbook.runtime", __name__]
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def note(text: str) -> None:
    print(f"{text} t={time.monotonic() - STARTED[0]:.3f}", file=NOTES[0], flush=True)


def die(where: str) -> None:
    """Say where the process dies, then die as ``kill -9`` would have it: no cleanup, no flush."""
    note(f"kill {where}")
    os.kill(os.getpid(), signal.SIGKILL)


class KillingBlobStore:
    """Passes everything to ``inner``; at write number ``kill_at`` (counting ``write`` and ``create`` calls,
    only of keys that contain ``kill_key``, if given) the process dies as ``mode`` says."""

    def __init__(self, inner: Any, kill_at: int | None = None, mode: str = "before", kill_key: str = "") -> None:
        self.inner, self.kill_at, self.mode, self.kill_key = inner, kill_at, mode, kill_key
        self.writes = self.counted = 0

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)

    def write(self, key: str, data: bytes) -> None:
        self._write(key, data, self.inner.write)

    def create(self, key: str, data: bytes) -> bool:
        """Counted and killed like a write (the run lease's lock is created through it)."""
        return bool(self._write(key, data, self.inner.create))

    def append(self, key: str, data: bytes) -> None:
        """Counted and killed like a write; torn, it leaves part of its lines at the end of the file."""
        self._write(key, data, self.inner.append)

    def _write(self, key: str, data: bytes, inner_write: Any) -> Any:
        self.writes += 1
        self.counted += self.kill_key in key
        note(f"write {self.writes} {key}")
        if self.kill_key not in key or self.counted != self.kill_at:
            return inner_write(key, data)
        if self.mode == "after":
            inner_write(key, data)
        elif self.mode in ("partial", "unrenamed") and inner_write == self.inner.append:
            self._torn_append(key, bytes(data), whole=self.mode == "unrenamed")
        elif self.mode in ("partial", "unrenamed"):
            self._torn_write(key, bytes(data), whole=self.mode == "unrenamed")
        die(f"write={self.counted} mode={self.mode} key={key}")

    def _torn_append(self, key: str, data: bytes, whole: bool) -> None:
        """What a power cut mid-append leaves on a local disk; an S3 part cut short is never stored."""
        if hasattr(self.inner, "bucket"):
            return
        target = Path(self.inner.uri(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab") as handle:
            handle.write(data[:-1] if whole else data[: len(data) // 2])

    def _torn_write(self, key: str, data: bytes, whole: bool) -> None:
        """Leave what a write interrupted half-way leaves: a temp file beside the target, or an upload
        whose body stops short of its declared length."""
        if hasattr(self.inner, "bucket"):
            _short_upload(self.inner, key, data)
            return
        from tinkex_cookbook.adapters.blobs.local import open_temp

        target = Path(self.inner.uri(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, _tmp = open_temp(target.parent)
        os.write(fd, data if whole else data[: len(data) // 2])
        os.fsync(fd)


def _short_upload(store: Any, key: str, data: bytes) -> None:
    """Send an S3 PUT's headers and half its body; the process dies before the rest."""
    endpoint = urlsplit(store.endpoint_url)
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    connection.putrequest("PUT", f"/{store.bucket}/{quote(store.prefix + key)}")
    connection.putheader("Content-Length", str(len(data)))
    connection.putheader("Content-Type", "application/octet-stream")
    connection.endheaders()
    connection.send(data[: len(data) // 2])


def blob_option(root: str | None, s3: tuple[str, str, str] | None) -> dict[str, Any]:
    """The manifest option for a local root or an S3 endpoint, bucket and prefix."""
    if root:
        return {"adapter": "local", "root": root}
    assert s3 is not None
    endpoint, bucket, prefix = s3
    return {"adapter": "s3", "bucket": bucket, "prefix": prefix, "endpoint_url": endpoint,
            "region": "us-east-1", "max_attempts": 2}


@contextmanager
def killing_store(
    option: dict[str, Any], kill_at: int | None, mode: str, kill_key: str = "",
) -> Iterator[KillingBlobStore]:
    """The store the manifest option builds (through the runtime, as a run builds it), wrapped."""
    from tinkex_cookbook import Runtime

    with Runtime.open("local", {"blob_store": option}) as ports:
        yield KillingBlobStore(ports.blob_store, kill_at, mode, kill_key)


def run(recipe: str, store: Any) -> dict[str, Any]:
    """One run of ``recipe`` on ``local`` over ``store``, with one torch thread; its final state."""
    from tinkex_cookbook import Runtime

    name, cfg = RECIPES[recipe]
    result = Runtime.run(name, cfg, manifest="local", ports={"blob_store": store, "training_client": ONE_THREAD})
    return result.state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash_child", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="local blob store root directory")
    where.add_argument("--s3", nargs=3, metavar=("ENDPOINT", "BUCKET", "PREFIX"), help="S3 blob store")
    parser.add_argument("--kill-at-write", type=int, default=None, help="die at this blob write (1-based)")
    parser.add_argument("--kill-mode", choices=KILL_MODES, default="before")
    parser.add_argument("--kill-key", default="", help="count only writes whose key contains this")
    args = parser.parse_args(argv)
    STARTED[0] = time.monotonic()
    with killing_store(blob_option(args.root, args.s3), args.kill_at_write, args.kill_mode, args.kill_key) as store:
        state = run(args.recipe, store)
    note(f"done writes={store.writes} step={state.get('step')}")
    return 0


def _forked(argv: list[str], notes_path: str) -> None:
    """Entry point in a forkserver child: a clean environment, notes to a file, then ``main``."""
    for name in list(os.environ):
        if name.startswith(("TINKEX_", "TINKER_", "HF_", "AWS_")):
            del os.environ[name]
    os.environ.update(FAKE_AWS)
    NOTES[0] = open(notes_path, "a", buffering=1)  # noqa: SIM115 - open until the process ends
    sys.exit(main(argv))


def _forkserver() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm() -> None:
    """Start the forkserver now; it imports torch and transformers while the caller does other work."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


def start(argv: list[str], notes_path: str | Path) -> multiprocessing.Process:
    """``main(argv)`` in a new process forked from a warm forkserver; its notes go to ``notes_path``."""
    process = _forkserver().Process(target=_forked, args=(argv, str(notes_path)), daemon=True)
    process.start()
    return process


if __name__ == "__main__":
    sys.exit(main())
