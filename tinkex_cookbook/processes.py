"""Whether the process that left something behind (a run lock, a temp file) is still running.

A pid means something only on the host, and in the pid namespace, that it came
from: a run lock records both beside the pid, a temp file's name carries
``host_tag()``, and only a pid from here is asked about.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket


def current_pid_space() -> str:
    """This process's pid namespace on Linux (``pid:[4026531836]``), else empty."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@functools.cache
def host_tag() -> str:
    """Eight hex digits naming this host and pid namespace, short enough for a file name."""
    return hashlib.sha256(f"{socket.gethostname()}\0{current_pid_space()}".encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """False only when no process here has ``pid``; elsewhere than POSIX, always True (unknown)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
