"""Key and payload checks shared by every blob store, so what one accepts all accept.

A key that passes ``normalize_key`` joined onto any root stays under that root
(lexically; the local store also checks symlinks).
"""

from __future__ import annotations

from tinkex_cookbook.errors import InvalidKeyError

TEMP_PREFIX = ".tinkex-tmp-"
"""Reserved for in-flight writes of the local store, which ``list`` skips. Distinctive, so a user's own
``.tmp-draft.md`` beside a run is neither hidden nor taken for one (the store removes only exact names of
its own scheme, ``local.TEMP_NAME``)."""
PART_PREFIX = ".append-"
"""Reserved for the S3 store's appended parts (``<key>/.append-<n>``), which ``list`` folds into their key."""
RESERVED_PREFIXES = (TEMP_PREFIX, PART_PREFIX)


def _invalid(key: object, rule: str) -> InvalidKeyError:
    return InvalidKeyError(f"invalid blob key {key!r}: {rule}")


def _check_characters(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise _invalid(key, "a key must be a non-empty string")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise _invalid(key, "a key must not contain control characters (NUL, newline, tab ...): S3 rejects them")
    if "\\" in key:
        raise _invalid(key, "a key must use '/' as separator, not backslashes")
    if key.startswith("/"):
        raise _invalid(key, "a key must be relative, not start with '/'")
    return key


def normalize_key(key: str) -> str:
    """Return ``key`` with ``.`` segments dropped; raise ``InvalidKeyError`` naming the broken rule."""
    segments = [s for s in _check_characters(key).split("/") if s != "."]
    if ".." in segments:
        raise _invalid(key, "a key must not contain '..' segments")
    if not segments or "" in segments:
        raise _invalid(key, "a key must not contain empty segments ('//', trailing '/')")
    if segments[-1].startswith(RESERVED_PREFIXES):
        raise _invalid(key, f"a key's last segment must not start with {' or '.join(map(repr, RESERVED_PREFIXES))} "
                            "(reserved)")
    return "/".join(segments)


def as_bytes(key: str, data: bytes) -> bytes:
    """Copy ``data`` to immutable bytes; refuse ints and str, which ``bytes()`` would mangle."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"blob data for key {key!r} must be bytes, got {type(data).__name__}")
    return bytes(data)


def as_lines(key: str, data: bytes) -> bytes:
    """``as_bytes`` for ``append``: whole lines only, so a reader can tell a finished append from a torn one."""
    payload = as_bytes(key, data)
    if not payload.endswith(b"\n"):
        raise ValueError(f"appended data for key {key!r} must be whole lines ending in a newline, got "
                         f"{len(payload)} bytes ending {payload[-20:]!r}")
    return payload
