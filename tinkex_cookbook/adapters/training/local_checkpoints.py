"""Local backend checkpoints: one safetensors file per checkpoint, written atomically through the blob store.

Tensors (the LoRA weights, and for a training state the optimizer's moments) are
safetensors, never pickles, so opening a checkpoint someone handed you runs no code.
Everything else (base model, rank, alpha, targets, seeds, step count, the optimizer's
hyper-parameters) is JSON in the file's ``__metadata__``. A missing, truncated or foreign
checkpoint is an error naming its path and blob, with the fix: restore it, or drop its
record from the run's ``checkpoints.jsonl`` so the run resumes from the checkpoint before
it. Nothing is ever read from a half-loaded payload. ``checkpoint_file`` hashes a checkpoint in pieces, so
a run's record pins each file's sha256 and every load through the record checks it first
(``train/checkpoints.py``): bytes changed inside a file that still decodes are caught too.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.ports.blobs import blob_sha256
from tinkex_cookbook.ports.training import CheckpointFile

PATH_SCHEME = "local://"
CHECKPOINT_PREFIX = "local_torch"
SUFFIX = ".safetensors"
FORMAT = "tinkex-local-torch/1"
_LORA, _OPTIMIZER = "lora/", "optimizer/"


def checkpoint_key(path: str) -> str:
    if not path.startswith(PATH_SCHEME):
        raise ValueError(f"{path!r} is not a local_torch checkpoint path; expected '{PATH_SCHEME}<key>'")
    return path.removeprefix(PATH_SCHEME)


def encode_checkpoint(payload: dict[str, Any]) -> bytes:
    """``payload``'s ``lora`` tensors and ``optimizer`` state as safetensors, the rest as metadata."""
    from safetensors.torch import save

    tensors = {_LORA + name: value.detach().contiguous() for name, value in payload["lora"].items()}
    meta = {k: v for k, v in payload.items() if k not in ("lora", "optimizer")}
    optimizer = payload.get("optimizer")
    if optimizer is not None:
        for index, state in optimizer["state"].items():
            for key, value in state.items():
                tensors[f"{_OPTIMIZER}{index}/{key}"] = torch.as_tensor(value).contiguous()
        meta["param_groups"] = optimizer["param_groups"]
    return save(tensors, metadata={"format": FORMAT, "meta": json.dumps(meta)})


def decode_checkpoint(data: bytes) -> dict[str, Any]:
    """The payload ``encode_checkpoint`` wrote; ``ValueError`` for anything else."""
    from safetensors.torch import load

    header = _header(data)
    if header.get("format") != FORMAT:
        raise ValueError(f"its metadata names format {header.get('format')!r}, not {FORMAT!r}")
    tensors = load(data)
    payload: dict[str, Any] = json.loads(header["meta"])
    payload["lora"] = {k.removeprefix(_LORA): v for k, v in tensors.items() if k.startswith(_LORA)}
    groups = payload.pop("param_groups", None)
    if groups is not None:
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(_OPTIMIZER):
                index, _, name = key.removeprefix(_OPTIMIZER).partition("/")
                state.setdefault(int(index), {})[name] = value
        payload["optimizer"] = {"state": dict(sorted(state.items())), "param_groups": groups}
    return payload


def _header(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (an 8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("its header runs past the end of the file (truncated?)")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def write_checkpoint(blob_store: BlobStore, key: str, payload: dict[str, Any]) -> str:
    blob_store.write(key, encode_checkpoint(payload))
    return PATH_SCHEME + key


def checkpoint_file(blob_store: BlobStore, path: str) -> CheckpointFile | None:
    """The file at a ``local://`` path, hashed in pieces (``FileCheckpoints``); ``None`` for any other path."""
    if not path.startswith(PATH_SCHEME):
        return None
    key = checkpoint_key(path)
    try:
        digest, size = blob_sha256(blob_store, key)
    except BlobNotFoundError:
        raise BlobNotFoundError(f"no local_torch checkpoint at {path!r} ({blob_store.uri(key)})") from None
    return CheckpointFile(blob_store.uri(key), digest, size)


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
        payload = decode_checkpoint(data)
    except Exception as exc:  # safetensors and json fail in many ways on bad bytes
        raise BlobStoreError(
            f"local_torch checkpoint at {path!r} is corrupt or not a checkpoint ({blob_store.uri(key)}, "
            f"{len(data)} bytes): {type(exc).__name__}: {str(exc)[:200]}. {RECOVERY}"
        ) from exc
    if not payload["lora"] or "base_model" not in payload:
        raise BlobStoreError(
            f"local_torch checkpoint at {path!r} ({blob_store.uri(key)}) is not a local_torch checkpoint. {RECOVERY}")
    return payload
