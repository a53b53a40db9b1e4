"""Hub port: model and dataset repositories (Hugging Face Hub and friends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RepoInfo:
    repo_id: str
    revision: str | None = None
    files: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class HubClient(Protocol):
    def download(self, repo: str, filename: str, revision: str | None = None) -> Path:
        """A local path to ``filename`` from ``repo``; raises ``LookupError`` if absent."""
        ...

    def snapshot(self, repo: str, revision: str | None = None) -> Path: ...

    def upload(self, path: Path, repo: str, path_in_repo: str | None = None) -> str: ...

    def model_info(self, repo: str) -> RepoInfo: ...
