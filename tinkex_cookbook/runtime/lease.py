"""One run at a time in a run folder: a lease held as ``{log_path}/run.lock``.

Two runs writing into one folder would each rewrite ``checkpoints.jsonl`` and
``metrics.jsonl`` from their own reads, repeating, losing and reordering
records. So a run first ``create``s the lock (write-if-absent, one atomic step
in every blob store), refreshes its heartbeat while it runs, and deletes it
when it ends. A lock whose run is gone is taken over, so a killed run resumes
with no manual step: on the same host (and pid namespace) when its pid is dead,
anywhere when its heartbeat is older than ``STALE_AFTER``. (Taking over is
delete-then-create: the port has no compare-and-delete, so two runs taking over
one dead lock within the same instant could both win; a run re-reads the lock
just before deleting it, which leaves a window of one store round trip.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Self

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, RunFolderInUseError
from tinkex_cookbook.json_values import text_problem
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.processes import current_pid_space, pid_alive
from tinkex_cookbook.run_folder import LOCK

logger = logging.getLogger(__name__)

LOCK_NAME = LOCK
STALE_AFTER = 15 * 60.0
"""Seconds without a heartbeat after which a lock's run counts as dead, wherever it ran."""
HEARTBEAT_EVERY = 60.0
"""Seconds between heartbeats (a background thread, whatever the run is waiting on); every checkpoint
also checks and beats before it is recorded."""

MAX_PID = 2**31
"""Past what a pid can be (a C int): a lock naming one was written by hand, not by a run."""

_HELD: set[str] = set()
"""Owner ids of the leases this process holds: a lock naming this pid but none of these was left by an
earlier process that had the same pid (a restarted container's pid 1, say)."""


@dataclass(frozen=True)
class Holder:
    """What a lock says about the run holding it."""

    owner: str
    host: str
    pid: int
    started: float
    heartbeat: float
    pid_space: str = ""
    """Linux's pid namespace: containers sharing a host name (host networking) do not share pids."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes | None) -> Holder | None:
        """The holder, or None for no lock or one that is not ours to read (damaged, written by hand: deep
        nesting, a 400-digit or NaN heartbeat, text that is not UTF-8); such a lock is reported as unreadable."""
        fields, wrong = problem(data or b"")
        if wrong is not None or not isinstance(fields, dict):
            return None
        try:
            holder = cls(str(fields["owner"]), str(fields["host"]), int(fields["pid"]),
                         float(fields["started"]), float(fields["heartbeat"]), str(fields.get("pid_space", "")))
        except (ValueError, TypeError, KeyError, OverflowError):
            return None
        readable = 0 < holder.pid < MAX_PID and math.isfinite(holder.started) and math.isfinite(holder.heartbeat)
        return holder if readable and text_problem(holder.owner + holder.host + holder.pid_space) is None else None

    def describe(self, now: float) -> str:
        started = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"host {self.host}, pid {self.pid}, started {started}, last heartbeat {now - self.heartbeat:.0f} s ago"


def stale_reason(holder: Holder, now: float, stale_after: float = STALE_AFTER) -> str | None:
    """Why ``holder``'s run is surely gone, or None if it may still be running."""
    if now - holder.heartbeat > stale_after:
        return f"no heartbeat for {now - holder.heartbeat:.0f} s"
    if holder.host != socket.gethostname() or holder.pid_space != current_pid_space():
        return None
    if holder.pid == os.getpid():
        return None if holder.owner in _HELD else f"left by an earlier process that had pid {holder.pid}"
    return None if pid_alive(holder.pid) else f"its process {holder.pid} is gone"


class RunLease:
    """``with RunLease(store, prefix) as lease:`` holds the folder for the block or raises
    ``RunFolderInUseError`` naming the run that holds it."""

    def __init__(
        self, store: BlobStore, prefix: str, stale_after: float = STALE_AFTER,
        heartbeat_every: float = HEARTBEAT_EVERY, clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = f"{prefix}/{LOCK_NAME}"
        self._store, self._folder = store, store.uri(prefix)
        self._stale_after, self._heartbeat_every, self._clock = stale_after, heartbeat_every, clock
        now = clock()
        self._me = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now, now, current_pid_space())
        self._beat_at = now
        self._beat_lock = threading.Lock()
        self.lost: RunFolderInUseError | None = None
        """Set once the lock is found deleted or naming another run: from then on nothing may be written."""
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self._take()
        self._beater = threading.Thread(target=self._beat_in_background, name="run-lease", daemon=True)
        self._beater.start()

    def _beat_in_background(self) -> None:
        """Keeps the lock fresh while the run waits on one long call (a 15-minute Tinker request sends no
        telemetry); a lost lease is kept for ``check`` to raise on the run's own thread."""
        while not self._stop.wait(self._heartbeat_every):
            try:
                self.heartbeat()
            except RunFolderInUseError:
                return
            except BlobStoreError as exc:  # the store is down: the run's own writes will say so
                logger.warning("could not refresh %s: %s", self._store.uri(self.key), exc)

    def check(self, force: bool = False) -> None:
        """Raise if the lease is lost; with ``force`` (before a checkpoint is recorded) read the lock now.
        Telemetry calls it before any sink sees an event, so a run that lost its folder writes nothing more."""
        if self.lost is not None:
            raise self.lost
        self.heartbeat(force=force)

    def _take(self) -> None:
        if self._create():
            return
        data = self._read()
        holder = Holder.parse(data)
        if holder is not None and holder.owner == self._me.owner:  # an S3 PUT retried after a lost response
            _HELD.add(self._me.owner)
            return
        if data is not None:  # a lock (else it went between our create and read): taken over only if stale
            if holder is None or (reason := stale_reason(holder, self._clock(), self._stale_after)) is None:
                raise self._in_use(holder)
            logger.info("taking over %s (%s): %s", self._store.uri(self.key), holder.describe(self._clock()),
                        reason)
            if self._read() == data:  # not replaced meanwhile by another run taking it over
                self._store.delete(self.key)
        if not self._create():
            raise self._in_use(Holder.parse(self._read()))

    def heartbeat(self, force: bool = True) -> None:
        """Rewrite the lock with the time now (at most every ``heartbeat_every`` s unless ``force``),
        after checking it is still ours: a run whose lease was taken over must stop writing."""
        with self._beat_lock:
            self._heartbeat(force)

    def _heartbeat(self, force: bool) -> None:
        now = self._clock()
        if not force and now - self._beat_at < self._heartbeat_every:
            return
        data = self._read()
        holder = Holder.parse(data)
        if holder is None or holder.owner != self._me.owner:
            what = "was deleted" if data is None else f"now names another run ({_describe(holder, now)})"
            self.lost = RunFolderInUseError(
                f"run folder {self._folder} is no longer this run's: its lock {self._store.uri(self.key)} {what}; "
                "this run stops so that two runs do not write into one folder: let the other run finish, "
                "then rerun to resume, or pick another log_path"
            )
            raise self.lost
        self._me, self._beat_at = replace(self._me, heartbeat=now), now
        self._store.write(self.key, self._me.to_bytes())

    def release(self) -> None:
        """Delete the lock if it is still ours; a failure only warns (a later run takes a dead lock over)."""
        self._stop.set()
        if self._beater is not None:
            self._beater.join()
        _HELD.discard(self._me.owner)
        try:
            holder = Holder.parse(self._read())
            if holder is not None and holder.owner == self._me.owner:
                self._store.delete(self.key)
        except BlobStoreError as exc:
            logger.warning("could not release %s: %s", self._store.uri(self.key), exc)

    def _create(self) -> bool:
        created = self._store.create(self.key, self._me.to_bytes())
        if created:
            _HELD.add(self._me.owner)
        return created

    def _read(self) -> bytes | None:
        try:
            return self._store.read(self.key)
        except BlobNotFoundError:
            return None

    def _in_use(self, holder: Holder | None) -> RunFolderInUseError:
        return RunFolderInUseError(
            f"run folder {self._folder} is in use by another run ({_describe(holder, self._clock())}): "
            f"wait for it, pick another log_path, or delete {self._store.uri(self.key)} if that run is dead"
        )


def _describe(holder: Holder | None, now: float) -> str:
    return holder.describe(now) if holder is not None else "its lock is unreadable"
