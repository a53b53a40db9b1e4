"""Local backend checkpoints: ``torch.save``d payloads written atomically through the blob store,
read back with ``weights_only=True`` (tensors and plain values only)."""

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


def read_checkpoint(blob_store: BlobStore, path: str) -> dict[str, Any]:
    """The payload at ``path``; a missing or unreadable checkpoint is an error that names it."""
    key = checkpoint_key(path)
    try:
        data = blob_store.read(key)
    except BlobNotFoundError:
        raise BlobNotFoundError(f"no local_torch checkpoint at {path!r} ({blob_store.uri(key)})") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on bad bytes
        raise BlobStoreError(f"local_torch checkpoint at {path!r} is corrupt or not a checkpoint: {exc}") \
            from exc
    if not isinstance(payload, dict) or "lora" not in payload:
        raise BlobStoreError(f"local_torch checkpoint at {path!r} is not a local_torch checkpoint")
    return payload
