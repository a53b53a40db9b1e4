"""Secrets in values: refused where they would enter a run, hidden where text leaves the process.

A secret comes from the environment only: the values of ``SECRET_VARIABLES`` (``Settings`` keeps
some of them) at least ``MIN_SCRUBBED`` characters long. A config value, a spec, a path or a
name that holds one would carry it into every file and folder the run writes (``spec.json``, the
run folder's name, ``checkpoints.jsonl``, the report's title), so it is refused where it enters:
``refuse_secrets`` raises a ``ConfigError`` naming the place and the variable, never the value.
Text that may still hold one (a backend's error, a manifest option with a key in its URL) is
scrubbed on its way out: ``scrub``, and the command line's streams (``cli_secrets``). Light on
imports: the command line reads the environment's secrets before it loads anything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tinkex_cookbook.errors import ConfigError

SECRET_VARIABLES = (
    "TINKER_API_KEY", "TINKEX_SERVE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TINKEX_LLM_API_KEY",
    "OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "WANDB_API_KEY",
)
"""Environment variables whose values are secrets, whether or not a field of ``Settings`` keeps them."""
MIN_SCRUBBED = 8
"""Shorter secret values are placeholders (``tml-x``, moto's ``test`` credentials), not secrets: scrubbing
them would mangle ordinary words in every message, and refusing values that hold them would refuse names."""
REDACTED = "**********"
FIX = "secrets are read from the environment only: pass a name, not a key"


def environment_secrets() -> dict[str, str]:
    """The secrets in the environment (values of ``SECRET_VARIABLES``, any case) and their variables,
    longest first; each without the whitespace around it, which output may not repeat."""
    environment = {name.upper(): value for name, value in os.environ.items()}
    return longest_first({value.strip(): name for name in reversed(SECRET_VARIABLES)
                          if is_secret(value := environment.get(name, ""))})


def is_secret(value: str) -> bool:
    return len(value.strip()) >= MIN_SCRUBBED


def longest_first(named: dict[str, str]) -> dict[str, str]:
    """``named`` (secret -> variable) with its longest secrets first: a secret inside another is hidden whole."""
    return dict(sorted(named.items(), key=lambda item: len(item[0]), reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``REDACTED`` (pass them longest first: a secret inside
    another is then hidden whole)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def secret_in(text: str, named: Mapping[str, str]) -> str | None:
    """The variable whose secret ``text`` holds (``named`` maps secret values to variables), else None."""
    return next((name for secret, name in named.items() if secret in text), None)


def refuse_secrets(value: Any, named: Mapping[str, str], what: str, *, url_credentials: bool = False) -> None:
    """Raise a ``ConfigError`` if ``value`` (a string, path, mapping, list or pydantic model, at any depth,
    keys included) holds a secret; ``what`` names the value in the message, e.g. ``the config``. With
    ``url_credentials``, a secret in a URL's ``user:password@`` part is let through (it names no file,
    and output scrubs it)."""
    if not named:
        return
    found = _find(value, named, [], url_credentials)
    if found is None:
        return
    path, name, in_key = found
    place = f"{'.'.join(path)!r} in {what}"
    if in_key:
        head = f"a key of {place if path else what}"
    else:
        head = f"the value of {place}" if path else what
    raise ConfigError(f"{head} holds the secret {name}; {FIX}")


def _find(value: Any, named: Mapping[str, str], path: list[str],
          url_credentials: bool) -> tuple[list[str], str, bool] | None:
    """(where, variable, whether a key holds it) for the first secret in ``value``."""
    if hasattr(value, "model_dump"):  # a pydantic model (not imported here: the command line starts light)
        value = value.model_dump(mode="json")
    if isinstance(value, str | bytes | os.PathLike):
        text = os.fspath(value)
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        name = secret_in(_without_credentials(text) if url_credentials else text, named)
        return (path, name, False) if name else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = secret_in(str(key), named)
            if name:
                return path, name, True
            found = _find(item, named, [*path, str(key)], url_credentials)
            if found:
                return found
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _find(item, named, [*path, str(index)], url_credentials)
            if found:
                return found
    return None


def _without_credentials(text: str) -> str:
    """``text`` without the ``user:password@`` of the URL it is, if it is one."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
