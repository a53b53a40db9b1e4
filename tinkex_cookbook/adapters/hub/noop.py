"""Noop hub: an in-memory repository map, so recipes that consult a hub run offline."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from tinkex_cookbook.ports.hub import RepoInfo


@dataclass
class NoopHubClient:
    """Serves files from ``repos`` (repo -> filename -> bytes); records uploads in ``uploads``."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    uploads: list[tuple[str, str]] = field(default_factory=list)
    _cache: Path | None = field(default=None, repr=False)

    def _cache_dir(self) -> Path:
        """A temporary folder for downloads, removed when the client is closed or collected."""
        if self._cache is None:
            self._cache = Path(tempfile.mkdtemp(prefix="tinkex-noop-hub-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._cache, True)
        return self._cache

    def close(self) -> None:
        if self._cache is not None:
            self._cleanup()
            self._cache = None

    def _files(self, repo: str) -> dict[str, bytes]:
        if repo not in self.repos:
            raise LookupError(f"noop hub has no repository {repo!r}; known: {sorted(self.repos)}")
        return self.repos[repo]

    def download(self, repo: str, filename: str, revision: str | None = None) -> Path:
        files = self._files(repo)
        if filename not in files:
            raise LookupError(f"noop hub repository {repo!r} has no file {filename!r}")
        target = self._cache_dir() / repo / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[filename])
        return target

    def snapshot(self, repo: str, revision: str | None = None) -> Path:
        for filename in self._files(repo):
            self.download(repo, filename, revision)
        return self._cache_dir() / repo

    def upload(self, path: Path, repo: str, path_in_repo: str | None = None) -> str:
        name = path_in_repo or Path(path).name
        self.repos.setdefault(repo, {})[name] = Path(path).read_bytes()
        self.uploads.append((repo, name))
        return f"noop://{repo}/{name}"

    def model_info(self, repo: str) -> RepoInfo:
        return RepoInfo(repo, None, tuple(sorted(self._files(repo))))
