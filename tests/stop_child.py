"""The command line in a process of its own, whose noop training backend sends the process a signal when
optimizer step N is submitted: Ctrl-C (or SIGTERM) at a known step, for the CLI's stop-and-resume tests.

    TINKEX_SIGNAL_AT=N [TINKEX_SIGNAL=SIGTERM] [TINKEX_SIGNAL_AGAIN=1] python -m tests.stop_child run ...

``TINKEX_PORTS__TRAINING_CLIENT__ADAPTER=signal_at`` binds it; without ``TINKEX_SIGNAL_AT`` it never signals,
so the printed resume command runs through the same entry point.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.faults import SignalAt
from tinkex_cookbook.cli import main
from tinkex_cookbook.runtime import register_adapter


def _signal_at(options: Any, settings: Any) -> SignalAt:
    at = int(os.environ.get("TINKEX_SIGNAL_AT", "0"))
    return SignalAt(at, signal.Signals[os.environ.get("TINKEX_SIGNAL", "SIGINT")],
                    again=os.environ.get("TINKEX_SIGNAL_AGAIN") == "1")


if __name__ == "__main__":
    register_adapter("training_client", "signal_at", _signal_at, summary="noop, signalling at a step (tests)")
    main()
