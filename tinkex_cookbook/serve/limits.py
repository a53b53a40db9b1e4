"""How much of the server one client may hold: body bytes, idle seconds, open connections.

The defaults fit the SDK with room to spare: it splits ``forward_backward`` into
requests of at most ~5 MB (a 64 x 2048-token batch is a 2.1 MB body; 32 x 8192
tokens with RL inputs, two bodies of up to 4.9 MB), its long polls on
``retrieve_future`` keep a connection busy, never idle, and it reopens a pooled
connection the server closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tinkex_cookbook.errors import ConfigError

MIB = 1 << 20
DEFAULT_MAX_BODY_BYTES = 64 * MIB
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class ServeLimits:
    """``max_body_bytes`` caps a request body, before and after decompression (``serve --max-body-mb``);
    a connection idle (waiting for or still receiving a request) past ``idle_timeout`` seconds is closed
    (``--idle-timeout``); at most ``max_connections`` are open at once (``--max-connections``)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for name, option in (("max_body_bytes", "--max-body-mb"), ("max_connections", "--max-connections")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServeLimits.{name} must be a whole number of at least 1, got {value!r} "
                                  f"(serve {option})")
        timeout = self.idle_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or timeout <= 0:
            raise ConfigError(f"ServeLimits.idle_timeout must be a number of seconds above 0, got {timeout!r} "
                              "(serve --idle-timeout)")

    @classmethod
    def from_options(cls, max_body_mb: float, idle_timeout: float, max_connections: int) -> ServeLimits:
        """The limits ``serve``'s options ask for (the body cap in MiB)."""
        if not math.isfinite(max_body_mb) or max_body_mb <= 0:
            raise ConfigError(f"--max-body-mb must be a number of MiB above 0, got {max_body_mb!r}")
        return cls(max(1, round(max_body_mb * MIB)), idle_timeout, max_connections)

    def too_large(self, what: str) -> str:
        """The 413 detail: ``what`` (e.g. ``the body is N bytes``), the limit and the option that raises it."""
        mib = f" ({self.max_body_bytes / MIB:.4g} MiB)" if self.max_body_bytes >= MIB // 16 else ""
        return (f"{what}, over this server's limit of {self.max_body_bytes} bytes{mib}; start the server with "
                "a higher serve --max-body-mb (ServeLimits.max_body_bytes)")


class BodyTooLargeError(ValueError):
    """A body (or what it decompresses to) passed ``max_body_bytes``: the server answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit
