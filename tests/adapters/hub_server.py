"""A fake Hugging Face Hub on 127.0.0.1: the few routes ``huggingface_hub`` 2.4 calls, from memory.

Enough of the Hub for ``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info`` and
``HfApi.upload_file`` / ``upload_folder`` (regular, non-LFS files only)::

    HEAD/GET /{repo}/resolve/{revision}/{path}        file bytes; X-Repo-Commit, ETag, Content-Length
    GET      /api/models/{repo}[/revision/{revision}] {"id", "sha", "siblings": [{"rfilename"}], ...}
    GET      /api/models/{repo}/tree/{revision}[/{path}]?recursive=  [{"type", "oid", "size", "path"}]
    POST     /api/models/{repo}/preupload/{revision}  {"files": [{"path", "uploadMode": "regular", ...}]}
    POST     /api/models/{repo}/commit/{revision}     ndjson header + base64 files -> a new commit
    POST     /api/validate-yaml                       {} (every model card's YAML header is accepted)

Errors carry the headers ``huggingface_hub.utils.hf_raise_for_status`` classifies by:
``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`` on 404, and
``X-Error-Message: Invalid credentials in Authorization header`` on 401 (what the Hub
answers a wrong token). When ``token`` is set, every request must carry
``Authorization: Bearer <token>``. ``fail_with = 500`` answers every request with that
status (to test retries and error translation); ``requests`` logs ``(method, path)``.

Repositories are versioned: every commit gets a fresh 40-hex sha, ``main`` points at the
latest, and a file can be fetched at any earlier commit sha too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from tests.local_server import LocalServer

__all__ = ["FakeHub", "git_blob_oid"]

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def isolate_huggingface_hub(monkeypatch: Any, home: Path) -> list[float]:
    """Keep huggingface_hub's files under ``home``, telemetry off, offline mode off, and its retry sleeps
    recorded instead of slept. Returns the list the sleeps go to."""
    import huggingface_hub.utils._http as hf_http
    from huggingface_hub import constants, file_download

    settings = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }
    for name, value in {**settings, "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(name, value)
    # the library reads its environment once, at import: set what it already read too
    for name, value in settings.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    sleeps: list[float] = []
    fast = SimpleNamespace(sleep=sleeps.append)
    monkeypatch.setattr(hf_http, "time", fast)
    monkeypatch.setattr(file_download, "time", fast)
    return sleeps


def git_blob_oid(content: bytes) -> str:
    """The git blob sha1 of ``content``: what the Hub uses as ETag and ``oid`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> path -> bytes
    main: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # extra model_info fields

    def commit(self, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(f"{len(self.commits)}:{self.main}:{sorted(files)}".encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.main = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision == "main":
            return self.main
        return revision if revision in self.commits else None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class FakeHub:
    """A threaded HTTP server holding ``repos`` (repo id -> path -> bytes), each at one initial commit."""

    def __init__(
        self,
        repos: dict[str, dict[str, bytes]] | None = None,
        token: str | None = None,
        info: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._initial = {name: dict(files) for name, files in (repos or {}).items()}
        self._initial_info = {name: dict(extra) for name, extra in (info or {}).items()}
        self.token = token
        self.fail_with: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._server: LocalServer | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Hub is not running: call start()")
        return self._server.url

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = LocalServer(Handler, "fake-hf-hub").start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the initial repositories, no failure switch, empty request log."""
        with self._lock:
            self._repos: dict[str, _Repo] = {}
            for name, files in self._initial.items():
                self._repos[name] = repo = _Repo(info=dict(self._initial_info.get(name, {})))
                repo.commit(files)
            self.fail_with = None
            self.requests.clear()
            self.authorizations.clear()

    # -- state, for tests --------------------------------------------------------------

    def files(self, repo: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            state = self._repos[repo]
            return dict(state.commits[state.resolve(revision) or revision])

    def head_sha(self, repo: str) -> str:
        with self._lock:
            return self._repos[repo].main

    def create_repo(self, repo: str, files: dict[str, bytes] | None = None) -> None:
        with self._lock:
            self._repos[repo] = state = _Repo()
            state.commit(files or {})

    # -- request handling (called from server threads) ---------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query)
        with self._lock:
            self.requests.append((method, path))
            self.authorizations.append(headers.get("Authorization"))
        try:
            if self.fail_with is not None:
                raise _HTTPError(self.fail_with, "the fake Hub is failing on purpose")
            self._check_auth(headers.get("Authorization"))
            with self._lock:
                return self._route(method, path, query, body)
        except _HTTPError as error:
            payload = json.dumps({"error": error.message}).encode()
            return error.status, {"Content-Type": "application/json", **error.headers}, payload

    def _check_auth(self, authorization: str | None) -> None:
        if self.token is None:
            return
        if authorization != f"Bearer {self.token}":
            raise _HTTPError(401, INVALID_CREDENTIALS, {"X-Error-Message": INVALID_CREDENTIALS})

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/"):]
            for verb in ("preupload", "commit", "tree", "revision"):
                marker = f"/{verb}/"
                if marker in rest:
                    repo, _, tail = rest.partition(marker)
                    revision, _, sub = tail.partition("/")
                    return self._api(method, verb, unquote(repo), unquote(revision), unquote(sub), query, body)
            return self._api(method, "info", unquote(rest), "main", "", query, body)
        if path == "/api/validate-yaml" and method == "POST":  # a README's model-card header, before upload
            return 200, {"Content-Type": "application/json"}, b"{}"
        if "/resolve/" in path and method in ("GET", "HEAD"):
            repo, _, tail = path.lstrip("/").partition("/resolve/")
            revision, _, filename = tail.partition("/")
            return self._resolve(method, unquote(repo), unquote(revision), unquote(filename))
        raise _HTTPError(404, f"no route {method} {path}")

    def _repo(self, repo: str) -> _Repo:
        state = self._repos.get(repo)
        if state is None:
            raise _HTTPError(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
        return state

    def _commit_sha(self, state: _Repo, revision: str) -> str:
        sha = state.resolve(revision)
        if sha is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", {"X-Error-Code": "RevisionNotFound"})
        return sha

    def _resolve(self, method: str, repo: str, revision: str, filename: str) -> tuple[int, dict[str, str], bytes]:
        state = self._repo(repo)
        sha = self._commit_sha(state, revision)
        files = state.commits[sha]
        if filename not in files:
            raise _HTTPError(
                404, "Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}
            )
        content = files[filename]
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_oid(content)}"',
            "Accept-Ranges": "bytes",
            "Content-Length": str(len(content)),
        }
        return 200, headers, b"" if method == "HEAD" else content

    def _api(
        self, method: str, verb: str, repo: str, revision: str, sub: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        state = self._repo(repo)
        if verb in ("info", "revision") and method == "GET":
            sha = self._commit_sha(state, revision)
            info = {
                "id": repo, "modelId": repo, "sha": sha, "private": False,
                "siblings": [{"rfilename": name} for name in sorted(state.commits[sha])],
                **state.info,
            }
            return _json(info)
        if verb == "tree" and method == "GET":
            sha = self._commit_sha(state, revision)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return _json(_tree(state.commits[sha], sub, recursive))
        if verb == "preupload" and method == "POST":
            sha = self._commit_sha(state, revision)
            current = state.commits[sha]
            files = json.loads(body)["files"]
            return _json({"files": [
                {
                    "path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                    "oid": git_blob_oid(current[f["path"]]) if f["path"] in current else None,
                }
                for f in files
            ]})
        if verb == "commit" and method == "POST":
            files = dict(state.commits[self._commit_sha(state, revision)])
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key != "header":
                    raise _HTTPError(400, f"the fake Hub does not support {key!r} commit entries")
            if revision != "main":
                raise _HTTPError(400, "the fake Hub only commits to main")
            sha = state.commit(files)
            return _json({"commitUrl": f"{self.endpoint}/{repo}/commit/{sha}", "commitOid": sha, "success": True})
        raise _HTTPError(405, f"{method} not allowed on {verb}")


def _tree(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    entries: dict[str, dict[str, Any]] = {}
    for path, content in sorted(files.items()):
        if not path.startswith(base):
            continue
        parts = path[len(base):].split("/")
        for depth in range(1, len(parts)):  # the folders on the way
            if not recursive and depth > 1:
                break
            folder = base + "/".join(parts[:depth])
            entries.setdefault(folder, {"type": "directory", "oid": git_blob_oid(folder.encode()), "size": 0, "path": folder})
        if recursive or len(parts) == 1:
            entries[path] = {"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path}
    return list(entries.values())


def _json(data: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every reply carries Content-Length
    timeout = 10  # an idle keep-alive connection frees its thread

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.fake.handle(self.command, self.path, self.headers, body)
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
