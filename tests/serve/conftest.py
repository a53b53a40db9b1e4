"""A local Tinker-compatible server over the local torch backend, started once per test module on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tinker")
pytest.importorskip("torch")

from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.serve import LocalTinker, local_tinker

API_KEY = "tml-serve-test-key-7Qx2"


@pytest.fixture(scope="module")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(server_root: Path) -> Iterator[LocalTinker]:
    blobs = LocalBlobStore(server_root)
    with LocalTorchTrainingService(blobs) as service, local_tinker(service, blobs, API_KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


@pytest.fixture(autouse=True)
def no_leftover_faults(server: LocalTinker) -> Iterator[None]:
    yield
    server.faults.clear()
    server.faults.latency = 0.0
