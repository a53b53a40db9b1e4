"""A request to stop a run at its next step boundary, set from a signal handler or another thread.

The runner reads it where a loop says what a stop needs (``LoopSpec.on_stop``: a step
loop's checkpoint, after the steps in flight have finished), so a stopped run resumes
at exactly the next step. Setting it never interrupts a stage: a stage finishes first.
"""

from __future__ import annotations

import threading


class StopRequest:
    """Set once, by whoever wants the run to stop; ``reason`` says who (e.g. ``SIGINT``)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()
