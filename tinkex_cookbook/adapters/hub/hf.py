"""Hugging Face Hub client: the ``hub_client`` port over ``huggingface_hub`` (registered as ``hf``).

``huggingface_hub`` is imported inside the methods, so importing the cookbook never needs
the ``hf`` extra.

* Endpoint: the ``endpoint`` argument (the runtime passes the manifest's, else ``HF_ENDPOINT``
  from its settings), else ``https://huggingface.co``; passed explicitly to every call (the
  library reads ``HF_ENDPOINT`` only when it is first imported).
* Token: the ``token`` argument, else whatever ``huggingface_hub`` finds itself
  (``HF_TOKEN``, then the token file of ``hf auth login``). It is never in ``repr`` or in
  an error message.
* Files land in the Hugging Face cache layout under ``cache_dir`` (default: the library's,
  ``HF_HUB_CACHE`` / ``HF_HOME``); a downloaded path is inside ``snapshots/<commit>/``, so
  files downloaded one by one from the same commit share a folder.
* Retries, two layers. The library's: a file download whose metadata (HEAD) request fails
  with 408/429/5xx or a connection error is tried once more with 5 retries and exponential
  backoff (1, 2, 4, 8, 8 s; a 429's ``Retry-After`` + 1 s instead), and a file body that
  times out or breaks off with a protocol error is resumed up to 5 times; a snapshot's file
  listing and an upload's pre-upload request are retried the same way. What it leaves alone
  (a connection reset, a 5xx or a reset on a file's GET, ``model_info``) this client can retry:
  ``download``, ``snapshot`` and ``model_info`` are tried up to ``max_attempts`` times (default
  1: the library's retries only) on a transient failure (reset, timeout, 408/429/5xx),
  ``backoff`` seconds apart, doubling, except a status the library has just retried through
  its own schedule (so a persistent 503 costs ~23 s, not ``max_attempts`` times that).
  Uploads are never retried (a lost reply to a commit would commit twice).
  When the Hub cannot be reached, or rejects the token, but the file is already cached for
  the requested revision, ``huggingface_hub`` returns the cached file without an error.
* ``timeout`` bounds the file metadata request and ``model_info``; file bodies use the
  library's ``HF_HUB_DOWNLOAD_TIMEOUT`` (10 s without data), and the library's second
  metadata attempt waits up to 60 s. ``huggingface_hub`` 2.4's shared HTTP client has no
  default timeout, so its other requests (a snapshot's listing, uploads) are unbounded.
  ``attempt_timeout`` (seconds, default none) bounds each attempt at a download, snapshot or
  ``model_info``, the library's own retries included: an attempt past it is abandoned (its
  thread may still finish and fill the cache) and counts as a transient failure, so a call
  ends within about ``max_attempts * attempt_timeout`` plus the backoff. Uploads are not
  bounded by it (a large upload is slow, and an abandoned one could still commit).

Errors, translated in one place (``_hub_error``), each naming the repository and endpoint:
  * repository, revision or file absent -> ``UnknownNameError`` (a ``LookupError``);
  * credentials rejected (401/403, gated repository) -> ``ConfigError`` naming ``HF_TOKEN``;
  * Hub unreachable, 5xx/429 after retries, attempts past ``attempt_timeout``, or a server that is not a Hub
    -> ``ConnectionError``;
  * an invalid repository id -> ``ConfigError``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tinkex_cookbook.adapters.retry import backoff_delay
from tinkex_cookbook.errors import ConfigError, UnknownNameError, error_chain
from tinkex_cookbook.ports.hub import RepoInfo

__all__ = ["DEFAULT_ENDPOINT", "HFHubClient"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"
LIBRARY_NAME = "tinkex-cookbook"
_TOKEN_HINT = "set HF_TOKEN to a token that can {verb} it (tokens: https://huggingface.co/settings/tokens)"
_METADATA_FIELDS = ("pipeline_tag", "library_name", "author", "private", "gated", "tags")
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class HFHubClient:
    """``HubClient`` over the Hugging Face Hub (or any Hub-compatible ``endpoint``)."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        timeout: float = 30.0,
        max_attempts: int = 1,
        backoff: float = 1.0,
        attempt_timeout: float | None = None,
    ) -> None:
        chosen = (endpoint or DEFAULT_ENDPOINT).strip().rstrip("/")
        if not chosen.startswith(("http://", "https://")):
            raise ConfigError(f"the Hugging Face Hub endpoint must be an http(s) URL, got {chosen!r}; fix the "
                              "hub_client endpoint option or HF_ENDPOINT")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"the Hugging Face Hub timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"the Hugging Face Hub max_attempts must be an integer >= 1, got {max_attempts!r}")
        if not isinstance(backoff, int | float) or backoff < 0:
            raise ConfigError(f"the Hugging Face Hub backoff must be a number of seconds >= 0, got {backoff!r}")
        if attempt_timeout is not None and (not isinstance(attempt_timeout, int | float) or attempt_timeout <= 0):
            raise ConfigError(
                "the Hugging Face Hub attempt_timeout must be a positive number of seconds or None, "
                f"got {attempt_timeout!r}"
            )
        self._endpoint = chosen
        self._max_attempts = max_attempts
        self._backoff = float(backoff)
        self._attempt_timeout = float(attempt_timeout) if attempt_timeout is not None else None
        self._token = token or None
        self._cache_dir = str(cache_dir) if cache_dir is not None else None
        self._timeout = float(timeout)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def cache_dir(self) -> str | None:
        return self._cache_dir

    def __repr__(self) -> str:
        return f"HFHubClient(endpoint={self._endpoint!r})"

    # -- HubClient ---------------------------------------------------------------------

    def download(self, repo: str, filename: str, revision: str | None = None) -> Path:
        """``filename`` of ``repo`` at ``revision`` (default ``main``), fetched into the cache unless there."""
        from huggingface_hub import hf_hub_download

        def call() -> str:
            return hf_hub_download(
                repo, filename, revision=revision, cache_dir=self._cache_dir, endpoint=self._endpoint,
                token=self._token, etag_timeout=self._timeout, library_name=LIBRARY_NAME,
            )

        return Path(self._call(f"download {filename!r} from {repo!r}", repo, filename, revision, call))

    def snapshot(self, repo: str, revision: str | None = None) -> Path:
        """Every file of ``repo`` at ``revision``: the cache's ``snapshots/<commit>`` folder."""
        from huggingface_hub import snapshot_download

        def call() -> str:
            return snapshot_download(
                repo, revision=revision, cache_dir=self._cache_dir, endpoint=self._endpoint,
                token=self._token, etag_timeout=self._timeout, library_name=LIBRARY_NAME,
            )

        return Path(self._call(f"download a snapshot of {repo!r}", repo, None, revision, call))

    def upload(self, path: Path, repo: str, path_in_repo: str | None = None) -> str:
        """Commit ``path`` to ``repo``'s ``main`` branch; the repository must exist.

        A file goes to ``path_in_repo`` (default: its name) and the file's download URL pinned
        to the new commit is returned; a directory goes under ``path_in_repo`` (default: the
        repository root) and the commit URL is returned.
        """
        local = Path(path)
        if not local.exists():
            raise FileNotFoundError(f"cannot upload {str(local)!r} to {repo!r}: no such file or directory")
        api = self._api()
        if local.is_dir():
            commit = self._call(
                f"upload the folder {local.name!r} to {repo!r}", repo, None, None,
                lambda: api.upload_folder(folder_path=local, repo_id=repo, path_in_repo=path_in_repo or None),
                write=True,
            )
            return str(commit.commit_url)
        name = path_in_repo or local.name
        commit = self._call(
            f"upload {name!r} to {repo!r}", repo, name, None,
            lambda: api.upload_file(path_or_fileobj=local, path_in_repo=name, repo_id=repo), write=True,
        )
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, name, revision=commit.oid, endpoint=self._endpoint)

    def model_info(self, repo: str) -> RepoInfo:
        """The model repository's current commit, file names (sorted) and a few string facts."""
        api = self._api()
        info = self._call(f"read the model info of {repo!r}", repo, None, None,
                          lambda: api.model_info(repo, timeout=self._timeout))
        files = tuple(sorted(s.rfilename for s in info.siblings or ()))
        metadata = {}
        for name in _METADATA_FIELDS:
            value = getattr(info, name, None)
            if value is None or value == []:
                continue
            if isinstance(value, bool):
                metadata[name] = "true" if value else "false"
            elif isinstance(value, list | tuple):
                metadata[name] = ",".join(str(v) for v in value)
            else:
                metadata[name] = str(value)
        return RepoInfo(repo_id=info.id, revision=info.sha, files=files, metadata=metadata)

    # -- internals ---------------------------------------------------------------------

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self._endpoint, token=self._token, library_name=LIBRARY_NAME)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _call(
        self, task: str, repo: str, filename: str | None, revision: str | None, call: Callable[[], T],
        write: bool = False,
    ) -> T:
        """``call()``, each attempt within ``attempt_timeout`` and retried on transient failures (neither
        for writes); errors translated."""
        attempts, limit = (1, None) if write else (self._max_attempts, self._attempt_timeout)
        for attempt in range(1, attempts + 1):
            try:
                return _within(call, limit)
            except Exception as exc:  # noqa: BLE001 - classified and translated below
                failure = exc
            delay = backoff_delay(attempt, self._backoff)
            if attempt == attempts or not _is_transient(failure):
                error = self._hub_error(failure, task, repo, filename, revision, write, attempt)
                if error is None:
                    raise failure
                raise error from failure
            logger.warning("cannot %s (attempt %d of %d): %s; retrying in %.2f s", task, attempt, attempts,
                           self._redact(f"{type(failure).__name__}: {failure}")[:300], delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _hub_error(
        self, exc: BaseException, task: str, repo: str, filename: str | None, revision: str | None, write: bool,
        attempts: int = 1,
    ) -> Exception | None:
        """The one place ``huggingface_hub`` errors become the cookbook's; ``None`` leaves ``exc`` alone.

        ``task`` completes "cannot ...", e.g. ``download 'config.json' from 'org/model'``.
        """
        import httpx2
        from huggingface_hub import errors as hf

        hub = f"the Hugging Face Hub at {self._endpoint}"
        failed = f"cannot {task}" + (f" (revision {revision!r})" if revision else "")
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(exc, _AttemptTimedOut):
            return ConnectionError(
                f"{failed}: {hub} did not finish within the {self._attempt_timeout:g} s attempt_timeout{tries}; "
                "check that it is up and HF_ENDPOINT is right, or raise the hub client's attempt_timeout"
            )
        token_hint = _TOKEN_HINT.format(verb="write to" if write else "read")
        chain = error_chain(exc)

        if isinstance(exc, hf.HFValidationError):
            return ConfigError(f"{failed}: not a valid repository id or revision: {self._redact(str(exc))}")
        for cause in chain:
            if isinstance(cause, hf.GatedRepoError):
                return ConfigError(f"{failed}: {repo!r} on {hub} is gated; request access on its page and {token_hint}")
            if isinstance(cause, hf.RevisionNotFoundError):
                return UnknownNameError(f"{failed}: repository {repo!r} on {hub} has no revision {revision or 'main'!r}")
            if isinstance(cause, hf.RemoteEntryNotFoundError):
                return UnknownNameError(f"{failed}: repository {repo!r} on {hub} has no file {filename!r}")
            if isinstance(cause, hf.RepositoryNotFoundError):
                return UnknownNameError(
                    f"{failed}: repository {repo!r} does not exist on {hub}, or it is private and the token in "
                    f"use cannot see it; {token_hint}"
                )
        status = next((s for s in map(_status, chain) if s is not None), None)
        if status in (401, 403):
            return ConfigError(
                f"{failed}: {hub} rejected the credentials (HTTP {status}); {token_hint}"
            )
        if status is not None and (status >= 500 or status in (408, 429)):
            return ConnectionError(
                f"{failed}: {hub} answered HTTP {status}{tries} (huggingface_hub also retries file and upload "
                "requests with backoff before giving up); try again later, or check HF_ENDPOINT"
            )
        unreachable = next((c for c in chain if isinstance(c, httpx2.TransportError | hf.OfflineModeIsEnabled)), None)
        if unreachable is not None:
            detail = self._redact(str(unreachable)) or "no detail"
            return ConnectionError(
                f"{failed}: could not reach {hub}{tries} ({type(unreachable).__name__}: {detail}); check that it "
                "is up, that HF_ENDPOINT is right and that HF_HUB_OFFLINE is not set"
            )
        metadata_error = next((c for c in chain if isinstance(c, hf.FileMetadataError)), None)
        if metadata_error is not None:
            return ConnectionError(
                f"{failed}: the server at {self._endpoint} does not answer like a Hugging Face Hub "
                f"({self._redact(str(metadata_error))}); check HF_ENDPOINT"
            )
        return None  # any other HTTP error (400 ...) propagates as huggingface_hub raised it


class _AttemptTimedOut(Exception):
    """An attempt outlived ``attempt_timeout`` (its thread is left to finish on its own)."""


def _within(call: Callable[[], T], seconds: float | None) -> T:
    """``call()``; with a time limit, on a daemon thread that is abandoned once the limit passes."""
    if seconds is None:
        return call()
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name="hf-hub-call", daemon=True).start()
    if not finished.wait(seconds):
        raise _AttemptTimedOut()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: a reset, a cut or a timeout on the way, or a 408/429/5xx answer."""
    import httpx2

    if isinstance(exc, _AttemptTimedOut):
        return True
    chain = error_chain(exc)
    if any(_retried_by_library(c) for c in chain):
        return False
    if any(isinstance(c, httpx2.TransportError) and not isinstance(c, httpx2.UnsupportedProtocol) for c in chain):
        return True
    return any(s in _TRANSIENT_STATUSES for s in map(_status, chain))


def _retried_by_library(exc: BaseException) -> bool:
    """huggingface_hub's own schedule already retried this answer: a file's metadata (HEAD) request
    that got 408/429/5xx, or its body (GET) that got 408/429."""
    response = getattr(exc, "response", None)
    try:
        request = response.request if response is not None else None
    except RuntimeError:  # a response built without its request
        return False
    if request is None or "/resolve/" not in str(request.url):
        return False
    status = _status(exc)
    return (request.method == "HEAD" and status in _TRANSIENT_STATUSES) or (
        request.method == "GET" and status in (408, 429)
    )




def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None
