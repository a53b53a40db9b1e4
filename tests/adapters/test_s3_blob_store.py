"""S3 blob store against a real S3 API (moto's threaded server on 127.0.0.1), no boto3 mocks."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from botocore.exceptions import ClientError

from tests.adapters.conftest import BUCKET, raw_s3_client, start_moto_server
from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError

_prefixes = itertools.count()


def _start_server(port: int = 0) -> tuple[Any, str]:
    return start_moto_server(port)


def _raw_client(endpoint: str) -> Any:
    return raw_s3_client(endpoint)


@pytest.fixture
def raw(moto_endpoint: str, aws_env: None) -> Any:
    return _raw_client(moto_endpoint)


@pytest.fixture
def store(moto_endpoint: str, aws_env: None) -> Iterator[S3BlobStore]:
    """A store under a fresh prefix, so tests share the bucket without seeing each other."""
    s = S3BlobStore(BUCKET, prefix=f"t{next(_prefixes)}", endpoint_url=moto_endpoint)
    yield s
    s.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the contract every blob store meets ----------------------------------------------


def test_read_missing_names_the_s3_uri(store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFoundError, match="nope/x") as info:
        store.read("nope/x")
    assert f"s3://{BUCKET}/{store.prefix}nope/x" in str(info.value)


def test_list_paginates_past_1000_keys(store: S3BlobStore, raw: Any) -> None:
    """Seeded straight into moto's in-process backend (1100 HTTP PUTs take ~13 s); listed over HTTP."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    keys = [f"many/{i:05d}" for i in range(1100)]
    for key in keys:
        backend.put_object(BUCKET, store.prefix + key, b".")
    store.write("other", b"1")
    assert raw.list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)["IsTruncated"]  # really > 1 page
    assert store.list("many/") == keys
    assert len(store.list()) == 1101


def test_list_skips_objects_that_are_not_valid_keys(store: S3BlobStore, raw: Any) -> None:
    raw.put_object(Bucket=BUCKET, Key=store.prefix + "a//b", Body=b"foreign")
    store.write("a/c", b"1")
    assert store.list() == ["a/c"]


def test_create_is_refused_by_an_object_another_client_put(store: S3BlobStore, raw: Any) -> None:
    """The check is the server's (``If-None-Match: *``), so it holds against writers outside this store."""
    raw.put_object(Bucket=BUCKET, Key=store.prefix + "run/run.lock", Body=b"theirs")
    assert store.create("run/run.lock", b"mine") is False
    assert raw.get_object(Bucket=BUCKET, Key=store.prefix + "run/run.lock")["Body"].read() == b"theirs"
    assert store.create("run/other", b"mine") is True
    assert raw.get_object(Bucket=BUCKET, Key=store.prefix + "run/other")["Body"].read() == b"mine"


class ConflictingClient:
    """A real client whose first ``conflicts`` PUTs fail as S3 fails a conditional PUT racing a delete."""

    def __init__(self, inner: Any, conflicts: int) -> None:
        self.inner, self.conflicts, self.puts = inner, conflicts, 0

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        if self.puts <= self.conflicts:
            raise ClientError({"Error": {"Code": "ConditionalRequestConflict", "Message": "conflict"},
                               "ResponseMetadata": {"HTTPStatusCode": 409}}, "PutObject")
        return self.inner.put_object(**kwargs)


def test_create_asks_again_after_a_conflict_within_max_attempts(moto_endpoint: str, raw: Any) -> None:
    prefix = f"conflict{next(_prefixes)}"
    once = ConflictingClient(raw, conflicts=1)
    assert S3BlobStore(BUCKET, prefix=prefix, client=once, max_attempts=3).create("a", b"1") is True
    assert once.puts == 2 and raw.get_object(Bucket=BUCKET, Key=f"{prefix}/a")["Body"].read() == b"1"
    always = ConflictingClient(raw, conflicts=3)
    with pytest.raises(BlobStoreError, match=rf"cannot create s3://{BUCKET}/{prefix}/b.*ConditionalRequestConflict"):
        S3BlobStore(BUCKET, prefix=prefix, client=always, max_attempts=3).create("b", b"1")
    assert always.puts == 3


def test_uri(moto_endpoint: str) -> None:
    assert S3BlobStore(BUCKET, prefix="runs/exp1").uri("./a/b.bin") == f"s3://{BUCKET}/runs/exp1/a/b.bin"
    assert S3BlobStore(BUCKET, prefix="/runs/exp1/").uri("a") == f"s3://{BUCKET}/runs/exp1/a"
    assert S3BlobStore(BUCKET).uri("a/b.bin") == f"s3://{BUCKET}/a/b.bin"


def test_prefix_isolation(moto_endpoint: str, aws_env: None, raw: Any) -> None:
    base = f"iso{next(_prefixes)}"
    one = S3BlobStore(BUCKET, prefix=f"{base}/one", endpoint_url=moto_endpoint)
    two = S3BlobStore(BUCKET, prefix=f"{base}/one-more", endpoint_url=moto_endpoint)  # shares a string prefix
    one.write("k", b"1")
    two.write("k", b"2")
    two.write("only-two", b"2")
    assert (one.read("k"), two.read("k")) == (b"1", b"2")
    assert one.list() == ["k"] and two.list() == ["k", "only-two"]
    assert not one.exists("only-two")
    one.delete("k")
    assert two.read("k") == b"2"
    listed = raw.list_objects_v2(Bucket=BUCKET, Prefix=f"{base}/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"{base}/one-more/k", f"{base}/one-more/only-two"]


def test_multipart_upload_above_threshold(moto_endpoint: str, aws_env: None, raw: Any) -> None:
    store = S3BlobStore(
        BUCKET, prefix="multipart", endpoint_url=moto_endpoint, multipart_threshold=5 * 1024 * 1024
    )
    data = os.urandom(1024) * (6 * 1024)  # 6 MiB
    store.write("big.bin", data)
    assert store.read("big.bin") == data
    etag = raw.head_object(Bucket=BUCKET, Key="multipart/big.bin")["ETag"]
    assert etag.strip('"').endswith("-2"), f"expected a 2-part multipart ETag, got {etag}"
    store.write("small.bin", b"x")  # below the threshold: a single PUT
    assert "-" not in raw.head_object(Bucket=BUCKET, Key="multipart/small.bin")["ETag"]


# -- append: numbered parts, folded into the base object -------------------------------


class RequestLog:
    """Every request a raw client sends, with the bytes of its body: what an append costs the client."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, int]] = []
        client.meta.events.register("before-parameter-build.s3.*", self._note)

    def _note(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        body = params.get("Body") or b""
        self.sent.append((model.name, len(body) if isinstance(body, bytes) else -1))


def _objects(raw: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", ()))


def test_appends_are_parts_folded_into_the_base_every_compact_after(moto_endpoint: str, aws_env: None,
                                                                     raw: Any) -> None:
    prefix = f"parts{next(_prefixes)}"
    store = S3BlobStore(BUCKET, prefix, moto_endpoint, compact_after=3)
    for n in range(7):
        store.append("run/metrics.jsonl", f"{n}\n".encode())
    assert _objects(raw, prefix) == [f"{prefix}/run/metrics.jsonl", f"{prefix}/run/metrics.jsonl/.append-000000000007"]
    head = raw.head_object(Bucket=BUCKET, Key=f"{prefix}/run/metrics.jsonl")
    assert head["Metadata"] == {"appended-through": "6"}
    assert store.read("run/metrics.jsonl") == b"".join(f"{n}\n".encode() for n in range(7))
    assert store.list() == ["run/metrics.jsonl"]
    later = S3BlobStore(BUCKET, prefix, moto_endpoint, compact_after=3)  # a resumed run: numbering goes on
    later.append("run/metrics.jsonl", b"7\n")
    assert store.read("run/metrics.jsonl").endswith(b"6\n7\n")


def test_an_append_costs_one_small_put_however_big_the_blob(moto_endpoint: str, aws_env: None) -> None:
    client = _raw_client(moto_endpoint)
    store = S3BlobStore(BUCKET, f"cost{next(_prefixes)}", client=client, compact_after=1000)
    store.write("log", os.urandom(512 * 1024).hex().encode()[:1_000_000] + b"\n")
    store.append("log", b"first\n")  # learns where the key's appends stand
    log = RequestLog(client)
    for n in range(20):
        store.append("log", f"line {n}\n".encode())
    assert log.sent == [("PutObject", len(f"line {n}\n")) for n in range(20)]


def test_compaction_of_a_big_base_copies_it_server_side(moto_endpoint: str, aws_env: None) -> None:
    client = _raw_client(moto_endpoint)
    store = S3BlobStore(BUCKET, f"big{next(_prefixes)}", client=client, compact_after=2)
    big = b"x" * (6 * 1024 * 1024) + b"\n"
    store.write("log", big)
    store.append("log", b"a\n")
    log = RequestLog(client)
    store.append("log", b"b\n")
    assert max(size for _, size in log.sent) < 1024, log.sent  # the 6 MiB never went through this client
    assert "UploadPartCopy" in [name for name, _ in log.sent]
    assert store.read("log") == big + b"a\nb\n"


def test_a_reader_never_sees_a_line_twice_or_lost_while_appends_are_compacted(
    moto_endpoint: str, aws_env: None
) -> None:
    prefix = f"race{next(_prefixes)}"
    writer = S3BlobStore(BUCKET, prefix, moto_endpoint, compact_after=2)
    reader = S3BlobStore(BUCKET, prefix, moto_endpoint)
    writer.append("log", b"0\n")
    done = threading.Event()
    seen: list[list[bytes]] = []

    def read_all_the_time() -> None:
        while not done.is_set():
            seen.append(reader.read("log").split(b"\n")[:-1])

    thread = threading.Thread(target=read_all_the_time)
    thread.start()
    for n in range(1, 25):
        writer.append("log", f"{n}\n".encode())
    done.set()
    thread.join()
    assert seen and all(lines == [str(n).encode() for n in range(len(lines))] for lines in seen)


def test_missing_bucket_error_text(moto_endpoint: str, aws_env: None) -> None:
    store = S3BlobStore("tinkex-no-such-bucket", endpoint_url=moto_endpoint)
    for call in (
        store.read,
        store.exists,
        store.delete,
        lambda k: store.write(k, b"x"),
        lambda k: store.create(k, b"x"),
        lambda k: store.list(k),
    ):
        with pytest.raises(BlobStoreError) as info:
            call("a")
        message = str(info.value)
        assert not isinstance(info.value, BlobNotFoundError)
        assert "'tinkex-no-such-bucket' does not exist" in message
        assert "create it or fix TINKEX_S3_BUCKET" in message
        assert isinstance(info.value.__cause__, ClientError)


def test_missing_credentials_error_text(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no slow IMDS probe
    store = S3BlobStore(BUCKET, endpoint_url=moto_endpoint, region="us-east-1")
    for call in (store.read, lambda k: store.write(k, b"x")):
        with pytest.raises(BlobStoreError) as info:
            call("a")
        message = str(info.value)
        assert (
            "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message and "AWS_PROFILE" in message
        )
        assert type(info.value.__cause__).__name__ == "NoCredentialsError"


def test_endpoint_down_error_text(aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3BlobStore(BUCKET, endpoint_url=endpoint, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match=f"could not reach the S3 endpoint {endpoint}") as info:
        store.write("a", b"x")
    assert time.monotonic() - started < 5
    assert type(info.value.__cause__).__name__ == "EndpointConnectionError"


def test_access_denied_error_text() -> None:
    """moto's S3 server does not enforce IAM, so feed the translator a real botocore error."""
    store = S3BlobStore(BUCKET, client=object())
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    error = store._store_error(denied, "write", "a/b")
    assert isinstance(error, BlobStoreError) and not isinstance(error, BlobNotFoundError)
    assert "cannot write" in str(error) and f"'{BUCKET}'" in str(error) and "access denied" in str(error)


def test_server_restart_mid_run(aws_env: None) -> None:
    """Stop the S3 server under a live store, then start a new one on the same port.

    Observed (moto 5.x): a stopped ThreadedMotoServer refuses connections at once,
    so a write fails within milliseconds with a BlobStoreError naming the endpoint.
    A new ThreadedMotoServer in the same process serves the same in-process moto
    backend, so the bucket and every object written before the stop survive the
    restart, and the same store object (same client) keeps working afterwards.
    """
    server, endpoint = _start_server()
    port = int(endpoint.rsplit(":", 1)[1])
    try:
        _raw_client(endpoint).create_bucket(Bucket="tinkex-restart")
        store = S3BlobStore("tinkex-restart", prefix="run", endpoint_url=endpoint, max_attempts=2)
        for i in range(3):
            store.write(f"ckpt/{i}", bytes([i]))
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match=f"could not reach the S3 endpoint {endpoint}") as info:
        store.write("ckpt/3", b"lost")
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, BlobNotFoundError)
    assert "botocore" not in type(info.value).__module__

    server, _ = _start_server(port)
    try:
        assert store.list() == ["ckpt/0", "ckpt/1", "ckpt/2"]
        assert store.read("ckpt/2") == b"\x02"
        store.write("ckpt/3", b"\x03")
        assert store.read("ckpt/3") == b"\x03"
    finally:
        server.stop()
        store.close()


def test_repr_and_errors_never_show_credentials(store: S3BlobStore) -> None:
    assert "test" not in repr(store).replace(BUCKET, "")
    assert repr(store).startswith(f"S3BlobStore(bucket='{BUCKET}'")
    with pytest.raises(BlobNotFoundError) as info:
        store.read("missing")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(info.value).replace(BUCKET, "")


def test_injected_client_is_used_and_not_closed(moto_endpoint: str, raw: Any) -> None:
    store = S3BlobStore(BUCKET, prefix="injected", client=raw)
    store.write("a", b"1")
    store.close()
    assert raw.get_object(Bucket=BUCKET, Key="injected/a")["Body"].read() == b"1"


def test_bad_settings_rejected() -> None:
    from tinkex_cookbook.errors import ConfigError

    for kwargs in (
        {"bucket": ""},
        {"bucket": "s3://x"},
        {"bucket": "b", "max_attempts": 0},
        {"bucket": "b", "prefix": "a/../.."},
    ):
        with pytest.raises(ConfigError):
            S3BlobStore(**kwargs)  # type: ignore[arg-type]


def test_importing_cookbook_does_not_import_boto3() -> None:
    code = (
        "import sys, tinkex_cookbook, tinkex_cookbook.adapters.blobs.s3 as s3;"
        "s3.S3BlobStore('bkt', client=object()).uri('a');"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported eagerly'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, env=env, timeout=60)


def test_sl_run_on_local_torch_checkpoints_to_s3_resumes_from_it_and_matches_local_blobs(
    moto_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    """The same recipe, manifest `local` with only the blob store swapped for S3 (moto on 127.0.0.1)."""
    pytest.importorskip("torch")
    from tests.faults import metric_rows
    from tests.test_local_sl import CrashingService
    from tinkex_cookbook import Runtime, SlBasic, StageError

    cfg = {"model_name": "tiny-llama3", "dataset": "chitchat", "batch_size": 4, "max_length": 64, "lora_rank": 4,
           "learning_rate": 1e-2, "test_size": 4, "train_size": 16, "eval_every": 0, "save_every": 2,
           "log_path": "exp"}
    s3 = {"adapter": "s3", "bucket": BUCKET, "prefix": "sl-run", "endpoint_url": moto_endpoint}
    crashing = CrashingService(S3BlobStore(BUCKET, "sl-run", moto_endpoint), crash_at=4)
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, cfg, manifest="local", ports={"blob_store": s3, "training_client": crashing})
    crashing.close()
    resumed = Runtime.run(SlBasic, cfg, manifest="local", ports={"blob_store": s3})
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 2
    listed = S3BlobStore(BUCKET, "sl-run", moto_endpoint).list("exp/")
    assert {"exp/checkpoints.jsonl", "exp/metrics.jsonl", "exp/spec.json", "exp/loss.html"} <= set(listed)
    assert resumed.artifacts["metrics.jsonl"] == f"s3://{BUCKET}/sl-run/exp/metrics.jsonl"
    local = Runtime.run(SlBasic, cfg, manifest="local", ports={"blob_store": {"adapter": "local", "root": str(tmp_path)}})
    s3_rows = S3BlobStore(BUCKET, "sl-run", moto_endpoint).read("exp/metrics.jsonl").decode().splitlines()
    local_rows = (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()
    assert metric_rows(s3_rows) == metric_rows(local_rows) and local.state["step"] == resumed.state["step"] == 4
