"""Sampling work shared fairly between clients: bounded chunks, taken in turns.

The backend runs work in the order it is handed over, so one request for many
long samples, handed over whole, would make every other client wait for all of
it. Here a sample request is cut into chunks of bounded size; one thread hands
the backend one chunk at a time, taking owners (client sessions) in turn and a
request's chunks in order. A small request waits for about one chunk per busy
owner, however much the others asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from tinkex_cookbook.ports import APIFuture

Chunk = Callable[[], APIFuture[Any]]
"""Starts one slice of a request's work on the backend."""


class FairJob:
    """One request's chunks and their results: the future its client polls."""

    def __init__(self, chunks: Sequence[Chunk], combine: Callable[[list[Any]], Any]) -> None:
        self._todo = deque(chunks)
        self._results: list[Any] = []
        self._combine = combine
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError("sampling is still running")
        if self._error is not None:
            raise self._error
        return self._value

    def _finish(self, error: BaseException | None = None) -> None:
        if error is None:
            try:
                self._value = self._combine(self._results)
            except Exception as exc:  # noqa: BLE001 - reported as the request's failure
                error = exc
        self._error = error
        self._todo.clear()
        self._done.set()


class FairScheduler:
    """Hands chunks to the backend in turns across owners (a client session, or one request)."""

    def __init__(self) -> None:
        self._owners: OrderedDict[str, deque[FairJob]] = OrderedDict()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, owner: str, chunks: Sequence[Chunk], combine: Callable[[list[Any]], Any]) -> FairJob:
        job = FairJob(chunks, combine)
        if not chunks:
            job._finish()
            return job
        with self._wake:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._owners.setdefault(owner, deque()).append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tinker-serve-sampling", daemon=True)
                self._thread.start()
            self._wake.notify()
        return job

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    def _next(self) -> tuple[FairJob, Chunk] | None:
        """The next chunk of the owner whose turn it is (then that owner goes last); ``None`` once closed."""
        with self._wake:
            while True:
                while not self._owners and not self._closed:
                    self._wake.wait()
                if self._closed:
                    for jobs in self._owners.values():
                        for job in jobs:
                            job._finish(RuntimeError("the server shut down before this request ran"))
                    self._owners.clear()
                    return None
                owner, jobs = next(iter(self._owners.items()))
                while jobs and jobs[0].done():  # failed part way: its other chunks are dropped
                    jobs.popleft()
                if not jobs:
                    del self._owners[owner]
                    continue
                job = jobs[0]
                chunk = job._todo.popleft()
                if not job._todo:
                    jobs.popleft()
                if jobs:
                    self._owners.move_to_end(owner)
                else:
                    del self._owners[owner]
                return job, chunk

    def _run(self) -> None:
        while (picked := self._next()) is not None:
            job, chunk = picked
            try:
                result = chunk().result()
            except Exception as exc:  # noqa: BLE001 - the backend refused or failed this chunk: the request fails
                job._finish(exc)
                continue
            job._results.append(result)
            if not job._todo and not job.done():
                job._finish()
