"""The rule a server's API key must meet, and a way to make one that does.

The key is the only thing between the network and the training backend, so
``tml-`` (the prefix the Tinker SDK insists on) or ``tml-aaaaaaaa`` must not
do. The rule is checked where a server is built, so library use is held to it
too; errors name the rule and never the key.
"""

from __future__ import annotations

import secrets

from tinkex_cookbook.errors import WeakSecretError

PREFIX = "tml-"
MIN_SECRET_CHARS = 16
MIN_DISTINCT_CHARS = 8
MAKE_ONE = "python -c \"import secrets; print('tml-' + secrets.token_urlsafe(24))\""
RULE = (f"at least {MIN_SECRET_CHARS} characters after the {PREFIX!r} prefix, {MIN_DISTINCT_CHARS} or more of "
        "them different, all visible ASCII (no spaces), not a pattern said over again nor a run of consecutive "
        "characters (like abcd...)")
RUNS = tuple(order + order for order in (
    "".join(map(chr, range(ord("!"), ord("~") + 1))),
    "0123456789abcdefghijklmnopqrstuvwxyz", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "abcdefghijklmnopqrstuvwxyz0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "qwertyuiopasdfghjklzxcvbnm",
))
"""Orders a made-up key walks along (ASCII, digits then letters, a keyboard row), each wrapping around."""


def new_api_key() -> str:
    """A fresh random key that meets the rule (32 url-safe characters after the prefix)."""
    return PREFIX + secrets.token_urlsafe(24)


def check_api_key(key: str, where: str = "the server's API key") -> None:
    """Raise ``WeakSecretError`` unless ``key`` meets ``RULE``; ``where`` names the setting in the message."""
    secret = key.removeprefix(PREFIX)
    problem = _problem(secret)
    if problem is not None:
        raise WeakSecretError(f"{where} is too weak: {problem}. A key needs {RULE}; make one with: {MAKE_ONE}")


def _problem(secret: str) -> str | None:
    if not all("!" <= char <= "~" for char in secret):
        return "it holds spaces, control or non-ASCII characters, which an HTTP header cannot carry intact"
    if len(secret) < MIN_SECRET_CHARS:
        return f"it has {len(secret)} characters after the prefix"
    if len(set(secret)) < MIN_DISTINCT_CHARS:
        return f"it uses only {len(set(secret))} different characters"
    if secret in (secret + secret)[1:-1]:
        return "it is a shorter pattern said over again"
    if any(secret in run or secret[::-1] in run for run in RUNS):
        return "it is a run of consecutive characters"
    return None
