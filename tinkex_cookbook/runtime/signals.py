"""Ctrl-C and SIGTERM during a run: the first asks the run to stop at its next step boundary, after a
checkpoint; a second one interrupts at once (``KeyboardInterrupt``, as Python's own handler would).

Handlers can only be installed from the main thread; elsewhere the run keeps the process's handlers
(its caller can still stop it through its ``StopRequest``). The previous handlers come back when the
run ends, however it ends.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tinkex_cookbook.pipeline.stopping import StopRequest

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NOTICE = ("\n{name}: stopping after the current step, once a checkpoint is saved "
          "(Ctrl-C again quits at once)\n")


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM set ``stop``; the second one raises ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        stop.request(name)
        os.write(2, NOTICE.format(name=name).encode())  # not print: the handler may interrupt a print

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
