"""Checkpoint records: ``checkpoints.jsonl`` lists every saved state of a run, oldest first."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.ports import BlobStore


@dataclass(frozen=True)
class CheckpointRecord:
    name: str
    step: int
    epoch: int
    state_path: str | None = None
    sampler_path: str | None = None
    final: bool = False
    tokens_seen: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    """Recipe-specific paths a resume needs (an RL run's current sampler weights)."""


def load_checkpoints(store: BlobStore, key: str) -> list[CheckpointRecord]:
    try:
        text = store.read(key).decode()
    except BlobNotFoundError:
        return []
    return [CheckpointRecord(**json.loads(line)) for line in text.splitlines() if line.strip()]


def append_checkpoint(store: BlobStore, key: str, record: CheckpointRecord) -> None:
    """Add ``record``; the file is rewritten atomically, so it is never half a line."""
    records = [*load_checkpoints(store, key), record]
    rows = ({k: v for k, v in asdict(r).items() if k != "extra" or v} for r in records)
    store.write(key, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())
