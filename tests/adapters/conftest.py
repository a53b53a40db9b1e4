"""A real S3-compatible server for the blob store tests: moto's threaded server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

BUCKET = "tinkex-test"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto_server(port: int = 0) -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _host, bound = server.get_host_and_port()
    return server, f"http://127.0.0.1:{bound}"


def raw_s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")


@contextmanager
def moto_server(bucket: str | None = BUCKET, credentials: Mapping[str, str] = FAKE_CREDENTIALS) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 for the block, with ``bucket`` created (signed with ``credentials``;
    the environment is restored once it exists). Skips the test when boto3 or moto is missing."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    server, endpoint = start_moto_server()
    try:
        if bucket is not None:
            with pytest.MonkeyPatch.context() as mp:
                for name, value in credentials.items():
                    mp.setenv(name, value)
                raw_s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials for one test (tests/conftest.py clears AWS_* before every test)."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
