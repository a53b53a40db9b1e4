"""`tinkex-cookbook serve` as users start it: a subprocess on 127.0.0.1 that answers the SDK's first calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.hostile_http import connect, read_reply, request_head


def _start(tmp_path: Path, *options: str, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "TINKEX_"))}
    environ.update(TINKEX_LOG_DIR=str(tmp_path), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "tinkex_cookbook.cli", "serve", "--manifest", "local", "--port", "0", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )


def test_serve_announces_its_url_and_checks_the_key(tmp_path: Path) -> None:
    process = _start(tmp_path, "--max-body-mb", "1", TINKEX_SERVE_API_KEY="tml-cli-test-key-9Fw3")
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert "serving the Tinker API at http://127.0.0.1:" in line and "tml-cli-test-key-9Fw3" not in line
        base_url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(f"{base_url}/api/v1/healthz", timeout=10) as reply:
            assert json.load(reply) == {"status": "ok"}
        request = urllib.request.Request(f"{base_url}/api/v1/create_session", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        refused.value.close()
        request.add_header("X-API-Key", "tml-cli-test-key-9Fw3")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["session_id"]
        with connect(base_url) as sock:  # the 413 comes before the body is sent
            sock.sendall(request_head("POST", "/api/v1/create_session", {
                "X-API-Key": "tml-cli-test-key-9Fw3", "Content-Length": str(2 << 20)}))
            too_large = read_reply(sock, timeout=10)
        assert too_large is not None and too_large[0] == 413 and b"--max-body-mb" in too_large[1]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_serve_without_a_key_says_which_variable_to_set(tmp_path: Path) -> None:
    process = _start(tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "TINKEX_SERVE_API_KEY" in err and "tml-" in err


def test_serve_refuses_a_bad_limit_option_naming_the_limits(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "TINKEX_"))}
    environ.update(TINKEX_LOG_DIR=str(tmp_path), TINKEX_SERVE_API_KEY="tml-cli-test-key-9Fw3")
    process = subprocess.run(
        [sys.executable, "-m", "tinkex_cookbook.cli", "serve", "--port", "0", "--limit", "max_sampels=9"],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )
    assert process.returncode == 2
    assert "max_sampels=9" in process.stderr and "max_samples" in process.stderr


@pytest.mark.parametrize(("options", "key", "expected"), [
    ((), "tml-local", "too weak"),
    (("--max-body-mb", "0"), "tml-cli-test-key-9Fw3", "--max-body-mb"),
    (("--idle-timeout", "-1"), "tml-cli-test-key-9Fw3", "--idle-timeout"),
])
def test_serve_refuses_a_weak_key_or_a_bad_limit_before_serving(
    tmp_path: Path, options: tuple[str, ...], key: str, expected: str,
) -> None:
    process = _start(tmp_path, *options, TINKEX_SERVE_API_KEY=key)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and not out
    assert expected in err and "tml-local" not in err
