"""How much of the local server one client may hold, and how much work one request may ask for.

Connections: ``max_body_bytes`` caps a request body, before and after decompression
(``serve --max-body-mb``); a connection idle (waiting for or still receiving a request) past
``idle_timeout`` seconds is closed (``--idle-timeout``); at most ``max_connections`` are open at
once (``--max-connections``). The defaults fit the SDK with room to spare: it splits
``forward_backward`` into requests of at most ~5 MB (a 64 x 2048-token batch is a 2.1 MB body;
32 x 8192 tokens with RL inputs, two bodies of up to 4.9 MB), its long polls on
``retrieve_future`` keep a connection busy, never idle, and it reopens a pooled connection the
server closed.

Requests: every quantity a client chooses (samples, new tokens, prompt and datum lengths, datums per
batch, live models and sampling sessions) has a bound; a request over one is refused with a 400
naming the limit, the value and how to raise it (``tinkex-cookbook serve --limit NAME=N``).
``sample_chunk_tokens`` is not a refusal but the size of the slices sampling work is cut into, so
requests from different clients take turns (``fair.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from tinkex_cookbook.errors import ConfigError

MIB = 1 << 20
DEFAULT_MAX_BODY_BYTES = 64 * MIB
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 256
CONNECTION_OPTIONS = {"max_body_bytes": "--max-body-mb", "idle_timeout": "--idle-timeout",
                      "max_connections": "--max-connections"}
"""The connection limits and the ``serve`` options that set them (``--limit NAME=N`` sets the others)."""


class OverLimit(ValueError):
    """A request asks for more than a limit allows."""


@dataclass(frozen=True)
class ServeLimits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Bytes of one request body, before and after decompression (larger ones get 413)."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds a connection may wait for, or take to send, a request."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Connections open at once; beyond it the longest-idle one is closed, or the new one gets 503."""
    max_samples: int = 64
    """``num_samples`` of one sample request."""
    max_new_tokens: int = 2048
    """``sampling_params.max_tokens`` of one sample request."""
    max_prompt_tokens: int = 8192
    """Tokens of one prompt, or of one datum's model input."""
    max_datums: int = 1024
    """Datums in one forward_backward (or forward) request."""
    max_batch_tokens: int = 262_144
    """Tokens of one forward_backward request, summed over its datums."""
    max_lora_rank: int = 256
    """``lora_config.rank`` of a new model."""
    max_models: int = 64
    """Training models alive on the server at once."""
    max_samplers: int = 256
    """Sampling sessions kept; past it the least recently used one of the client holding the most is
    closed (its id then gets a 404), so one client cannot close another's."""
    session_idle_seconds: int = 300
    """Seconds after a client session's last request or heartbeat (the SDK sends one every 10 s) past
    which its models may be freed to make room for a new one under ``max_models``."""
    max_queued: int = 1024
    """Requests accepted and not yet finished; past it new ones get 429 (retry later). Finished results
    nobody fetched are kept up to this many too, the oldest dropped first."""
    sample_chunk_tokens: int = 4096
    """Cache tokens (samples x (prompt + new tokens)) of one turn of sampling work."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            where = f"serve {CONNECTION_OPTIONS.get(item.name, '--limit ' + item.name + '=N')}"
            if item.name == "idle_timeout":
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                        or value <= 0:
                    raise ConfigError(f"ServeLimits.idle_timeout must be a number of seconds above 0, got "
                                      f"{value!r} ({where})")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServeLimits.{item.name} must be a whole number of at least 1, got {value!r} "
                                  f"({where})")

    @classmethod
    def from_options(cls, max_body_mb: float, idle_timeout: float, max_connections: int,
                     limit: list[str] | None = None) -> ServeLimits:
        """The limits ``serve``'s options ask for (the body cap in MiB, ``--limit NAME=N`` for the rest)."""
        if not math.isfinite(max_body_mb) or max_body_mb <= 0:
            raise ConfigError(f"--max-body-mb must be a number of MiB above 0, got {max_body_mb!r}")
        return cls(max(1, round(max_body_mb * MIB)), idle_timeout, max_connections).with_options(limit or [])

    def too_large(self, what: str) -> str:
        """The 413 detail: ``what`` (e.g. ``the body is N bytes``), the limit and the option that raises it."""
        mib = f" ({self.max_body_bytes / MIB:.4g} MiB)" if self.max_body_bytes >= MIB // 16 else ""
        return (f"{what}, over this server's limit of {self.max_body_bytes} bytes{mib}; start the server with "
                "a higher serve --max-body-mb (ServeLimits.max_body_bytes)")

    def check(self, name: str, value: int, what: str) -> None:
        """Refuse ``value`` (the request's ``what``) when it is over the limit ``name``."""
        limit = getattr(self, name)
        if value > limit:
            raise OverLimit(f"{what}={value} is over this server's limit {name}={limit}; ask for less, or "
                            f"start the server with `tinkex-cookbook serve --limit {name}=N`")

    @classmethod
    def names(cls) -> list[str]:
        """The limits ``--limit NAME=N`` sets (the connection limits have options of their own)."""
        return [item.name for item in fields(cls) if item.name not in CONNECTION_OPTIONS]

    def with_options(self, options: list[str]) -> ServeLimits:
        """These limits with ``NAME=N`` options applied (the CLI's ``--limit``)."""
        changes: dict[str, int] = {}
        for option in options:
            name, sep, raw = option.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in self.names():
                hint = f" ({name} is set with serve {CONNECTION_OPTIONS[name]})" if name in CONNECTION_OPTIONS else ""
                raise ConfigError(f"bad --limit {option!r}: use NAME=N with NAME one of {', '.join(self.names())}"
                                  f"{hint}")
            try:
                changes[name] = int(raw)
            except ValueError:
                raise ConfigError(f"bad --limit {option!r}: {raw.strip()!r} is not a whole number") from None
        return replace(self, **changes)


class BodyTooLargeError(ValueError):
    """A body (or what it decompresses to) passed ``max_body_bytes``: the server answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit
