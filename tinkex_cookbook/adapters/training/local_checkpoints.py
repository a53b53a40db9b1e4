"""Local backend checkpoints: ``torch.save``d payloads written atomically through the blob store,
read back with ``weights_only=True`` (tensors and plain values only).

A missing, truncated or foreign checkpoint is an error naming its path and blob, with the
fix: restore it, or drop its record from the run's ``checkpoints.jsonl`` so the run resumes
from the checkpoint before it. Nothing is ever read from a half-loaded payload.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError
from tinkex_cookbook.ports import BlobStore

PATH_SCHEME = "local://"
CHECKPOINT_PREFIX = "local_torch"


def checkpoint_key(path: str) -> str:
    if not path.startswith(PATH_SCHEME):
        raise ValueError(f"{path!r} is not a local_torch checkpoint path; expected '{PATH_SCHEME}<key>'")
    return path.removeprefix(PATH_SCHEME)


def write_checkpoint(blob_store: BlobStore, key: str, payload: dict[str, Any]) -> str:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob_store.write(key, buffer.getvalue())
    return PATH_SCHEME + key


RECOVERY = ("Fix: restore the file from a copy; if it is a run's latest checkpoint, delete its line (and any "
            "after it) from the run's checkpoints.jsonl to resume from the checkpoint before it")


def read_checkpoint(blob_store: BlobStore, path: str) -> dict[str, Any]:
    """The payload at ``path``; a missing or unreadable checkpoint is an error that names it and the fix."""
    key = checkpoint_key(path)
    try:
        data = blob_store.read(key)
    except BlobNotFoundError:
        raise BlobNotFoundError(f"no local_torch checkpoint at {path!r} ({blob_store.uri(key)}). {RECOVERY}") \
            from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on bad bytes
        raise BlobStoreError(
            f"local_torch checkpoint at {path!r} is corrupt or not a checkpoint ({blob_store.uri(key)}, "
            f"{len(data)} bytes): {type(exc).__name__}: {str(exc)[:200]}. {RECOVERY}"
        ) from exc
    if not isinstance(payload, dict) or "lora" not in payload:
        raise BlobStoreError(
            f"local_torch checkpoint at {path!r} ({blob_store.uri(key)}) is not a local_torch checkpoint. {RECOVERY}")
    return payload
