"""S3 blob store: one object per key under ``s3://bucket/prefix``.

Works against AWS S3 and S3-compatible servers (MinIO, moto, R2, ...) through
``endpoint_url``. ``boto3`` is imported lazily, when the first client is built,
so importing the cookbook never needs the ``s3`` extra.

* Atomicity: S3 PUTs (single and multipart) are atomic per object; a reader sees
  the old object or the new one, never part of an upload. ``create`` is one PUT with
  ``If-None-Match: *``, which S3 refuses (412) when the object exists (AWS since 2024;
  MinIO, R2 and moto too; a server that ignores the header would let it overwrite).
* Credentials come only from boto3's own chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, shared config, instance roles);
  they are never parameters and never appear in messages or ``repr``.
* Retries: botocore's ``standard`` mode retries throttling, 5xx, timeouts and
  connection errors, up to ``max_attempts`` attempts in total per request (jittered
  backoff: 50 ms doubling for errors, 1 s doubling for throttling, each sleep under
  20 s). A GET whose body breaks off (reset, short read) is asked again, within the
  same ``max_attempts``, since botocore only retries until the headers arrive.
* Timeouts: ``timeout`` seconds to connect and between bytes read, so a server that
  stops answering costs at most ``max_attempts * timeout`` plus backoff.
* Append: S3 objects cannot grow, so ``append`` PUTs its lines as a numbered part
  object ``<key>/.append-<n>`` (a conditional PUT: a part is never overwritten) and
  ``read``, ``exists``, ``list`` and ``delete`` treat the key's object and its parts
  as one blob. The base object's metadata ``appended-through`` says which parts it
  already holds. Every ``compact_after`` appends the writer folds the parts into the
  base object (server-side, by a multipart copy, once the base is past 5 MiB; below
  that by one GET and PUT of at most 5 MiB), so an append costs one PUT of its own
  lines plus a bounded share of a compaction, whatever the blob's size, and a read
  costs at most ``compact_after + 2`` requests. A read lists the parts before it
  reads the base, so a compaction between the two cannot show a line twice or lose
  one. A part PUT is atomic: S3 appends leave no torn tail.
* Every botocore/boto3 failure is turned into the cookbook's errors in one
  place, ``_store_error``.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.adapters.blobs.keys import PART_PREFIX, as_bytes, as_lines, normalize_key
from tinkex_cookbook.adapters.retry import backoff_delay
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, ConfigError, InvalidKeyError

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024
"""S3 rejects multipart parts (except the last) smaller than 5 MiB."""
THROUGH = "appended-through"
"""Base-object metadata: the highest appended part number its bytes already hold."""


@dataclass
class _Appended:
    """What this store knows of one key's appends: the parts its base holds, and the parts after it."""

    through: int = 0
    parts: list[int] = field(default_factory=list)

    @property
    def next_part(self) -> int:
        return max([self.through, *self.parts]) + 1

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
    "credentials), or AWS_PROFILE naming a profile in ~/.aws/credentials"
)


def _normalize_prefix(prefix: str) -> str:
    """``""`` stays empty; anything else becomes a valid key followed by ``/``."""
    if not isinstance(prefix, str):
        raise ConfigError(f"S3 blob store prefix must be a string, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        return normalize_key(stripped) + "/"
    except InvalidKeyError as exc:
        raise ConfigError(f"invalid S3 blob store prefix {prefix!r}: {exc}") from exc


class S3BlobStore:
    """Objects in ``bucket`` under ``prefix``; the client is built on first use unless injected."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: object | None = None,
        max_attempts: int = 5,
        multipart_threshold: int = 8 * 1024 * 1024,
        timeout: float = 60.0,
        compact_after: int = 64,
    ) -> None:
        if not isinstance(bucket, str) or not bucket.strip() or "/" in bucket:
            raise ConfigError(
                f"S3 blob store bucket must be a bucket name like 'my-bucket' (no 's3://' or '/'), got {bucket!r}; "
                "set it in the manifest or TINKEX_S3_BUCKET"
            )
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"S3 blob store max_attempts must be an integer >= 1, got {max_attempts!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"S3 blob store timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(multipart_threshold, int) or multipart_threshold < 1:
            raise ConfigError(
                f"S3 blob store multipart_threshold must be a positive number of bytes, got {multipart_threshold!r}"
            )
        if not isinstance(compact_after, int) or compact_after < 1:
            raise ConfigError(f"S3 blob store compact_after must be an integer >= 1, got {compact_after!r}")
        self._compact_after = compact_after
        self._appended: dict[str, _Appended] = {}
        self._append_lock = threading.Lock()
        self._bucket = bucket.strip()
        self._prefix = _normalize_prefix(prefix)
        self._endpoint_url = endpoint_url or None
        self._region = region or None
        self._max_attempts = max_attempts
        self._timeout = float(timeout)
        self._multipart_threshold = multipart_threshold
        self._client: Any = client
        self._owns_client = client is None
        self._transfer_config: Any = None
        self._lock = threading.Lock()

    # -- properties -------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def endpoint_url(self) -> str | None:
        return self._endpoint_url

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self._endpoint_url!r}" if self._endpoint_url else ""
        return f"S3BlobStore(bucket={self._bucket!r}, prefix={self._prefix!r}{endpoint})"

    # -- BlobStore ----------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        name = self._object_key(key)
        with self._translate("read", key):
            for _ in range(self._max_attempts):
                parts = self._part_numbers(name)
                base, through = self._get_base(name)
                wanted = [n for n in parts if n > through]
                if base is None and not wanted:
                    raise BlobNotFoundError(f"no blob under key {key!r} at {self.uri(key)}")
                try:
                    return (base or b"") + b"".join(self._get(_part_name(name, n))[0] for n in wanted)
                except Exception as exc:
                    if _error_code(exc) not in _NOT_FOUND_CODES:
                        raise
                    # a part went between our listing and our GET: a compaction; read again
            raise BlobStoreError(f"cannot read {self.uri(key)}: it kept being compacted while read")

    def write(self, key: str, data: bytes) -> None:
        """One upload of the base object; parts appended before are dropped (its metadata marks them held,
        so a reader ignores them at once)."""
        name = self._object_key(key)
        payload = as_bytes(key, data)
        with self._translate("write", key):
            parts = self._part_numbers(name)
            extra = {"Metadata": {THROUGH: str(max(parts))}} if parts else None
            client = self._s3()
            client.upload_fileobj(io.BytesIO(payload), self._bucket, name, ExtraArgs=extra, Config=self._transfer())
            self._delete_parts(name, parts)
            with self._append_lock:
                self._appended[name] = _Appended(max(parts, default=0))

    def append(self, key: str, data: bytes) -> None:
        name = self._object_key(key)
        payload = as_lines(key, data)
        with self._translate("append", key), self._append_lock:
            state = self._appended.get(name) or self._discover(name)
            number = state.next_part
            client = self._s3()
            client.put_object(Bucket=self._bucket, Key=_part_name(name, number), Body=payload, IfNoneMatch="*")
            state.parts.append(number)
            self._appended[name] = state
            if len(state.parts) >= self._compact_after:
                self._compact(name, state)

    def create(self, key: str, data: bytes) -> bool:
        """A single conditional PUT (fine for small blobs such as locks; S3 takes up to 5 GB in one).

        A 409 (a delete of the key raced this PUT) is asked again, as S3 advises. A PUT that botocore
        retried after its response was lost may find its own first attempt there and return False:
        callers that must know (the run lease) read the blob back.
        """
        name = self._object_key(key)
        payload = as_bytes(key, data)
        with self._translate("create", key):
            client = self._s3()
            for attempt in range(1, self._max_attempts + 1):
                try:
                    client.put_object(Bucket=self._bucket, Key=name, Body=payload, IfNoneMatch="*")
                    return True
                except Exception as exc:
                    if _error_code(exc) == "PreconditionFailed" or _http_status(exc) == 412:
                        return False
                    if _error_code(exc) != "ConditionalRequestConflict" or attempt == self._max_attempts:
                        raise
                    delay = backoff_delay(attempt, _BODY_RETRY_BASE, _BODY_RETRY_CAP)
                    logger.warning("creating %s: a conflicting request (attempt %d/%d); asking again in %.2f s",
                                   self.uri(key), attempt, self._max_attempts, delay)
                    time.sleep(delay)
            raise AssertionError("unreachable")  # pragma: no cover

    def exists(self, key: str) -> bool:
        name = self._object_key(key)
        with self._translate("check", key):
            client = self._s3()
            try:
                client.head_object(Bucket=self._bucket, Key=name)
            except Exception as exc:
                if _error_code(exc) not in _NOT_FOUND_CODES:
                    raise
                # HEAD has no body, so a missing bucket is also a bare 404: ask the bucket.
                client.head_bucket(Bucket=self._bucket)
                return bool(self._part_numbers(name))
            return True

    def list(self, prefix: str = "") -> list[str]:
        if not isinstance(prefix, str):
            raise InvalidKeyError(f"invalid blob key prefix {prefix!r}: a prefix must be a string")
        keys: set[str] = set()
        with self._translate("list", prefix):
            for name in self._list_objects(self._prefix + prefix):
                key = name[len(self._prefix) :]
                folder, _, last = key.rpartition("/")
                if last.startswith(PART_PREFIX):  # an appended part: it lists as the key it belongs to
                    key = folder
                if key.startswith(prefix) and _is_store_key(key):
                    keys.add(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        name = self._object_key(key)
        with self._translate("delete", key):
            self._delete_parts(name, self._part_numbers(name))
            # S3 DELETE of a missing object succeeds; a missing bucket still raises.
            self._s3().delete_object(Bucket=self._bucket, Key=name)
            with self._append_lock:
                self._appended.pop(name, None)

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._object_key(key)}"

    def key_for(self, location: str) -> str | None:
        """The key of an ``s3://`` location as ``uri`` prints it (``""``: the store's prefix itself); ``None``
        for anything else (a key). An ``s3://`` location outside this bucket and prefix is a ``ConfigError``."""
        if not location.startswith("s3://"):
            return None
        bucket, _, name = location.removeprefix("s3://").partition("/")
        name = name.strip("/")
        mine = self._prefix.rstrip("/")
        if bucket == self._bucket and (not mine or name == mine or name.startswith(mine + "/")):
            return name[len(mine):].strip("/")
        raise ConfigError(f"log_path {location!r} is outside this blob store, s3://{self._bucket}/{self._prefix}: "
                          f"name a folder inside it, or a key relative to it (e.g. 'sl_basic/my-run')")

    def close(self) -> None:
        """Close the HTTP connection pool of a client this store built (an injected one is the caller's)."""
        with self._lock:
            client, self._client = self._client, None
            owned = self._owns_client
            self._owns_client = True
        if client is not None and owned:
            close = getattr(client, "close", None)
            if callable(close):
                close()

    # -- internals ----------------------------------------------------------------------

    def _get(self, name: str) -> tuple[bytes, dict[str, str]]:
        """An object's bytes and metadata; a body that breaks off is asked again within ``max_attempts``."""
        for attempt in range(1, self._max_attempts + 1):
            response = self._s3().get_object(Bucket=self._bucket, Key=name)
            body = response["Body"]
            try:
                return bytes(body.read()), dict(response.get("Metadata") or {})
            except Exception as exc:
                if attempt == self._max_attempts or type(exc).__name__ not in _BROKEN_BODY:
                    raise
                delay = backoff_delay(attempt, _BODY_RETRY_BASE, _BODY_RETRY_CAP)
                logger.warning("reading s3://%s/%s: the body broke off (%s, attempt %d/%d); asking again in "
                               "%.2f s", self._bucket, name, type(exc).__name__, attempt, self._max_attempts, delay)
                time.sleep(delay)
            finally:
                body.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_base(self, name: str) -> tuple[bytes | None, int]:
        """The base object's bytes (None if absent) and the last appended part they hold."""
        try:
            data, metadata = self._get(name)
        except Exception as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
            return None, 0
        return data, _through(metadata)

    def _list_objects(self, prefix: str) -> Iterator[str]:
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for entry in page.get("Contents", ()):
                yield entry["Key"]

    def _part_numbers(self, name: str) -> list[int]:
        """The numbers of ``name``'s appended parts, ascending."""
        first = len(_part_name(name, 0)) - _PART_DIGITS
        return sorted(int(part[first:]) for part in self._list_objects(f"{name}/{PART_PREFIX}")
                      if part[first:].isdigit())

    def _discover(self, name: str) -> _Appended:
        """Where appends to ``name`` stand, for a key this store has not appended to yet."""
        parts = self._part_numbers(name)
        through = 0
        try:
            through = _through(self._s3().head_object(Bucket=self._bucket, Key=name).get("Metadata") or {})
        except Exception as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
        self._delete_parts(name, [n for n in parts if n <= through])  # left by a compaction cut short
        return _Appended(through, [n for n in parts if n > through])

    def _compact(self, name: str, state: _Appended) -> None:
        """Fold the parts into the base object, then drop them; the base's metadata says which it holds."""
        upto = state.parts[-1]
        tail = b"".join(self._get(_part_name(name, n))[0] for n in state.parts)
        metadata = {THROUGH: str(upto)}
        client = self._s3()
        try:
            size = int(client.head_object(Bucket=self._bucket, Key=name)["ContentLength"])
        except Exception as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
            size = -1
        if size >= MIN_PART_SIZE:
            self._copy_and_extend(name, tail, metadata)
        else:
            base = self._get(name)[0] if size > 0 else b""
            client.put_object(Bucket=self._bucket, Key=name, Body=base + tail, Metadata=metadata)
        self._delete_parts(name, state.parts)
        state.through, state.parts = upto, []

    def _copy_and_extend(self, name: str, tail: bytes, metadata: dict[str, str]) -> None:
        """A multipart upload whose first part is the base object copied server-side, its second ``tail``."""
        client = self._s3()
        upload = client.create_multipart_upload(Bucket=self._bucket, Key=name, Metadata=metadata)["UploadId"]
        try:
            copied = client.upload_part_copy(Bucket=self._bucket, Key=name, UploadId=upload, PartNumber=1,
                                             CopySource={"Bucket": self._bucket, "Key": name})
            added = client.upload_part(Bucket=self._bucket, Key=name, UploadId=upload, PartNumber=2, Body=tail)
            client.complete_multipart_upload(
                Bucket=self._bucket, Key=name, UploadId=upload,
                MultipartUpload={"Parts": [{"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": 1},
                                           {"ETag": added["ETag"], "PartNumber": 2}]})
        except BaseException:
            client.abort_multipart_upload(Bucket=self._bucket, Key=name, UploadId=upload)
            raise

    def _delete_parts(self, name: str, numbers: list[int]) -> None:
        client = self._s3()
        for start in range(0, len(numbers), 1000):  # DeleteObjects takes up to 1000 keys
            batch = [{"Key": _part_name(name, n)} for n in numbers[start : start + 1000]]
            client.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})

    def _object_key(self, key: str) -> str:
        return self._prefix + normalize_key(key)

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
                self._owns_client = True
            return self._client

    def _build_client(self) -> Any:
        boto3, botocore_session, config_type = _import_boto3()
        # total_max_attempts counts the first request; botocore's max_attempts would count retries only.
        config = config_type(
            retries={"total_max_attempts": self._max_attempts, "mode": "standard"},
            connect_timeout=self._timeout, read_timeout=self._timeout,
        )
        with _BUILD_LOCK:
            # A fresh session per store (credentials are resolved now, from the environment),
            # sharing one loader so the S3 service model is parsed once per process.
            global _LOADER
            core = botocore_session.Session()
            if _LOADER is None:
                _LOADER = core.get_component("data_loader")
            else:
                core.register_component("data_loader", _LOADER)
            session = boto3.session.Session(botocore_session=core)
            return session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
            )

    def _transfer(self) -> Any:
        if self._transfer_config is None:
            from boto3.s3.transfer import TransferConfig

            self._transfer_config = TransferConfig(
                multipart_threshold=self._multipart_threshold,
                multipart_chunksize=max(self._multipart_threshold, MIN_PART_SIZE),
            )
        return self._transfer_config

    @contextmanager
    def _translate(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except BlobStoreError:
            raise
        except Exception as exc:
            error = self._store_error(exc, action, key)
            if error is None:
                raise
            raise error from exc

    def _store_error(self, exc: BaseException, action: str, key: str) -> BlobStoreError | None:
        """The one place botocore/boto3 errors become cookbook errors; ``None`` leaves ``exc`` alone."""
        cause = _botocore_cause(exc)
        if cause is None:
            return None
        where = f"s3://{self._bucket}/{self._prefix}{key}"
        kind = type(cause).__name__
        code = _error_code(cause)
        if code in _NO_BUCKET_CODES or (code in _NOT_FOUND_CODES and _operation(cause) == "HeadBucket"):
            return BlobStoreError(
                f"cannot {action} {where}: the S3 bucket {self._bucket!r} does not exist"
                f"{self._at_endpoint()}; create it or fix TINKEX_S3_BUCKET"
            )
        if code in _NOT_FOUND_CODES and action == "read":
            return BlobNotFoundError(f"no blob under key {key!r} at {where}")
        if code in _DENIED_CODES:
            return BlobStoreError(
                f"cannot {action} {where}: access denied to S3 bucket {self._bucket!r} ({code}); "
                f"check that the credentials in use may {action} objects in this bucket"
            )
        if kind in {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
            return BlobStoreError(
                f"cannot {action} {where}: no usable AWS credentials were found ({kind}); {_CREDENTIALS_HINT}"
            )
        endpoint = self._endpoint_url or getattr(cause, "kwargs", {}).get("endpoint_url") or "the S3 endpoint"
        attempts = f"after {self._max_attempts} attempt(s)"
        if kind in {"ConnectTimeoutError", "ReadTimeoutError"}:
            return BlobStoreError(
                f"cannot {action} {where}: no answer from the S3 endpoint {endpoint} within {self._timeout:g} s, "
                f"{attempts} ({kind}); check that the server is up, or raise the blob store's timeout"
            )
        if kind in {"EndpointConnectionError", "ConnectionClosedError"}:
            return BlobStoreError(
                f"cannot {action} {where}: could not reach the S3 endpoint {endpoint} "
                f"{attempts} ({kind}); check that the server is up and "
                "AWS_ENDPOINT_URL / TINKEX_S3_ENDPOINT_URL is right"
            )
        if kind in _BROKEN_BODY:
            return BlobStoreError(
                f"cannot {action} {where}: the S3 endpoint {endpoint} broke off the object's body "
                f"{attempts} ({kind}); the network or the server is dropping connections: retry later"
            )
        detail = f"{code}: {_error_message(cause)}" if code else str(cause)
        status = _http_status(cause)
        if code in _THROTTLING_CODES or status == 429 or (status is not None and status >= 500):
            return BlobStoreError(
                f"cannot {action} {where}{self._at_endpoint()}: the S3 service kept failing {attempts} "
                f"({detail}); it is throttling or unavailable: retry later (a run resumes from its last "
                "checkpoint), or raise the blob store's max_attempts"
            )
        return BlobStoreError(f"cannot {action} {where}{self._at_endpoint()}: {detail}")

    def _at_endpoint(self) -> str:
        return f" at {self._endpoint_url}" if self._endpoint_url else ""


_BUILD_LOCK = threading.Lock()
_LOADER: Any = None
_BROKEN_BODY = frozenset({"ResponseStreamingError", "IncompleteReadError", "ReadTimeoutError"})
"""botocore errors raised while a GET's body streams in: after the request's own retries."""
_BODY_RETRY_BASE = 0.05
_BODY_RETRY_CAP = 2.0
_THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                               "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable"})


_PART_DIGITS = 12


def _part_name(name: str, number: int) -> str:
    return f"{name}/{PART_PREFIX}{number:0{_PART_DIGITS}d}"


def _through(metadata: dict[str, str]) -> int:
    value = metadata.get(THROUGH, "0")
    return int(value) if value.isdigit() else 0


def _import_boto3() -> tuple[Any, Any, Any]:
    try:
        import boto3
        import boto3.session
        import botocore.session
        from botocore.config import Config
    except ImportError as exc:
        from tinkex_cookbook.errors import AdapterUnavailableError

        raise AdapterUnavailableError(
            "the S3 blob store needs boto3; install it with: pip install 'tinkex-cookbook[s3]' (or pip install boto3)"
        ) from exc
    return boto3, botocore.session, Config


def _botocore_cause(exc: BaseException) -> BaseException | None:
    """``exc`` or the first error in its cause chain that comes from botocore/boto3."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__ or ""
        if module.startswith(("botocore", "boto3", "s3transfer")):
            if type(current).__name__ == "S3UploadFailedError" and (current.__cause__ or current.__context__):
                current = current.__cause__ or current.__context__
                continue
            return current
        current = current.__cause__ or current.__context__
    return None


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or "")
    return ""


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def _operation(exc: BaseException) -> str:
    return str(getattr(exc, "operation_name", "") or "")


def _error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc)


def _is_store_key(key: str) -> bool:
    """Objects whose names are not valid keys (written by other tools) are not listed."""
    try:
        return normalize_key(key) == key
    except InvalidKeyError:
        return False
