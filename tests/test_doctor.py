"""`doctor`: every port of a manifest built and checked on its own; broken ports FAIL with a fix, no secret shown."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tinkex_cookbook.cli_doctor import doctor
from tinkex_cookbook.errors import UnknownManifestError
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.builtin_adapters import builtin_registry
from tinkex_cookbook.runtime.doctor import FAIL, OK, SKIP, DoctorReport, diagnose
from tinkex_cookbook.runtime.registry import AdapterEntry

SERVER_KEY = "tml-doctor-server-key"
MARKER_KEY = "tml-marker-xyz"
PORTS = ["training_client", "dataset_store", "blob_store", "hub_client", "llm_client", "embedding_client",
         "vector_store"]

app = typer.Typer()
app.command()(doctor)


@app.command()
def version() -> None:  # a second command, so `doctor` is a subcommand as in the real CLI
    """Unused."""


def run_cli(*args: str) -> Any:
    """The CLI as a user runs it, on a wide terminal so no hint is folded across lines."""
    return CliRunner().invoke(app, ["doctor", *args], env={"COLUMNS": "400"})


def write_manifest(tmp_path: Path, ports: dict[str, Any], extends: str = "test") -> str:
    path = tmp_path / "user.yaml"
    path.write_text(json.dumps({"extends": extends, "description": "doctor test", "ports": ports}))
    return str(path)


def squeeze(text: str) -> str:
    """Text without whitespace and table borders: a hint folded over table lines reads whole again."""
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│┃")


def statuses(report: DoctorReport) -> dict[str, str]:
    return {check.port: check.status for check in report.checks}


@pytest.fixture(autouse=True)
def no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


@pytest.fixture(scope="module")
def tinker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Tinker API server on 127.0.0.1 (any free port) that accepts only SERVER_KEY."""
    pytest.importorskip("tinker")
    pytest.importorskip("torch")
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.serve import local_tinker

    blobs = LocalBlobStore(tmp_path_factory.mktemp("serve"))
    with LocalTorchTrainingService(blobs) as service, local_tinker(service, blobs, SERVER_KEY) as running:
        yield running.base_url


# -- healthy manifests -----------------------------------------------------------------------------


def test_test_manifest_is_all_ok_from_the_cli() -> None:
    result = run_cli("--manifest", "test")
    assert result.exit_code == 0, result.output
    for port in PORTS:
        assert any(line.split("│")[1].strip() == port and " ok " in line
                   for line in result.output.splitlines() if line.count("│") >= 4), port
    assert "every port is ready: 7 ok, 0 FAIL, 0 skip" in result.output
    assert "FAIL  " not in result.output and "│ FAIL" not in result.output


def test_local_manifest_is_all_ok_and_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    report = diagnose("local")
    assert statuses(report) == dict.fromkeys(PORTS, OK), report
    assert report.ok
    assert report["training_client"].hint.startswith("torch ")
    assert str(tmp_path / "runs" / ".doctor" / "probe-") in report["blob_store"].hint
    assert list(tmp_path.iterdir()) == []  # the probe's blob, .doctor/ and the new runs/ are gone


def test_probe_keeps_an_existing_root_and_its_files(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    report = diagnose(write_manifest(tmp_path, {"blob_store": {"adapter": "local", "root": str(root)}}))
    assert report["blob_store"].status == OK
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]


# -- broken ports ----------------------------------------------------------------------------------


def test_three_broken_ports_each_fail_with_their_fix_and_the_rest_are_ok(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("not a directory")
    manifest = write_manifest(tmp_path, {
        "training_client": "tinker",
        "llm_client": {"adapter": "openai_compatible"},
        "blob_store": {"adapter": "local", "root": str(not_a_dir)},
    })
    result = run_cli("--manifest", manifest)
    assert result.exit_code == 1, result.output
    assert "3 port(s) failed: 4 ok, 3 FAIL, 0 skip" in result.output

    report = diagnose(manifest)
    assert statuses(report) == {**dict.fromkeys(PORTS, OK), "training_client": FAIL, "llm_client": FAIL,
                                "blob_store": FAIL}
    assert report["training_client"].adapter == "tinker"
    assert "needs the environment variable TINKER_API_KEY, which is not set" in report["training_client"].hint
    assert "needs a base URL: set TINKEX_LLM_BASE_URL" in report["llm_client"].hint
    blob_hint = report["blob_store"].hint
    assert "cannot write blob" in blob_hint and str(not_a_dir) in blob_hint and "TINKEX_LOG_DIR" in blob_hint
    for check in report.checks:  # every hint reaches the table whole (each run probes its own key)
        hint = re.sub(r"probe-[0-9a-f]+", "probe-ID", check.hint)
        assert squeeze(hint) in squeeze(re.sub(r"probe-[0-9a-f]+", "probe-ID", result.output)), check


def test_unknown_adapter_and_bad_options_fail_only_their_ports(tmp_path: Path) -> None:
    report = diagnose(write_manifest(tmp_path, {
        "vector_store": "nope", "dataset_store": {"adapter": "noop", "rows": -1},
    }))
    assert statuses(report) == {**dict.fromkeys(PORTS, OK), "vector_store": FAIL, "dataset_store": FAIL}
    assert report["vector_store"].adapter == "nope"
    assert "unknown adapter 'nope' for port 'vector_store'" in report["vector_store"].hint
    assert "bad options for adapter 'noop' of port 'dataset_store'" in report["dataset_store"].hint


def test_missing_extra_is_a_fail_naming_the_extra(tmp_path: Path) -> None:
    registry = builtin_registry()
    registry.register(AdapterEntry("hub_client", "needs_extra", lambda options, settings: object(),
                                   extra="fancy", modules=("tinkex_no_such_module",)))

    report = diagnose(write_manifest(tmp_path, {"hub_client": "needs_extra"}), registry=registry)
    assert statuses(report) == {**dict.fromkeys(PORTS, OK), "hub_client": FAIL}
    assert "needs tinkex_no_such_module, which is not installed: pip install 'tinkex-cookbook[fancy]'" in (
        report["hub_client"].hint)


def test_a_port_built_on_a_port_that_cannot_be_built_is_skipped(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    pytest.importorskip("torch")
    report = diagnose(write_manifest(tmp_path, {"training_client": "local_torch", "blob_store": "s3"}))
    assert report["blob_store"].status == FAIL
    assert "needs a bucket: set TINKEX_S3_BUCKET" in report["blob_store"].hint
    assert report["training_client"].status == SKIP
    assert "built on blob_store" in report["training_client"].hint
    assert not report.ok


def test_openai_compatible_endpoint_must_be_an_http_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx")
    manifest = write_manifest(tmp_path, {"llm_client": "openai_compatible", "embedding_client": "openai_compatible"})
    monkeypatch.setenv("TINKEX_LLM_BASE_URL", "localhost:8000/v1")
    bad = diagnose(manifest)
    assert bad["llm_client"].status == FAIL and bad["embedding_client"].status == FAIL
    assert "'localhost:8000/v1' is not an http(s) URL: set TINKEX_LLM_BASE_URL" in bad["llm_client"].hint
    monkeypatch.setenv("TINKEX_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    good = diagnose(manifest)
    assert good["llm_client"].status == OK
    assert good["llm_client"].hint == "endpoint http://127.0.0.1:9/v1 (not contacted)"


def test_unknown_manifest_exits_2_without_a_table() -> None:
    with pytest.raises(UnknownManifestError):
        diagnose("nope")
    result = run_cli("--manifest", "nope")
    assert result.exit_code == 2
    assert "error: unknown manifest 'nope'" in result.output and "┃ port" not in result.output


# -- the tinker adapter, against a local Tinker server ---------------------------------------------


def tinker_manifest(tmp_path: Path, base_url: str) -> str:
    return write_manifest(tmp_path, {"training_client": {"adapter": "tinker", "base_url": base_url}})


def test_tinker_key_accepted_by_the_server(tmp_path: Path, tinker_server: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", SERVER_KEY)
    report = diagnose(tinker_manifest(tmp_path, tinker_server))
    assert statuses(report) == dict.fromkeys(PORTS, OK)
    assert report["training_client"].hint.startswith(f"TINKER_API_KEY accepted by {tinker_server}; ")


def test_rejected_key_fails_and_no_secret_is_ever_printed(tmp_path: Path, tinker_server: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    markers = {"TINKER_API_KEY": MARKER_KEY, "TINKEX_LLM_API_KEY": "sk-marker-llm", "HF_TOKEN": "hf_marker_tok"}
    for name, value in markers.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TINKER_BASE_URL", tinker_server)
    manifest = write_manifest(tmp_path, {"training_client": "tinker", "llm_client": "openai_compatible",
                                         "hub_client": "hf"})
    result = run_cli("--manifest", manifest)
    assert result.exit_code == 1
    assert f"TINKER_API_KEY was rejected by {tinker_server} (HTTP 401" in result.output

    report = diagnose(manifest)
    assert report["training_client"].status == FAIL
    assert "Export TINKER_API_KEY=tml-..." in report["training_client"].hint
    assert report["llm_client"].status == FAIL  # a key but no endpoint
    assert report["hub_client"].status == OK
    for secret in markers.values():
        assert secret not in result.output
        assert secret not in repr(report)
        assert secret[4:] not in result.output  # nor a part of it
        assert secret[4:] not in squeeze(result.output)  # nor one folded over two table lines


def test_unreachable_tinker_server_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tinker")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("TINKER_API_KEY", SERVER_KEY)
    report = diagnose(tinker_manifest(tmp_path, closed))
    assert report["training_client"].status == FAIL
    assert report["training_client"].hint.startswith(f"cannot reach {closed} (ConnectError")
    assert "TINKER_BASE_URL" in report["training_client"].hint


def test_a_silent_server_is_cut_off_at_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections and never answers costs the timeout, not the SDK's minutes of retries."""
    pytest.importorskip("tinker")
    monkeypatch.setenv("TINKER_API_KEY", SERVER_KEY)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        report = diagnose(tinker_manifest(tmp_path, base_url), Settings(), timeout=0.3)
        elapsed = time.monotonic() - started
    assert report["training_client"].status == FAIL
    assert "within 0.3 s" in report["training_client"].hint
    assert elapsed < 3.0


# -- s3, against moto's S3 server on 127.0.0.1 -------------------------------------------------------


def test_s3_probe_against_a_real_s3_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.adapters.conftest import BUCKET, FAKE_CREDENTIALS, moto_server, raw_s3_client

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        raw = raw_s3_client(endpoint)
        binding = {"adapter": "s3", "endpoint_url": endpoint, "prefix": "team", "max_attempts": 1}
        good = diagnose(write_manifest(tmp_path, {"blob_store": {**binding, "bucket": BUCKET}}))
        assert good["blob_store"].status == OK
        assert good["blob_store"].hint.startswith(f"wrote, read back and deleted s3://{BUCKET}/team/.doctor/probe-")
        # moto keeps every server's objects in one in-process backend, so look only under this prefix
        assert raw.list_objects_v2(Bucket=BUCKET, Prefix="team/").get("KeyCount") == 0
        bad = diagnose(write_manifest(tmp_path, {"blob_store": {**binding, "bucket": "no-such-bucket"}}))
        assert bad["blob_store"].status == FAIL
        assert "no-such-bucket" in bad["blob_store"].hint
