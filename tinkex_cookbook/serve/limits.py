"""How much work one request to the local server may ask for.

Every quantity a client chooses (samples, new tokens, prompt and datum lengths,
datums per batch, live models and sampling sessions) has a bound here; a request
over one is refused with a 400 naming the limit, the value and how to raise it
(``tinkex-cookbook serve --limit NAME=N``). ``sample_chunk_tokens`` is not a
refusal but the size of the slices sampling work is cut into, so requests from
different clients take turns (``fair.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from tinkex_cookbook.errors import ConfigError


class OverLimit(ValueError):
    """A request asks for more than a limit allows."""


@dataclass(frozen=True)
class ServeLimits:
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
    """Sampling sessions kept; past it the least recently used is closed (its id then gets a 404)."""
    max_queued: int = 1024
    """Requests accepted and not yet finished; past it new ones get 429 (retry later). Finished results
    nobody fetched are kept up to this many too, the oldest dropped first."""
    sample_chunk_tokens: int = 4096
    """Cache tokens (samples x (prompt + new tokens)) of one turn of sampling work."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve limit {item.name}={value!r} must be a whole number >= 1")

    def check(self, name: str, value: int, what: str) -> None:
        """Refuse ``value`` (the request's ``what``) when it is over the limit ``name``."""
        limit = getattr(self, name)
        if value > limit:
            raise OverLimit(f"{what}={value} is over this server's limit {name}={limit}; ask for less, or "
                            f"start the server with `tinkex-cookbook serve --limit {name}=N`")

    @classmethod
    def names(cls) -> list[str]:
        return [item.name for item in fields(cls)]

    def with_options(self, options: list[str]) -> ServeLimits:
        """These limits with ``NAME=N`` options applied (the CLI's ``--limit``)."""
        changes: dict[str, int] = {}
        for option in options:
            name, sep, raw = option.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in self.names():
                raise ConfigError(f"bad --limit {option!r}: use NAME=N with NAME one of {', '.join(self.names())}")
            try:
                changes[name] = int(raw)
            except ValueError:
                raise ConfigError(f"bad --limit {option!r}: {raw.strip()!r} is not a whole number") from None
        return replace(self, **changes)
