"""The command line in a process of its own, whose noop training backend reports a NaN gradient norm at optimizer
step ``TINKEX_DIVERGE_AT`` (default 2): a diverged run, for the CLI's retry-command test.

    TINKEX_PORTS__TRAINING_CLIENT__ADAPTER=diverging python -m tests.diverge_child run ...
"""

from __future__ import annotations

import math
import os
from typing import Any

from tests.faults import Diverging
from tinkex_cookbook.cli import main
from tinkex_cookbook.runtime import register_adapter


def _diverging(options: Any, settings: Any) -> Diverging:
    return Diverging(int(os.environ.get("TINKEX_DIVERGE_AT", "2")), math.nan)


if __name__ == "__main__":
    register_adapter("training_client", "diverging", _diverging, summary="noop, diverging at a step (tests)")
    main()
