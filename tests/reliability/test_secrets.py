"""Secrets sweep: every secret the cookbook (or a library it drives) reads is set to a marker, then runs,
commands and failures are made to show and save all they can; no marker appears anywhere.

Searched for each marker: the whole value, its first and last 8 characters, its base64 and its hex, in
every file under run folders and blob roots (binary checkpoints too, and every object in an S3 bucket),
stdout and stderr (in process and of CLI subprocesses), log records, exception messages, reprs and
printed tracebacks, and in rich tables read with whitespace and borders removed (a value folded over two
table lines reads whole again). Log records: everything the cookbook logs at any level, and what any
library logs at INFO and above (what ``logging.basicConfig(level=INFO)`` would show).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.local_server import LocalServer
from tinkex_cookbook import CookbookError, Runtime, StageError
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.cli import app
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.pipeline.progress import PlainProgressSink, ProgressSink
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.manifest import shipped_manifest_names

MARKERS = {
    "TINKER_API_KEY": "tml-Kq7ZtinkerW2pX9r4",
    "TINKEX_SERVE_API_KEY": "tml-Vb8NserveLmQ6c1j",
    "HF_TOKEN": "hf_Jd0YhubtokKeR8u2mZ",
    "HUGGING_FACE_HUB_TOKEN": "hf_Wn7BaltTokXaT1s3qP",
    "TINKEX_LLM_API_KEY": "sk-Fp6CllmkeyVzM3x0wE",
    "OPENAI_API_KEY": "sk-Hr5DopenaiQwE7k8vB",
    "AWS_ACCESS_KEY_ID": "AKIAQ2W7MARKER5T1E9Y",
    "AWS_SECRET_ACCESS_KEY": "Sd3Fg6Hj9awsSecretZx5Cv8Bn1Mq4We7Rt0Yu3",
    "AWS_SESSION_TOKEN": "IQoSess7TokPz4Lk2Jh9Gf6Ds3Ap0MnB5vC8xZ1",
    "WANDB_API_KEY": "e1c2r3wandb4t5m6a7r8k9e0r1w2a3n4d5b6k7e8",
}
"""Distinct values, so a hit names the variable; the Tinker keys start with ``tml-`` as the SDK requires."""

BOX_CHARS = "│┃║┆┊|─━═╭╮╯╰┏┓┗┛┡┩╇┳┻"
ONE_THREAD = {"adapter": "local_torch", "threads": 1}

TEST_CONFIGS: dict[str, dict[str, Any]] = {
    "sl_basic": {"dataset": "chitchat", "batch_size": 8, "test_size": 8, "eval_every": 2, "save_every": 2},
    "rl_basic": {"env": "digits", "renderer_name": "role_colon", "num_steps": 3, "batch_size": 2,
                 "group_size": 4, "max_tokens": 8, "save_every": 2},
    "math_rl": {"renderer_name": "role_colon", "num_steps": 3, "batch_size": 2, "group_size": 4,
                "max_tokens": 8, "save_every": 2},
    "dpo": {"renderer_name": "role_colon", "batch_size": 4, "test_size": 8, "eval_every": 2, "save_every": 2},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon", "num_steps": 3,
                     "batch_size": 2, "group_size": 2, "max_tokens": 8, "eval_every": 2, "save_every": 2},
}
"""Tiny runs on the `test` manifest; every recipe reads its data through a local dataset store (the
packaged datasets), so one user manifest serves them all."""

LOCAL_CONFIGS: dict[str, dict[str, Any]] = {
    "sl_basic": {"model_name": "tiny-bytes", "dataset": "chitchat", "batch_size": 4, "train_size": 8,
                 "test_size": 4, "max_length": 64, "lora_rank": 4, "eval_every": 1, "save_every": 1},
    "dpo": {"model_name": "tiny-bytes", "dataset_split": "test", "batch_size": 8, "test_size": 8,
            "max_length": 256, "lora_rank": 4, "eval_every": 2, "save_every": 2},
    "rl_basic": {"model_name": "tiny-bytes", "env": "digits", "num_steps": 2, "batch_size": 2, "group_size": 2,
                 "max_tokens": 4, "lora_rank": 4, "save_every": 1},
    "math_rl": {"model_name": "tiny-bytes", "renderer_name": "role_colon", "num_steps": 2, "batch_size": 2,
                "group_size": 2, "max_tokens": 4, "lora_rank": 4, "save_every": 1},
    "distillation": {"model_name": "tiny-bytes", "teacher_model": "tiny-bytes", "num_steps": 2, "batch_size": 2,
                     "group_size": 2, "max_tokens": 4, "lora_rank": 4, "eval_every": 1, "save_every": 1},
}
"""Tiny runs on `local` (random-init byte-level model, one torch thread)."""


# -- the sweep ------------------------------------------------------------------------------------------


def marker_forms(marker: str) -> dict[str, bytes]:
    """The marker and what a careless redaction or encoding would still give away."""
    raw = marker.encode()
    return {
        "whole": raw, "first 8": raw[:8], "last 8": raw[-8:], "base64": base64.b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
    }


FORMS = {(name, form): value for name, marker in MARKERS.items() for form, value in marker_forms(marker).items()}


def squeeze(text: str) -> str:
    """Text without whitespace and table borders: a value folded across table lines reads whole again."""
    return "".join(ch for ch in text if not ch.isspace() and ch not in BOX_CHARS)


def exception_chain(exc: BaseException, hidden: bool = False) -> Iterator[BaseException]:
    """``exc`` and the exceptions a printed traceback shows with it (``__cause__``, and ``__context__``
    unless suppressed by ``raise ... from``); with ``hidden``, every exception still reachable from it."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        shown_context = hidden or not current.__suppress_context__
        stack.extend(e for e in (current.__cause__, current.__context__ if shown_context else None) if e is not None)


@dataclass
class Sweep:
    """Everything a scenario showed or left behind, to be searched for every marker form."""

    items: list[tuple[str, bytes]] = field(default_factory=list)

    def text(self, where: str, value: str | bytes | None) -> None:
        if value:
            data = value.encode(errors="surrogateescape") if isinstance(value, str) else bytes(value)
            self.items.append((where, data))

    def objects(self, where: str, *objects: object) -> None:
        for index, obj in enumerate(objects):
            self.text(f"{where}[{index}] repr", repr(obj))
            self.text(f"{where}[{index}] str", str(obj))

    def tree(self, where: str, root: Path) -> int:
        """Every file under ``root``, hidden and binary ones included; returns how many."""
        files = sorted(p for p in Path(root).rglob("*") if p.is_file())
        for path in files:
            self.text(f"{where}/{path.relative_to(root)}", path.read_bytes())
        return len(files)

    def error(self, where: str, exc: BaseException, hidden: bool = False) -> None:
        """The printed traceback, and str/repr/args of every exception it shows (``hidden``: of every
        exception reachable from ``exc``, shown or not)."""
        self.text(f"{where} traceback", "".join(traceback.format_exception(exc)))
        for depth, error in enumerate(exception_chain(exc, hidden)):
            self.text(f"{where} chain[{depth}] {type(error).__name__}", f"{error}\n{error!r}\n{error.args!r}")

    def leaks(self) -> list[str]:
        found = []
        for where, data in self.items:
            try:
                squeezed = squeeze(data.decode()).encode()
            except UnicodeDecodeError:
                squeezed = b""
            reported: set[str] = set()
            for (name, form), value in FORMS.items():
                for label, haystack in (("", data), (" (folded)", squeezed)):
                    at = haystack.find(value)
                    if at >= 0 and name not in reported:  # one line per marker and item: its first form found
                        reported.add(name)
                        context = haystack[max(0, at - 60): at + len(value) + 20]
                        found.append(f"{name} ({form}){label} in {where}: ...{context!r}...")
        return found

    def assert_clean(self, at_least: int = 1) -> None:
        assert len(self.items) >= at_least, f"the sweep saw only {len(self.items)} items"
        leaks = self.leaks()
        assert not leaks, f"{len(leaks)} leak(s):\n" + "\n".join(leaks)


class LogCapture(logging.Handler):
    """The cookbook's log records at every level, and any library's at INFO and above, formatted whole
    (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def sweep() -> Sweep:
    return Sweep()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in MARKERS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    return MARKERS


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root, cookbook = logging.getLogger(), logging.getLogger("tinkex_cookbook")
    levels = root.level, cookbook.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    cookbook.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        cookbook.setLevel(levels[1])


def finish(sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str], at_least: int = 1) -> None:
    out, err = capfd.readouterr()
    sweep.text("stdout", out)
    sweep.text("stderr", err)
    sweep.text("log records", "\n".join(logs.lines))
    sweep.assert_clean(at_least)


def write_manifest(path: Path, extends: str, ports: dict[str, Any]) -> str:
    path.write_text(json.dumps({"extends": extends, "description": "secrets sweep", "ports": ports}))
    return str(path)


def disk_manifest(tmp_path: Path, extends: str = "test", **ports: Any) -> str:
    """``extends`` with blobs under ``tmp_path/runs`` and data from the packaged datasets."""
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    bindings = {"blob_store": {"adapter": "local", "root": str(tmp_path / "runs")},
                "dataset_store": {"adapter": "local", "root": str(tmp_path / "data")}, **ports}
    if extends == "local":
        bindings.setdefault("training_client", ONE_THREAD)
    return write_manifest(tmp_path / f"{extends}-on-disk.yaml", extends, bindings)


def overrides(cfg: dict[str, Any]) -> list[str]:
    return [f"{key}={value}" for key, value in cfg.items()]


# -- settings, adapters and the objects a run is made of ---------------------------------------------------


def test_settings_adapters_and_containers_show_no_secret(
    secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path
) -> None:
    pytest.importorskip("tinker")
    pytest.importorskip("boto3")
    pytest.importorskip("huggingface_hub")
    from tinkex_cookbook.runtime.builtin_adapters import ADAPTERS
    from tinkex_cookbook.runtime.container import build_container

    settings = Settings()
    assert settings.tinker_api_key is not None and settings.hf_token is not None
    sweep.objects("settings", settings, settings.redacted(), settings.model_dump(), settings.model_dump_json())
    real = write_manifest(tmp_path / "real.yaml", "default", {
        "training_client": {"adapter": "tinker", "base_url": "http://127.0.0.1:9"},
        "dataset_store": {"adapter": "hf", "cache_dir": str(tmp_path / "hf")},
        "blob_store": {"adapter": "s3", "bucket": "b", "endpoint_url": "http://127.0.0.1:9"},
        "hub_client": {"adapter": "hf", "endpoint": "http://127.0.0.1:9", "cache_dir": str(tmp_path / "hub")},
        "llm_client": {"adapter": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
        "embedding_client": {"adapter": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
    })
    resolved = Runtime.resolve_manifest(real, settings=settings)
    container = build_container(resolved, settings, ADAPTERS)
    with Runtime.open(real, settings=settings) as ports:  # nothing is contacted to build them
        adapters = [getattr(ports, name) for name in ("training_client", "dataset_store", "blob_store", "hub_client",
                                                       "llm_client", "embedding_client", "vector_store")]
        sweep.objects("runtime", resolved, resolved.to_dict(), container, dict(container.providers), ports, *adapters)
    sweep.objects("dry run", Runtime.run("sl_basic", {}, manifest=real, dry_run=True, out=io.StringIO()))
    sweep.assert_clean(at_least=20)


# -- recipe runs in process ----------------------------------------------------------------------------------


def run_in_process(recipe: str, cfg: dict[str, Any], manifest: str, sweep: Sweep, terminal: bool) -> Any:
    """A run with every console sink at once: verbose lines, the live bar (forced) and plain lines."""
    from rich.console import Console

    bar, plain = io.StringIO(), io.StringIO()
    sinks = [ProgressSink(Console(file=bar, force_terminal=terminal, width=100)), PlainProgressSink(plain)]
    result = Runtime.run(recipe, cfg, manifest=manifest, verbose=True, sinks=sinks)
    sweep.objects(f"{recipe} result", result, result.events, result.state, result.artifacts)
    sweep.text(f"{recipe} progress bar", bar.getvalue())
    sweep.text(f"{recipe} plain progress", plain.getvalue())
    return result


@pytest.mark.parametrize("recipe", list(TEST_CONFIGS))
def test_each_recipe_on_test_in_process(
    recipe: str, secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    result = run_in_process(recipe, {**TEST_CONFIGS[recipe], "log_path": recipe}, disk_manifest(tmp_path),
                            sweep, terminal=recipe in ("sl_basic", "dpo"))
    assert result.state.get("final_checkpoint")
    assert sweep.tree("runs", tmp_path / "runs") >= 6
    finish(sweep, logs, capfd, at_least=10)


@pytest.mark.parametrize("recipe", ["sl_basic", "dpo", *(
    pytest.param(r, marks=pytest.mark.long) for r in LOCAL_CONFIGS if r not in ("sl_basic", "dpo"))])
def test_recipes_on_local_in_process(
    recipe: str, secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    result = run_in_process(recipe, {**LOCAL_CONFIGS[recipe], "log_path": recipe},
                            disk_manifest(tmp_path, "local"), sweep, terminal=True)
    assert result.state["final_checkpoint"].startswith("local://")
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "runs").rglob("*"))  # binary checkpoints are searched
    sweep.tree("runs", tmp_path / "runs")
    finish(sweep, logs, capfd, at_least=10)


# -- the sweep itself ----------------------------------------------------------------------------------------


def test_the_sweep_finds_every_form_in_text_tables_files_and_chains(tmp_path: Path) -> None:
    """A sweep that finds nothing must be because nothing is there."""
    marker = MARKERS["AWS_SECRET_ACCESS_KEY"]
    for form, value in marker_forms(marker).items():
        sweep = Sweep()
        sweep.text("text", b"prefix " + value + b" suffix")
        assert [leak.split(":")[0] for leak in sweep.leaks()] == [f"AWS_SECRET_ACCESS_KEY ({form}) in text"]
    folded = Sweep()
    folded.text("table", f"│ key {marker[:10]}   │\n│ {marker[10:]} │")
    assert any("(folded)" in leak for leak in folded.leaks())
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "state.pt").write_bytes(b"\x00\x01" + MARKERS["HF_TOKEN"].encode() + b"\xff")
    files = Sweep()
    assert files.tree("root", tmp_path) == 1 and files.leaks()
    try:
        try:
            raise RuntimeError(MARKERS["WANDB_API_KEY"])
        except RuntimeError:
            raise ValueError("scrubbed") from None
    except ValueError as exc:
        shown, hidden = Sweep(), Sweep()
        shown.error("error", exc)
        hidden.error("error", exc, hidden=True)
    assert not shown.leaks()
    assert any("chain[1] RuntimeError" in leak for leak in hidden.leaks())


# -- every other command, in process --------------------------------------------------------------------------


def invoke(sweep: Sweep, *args: str, expect: int | None = 0) -> Any:
    result = CliRunner().invoke(app, list(args))
    label = " ".join(args)
    sweep.text(f"`{label}` stdout", result.stdout)
    sweep.text(f"`{label}` stderr", result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        sweep.error(f"`{label}` exception", result.exception)
    if expect is not None:
        assert result.exit_code == expect, (label, result.output[-2000:], result.exception)
    return result


def test_every_cli_command_in_process(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # `doctor -m local` probes ./runs
    manifest = disk_manifest(tmp_path)
    for recipe, cfg in TEST_CONFIGS.items():
        invoke(sweep, "run", recipe, "-m", manifest, *overrides({**cfg, "log_path": f"inproc/{recipe}"}))
        invoke(sweep, "run", recipe, "-m", manifest, "--dry-run", *overrides(cfg))
        invoke(sweep, "spec", recipe, *overrides(cfg))
        invoke(sweep, "recipes", "describe", recipe)
    invoke(sweep, "recipes", "list")
    invoke(sweep, "manifests", "list")
    for name in [*shipped_manifest_names(), manifest]:
        invoke(sweep, "manifests", "show", name)
    for name in ("test", "local", manifest):
        invoke(sweep, "doctor", "-m", name)
    root = str(tmp_path / "runs")
    invoke(sweep, "runs", "list", "--root", root)
    for recipe in TEST_CONFIGS:
        invoke(sweep, "runs", "show", f"inproc/{recipe}", "--root", root)
    chart = tmp_path / "charts" / "compare.html"
    chart.parent.mkdir()
    invoke(sweep, "runs", "compare", "inproc/sl_basic", "inproc/dpo", "--root", root, "--metric", "learning_rate",
           "--out", str(chart))
    invoke(sweep, "runs", "plot", "inproc/rl_basic", "--root", root, "--out", str(tmp_path / "charts" / "rl.svg"))
    invoke(sweep, "run", "sl_basic", "-m", manifest, "dataset=nope", "log_path=failed", expect=2)  # a failed run
    sweep.tree("runs", tmp_path / "runs")
    sweep.tree("charts", tmp_path / "charts")
    finish(sweep, logs, capfd, at_least=60)


# -- servers on 127.0.0.1 that accept or reject the keys ---------------------------------------------------


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class TinkerServers:
    accepting: Any
    """Accepts TINKER_API_KEY: runs go through."""
    rejecting: Any
    """Accepts only TINKEX_SERVE_API_KEY, so the client's TINKER_API_KEY is refused."""
    root: Path


@pytest.fixture(scope="module")
def tinker_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerServers]:
    pytest.importorskip("tinker")
    pytest.importorskip("torch")
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.serve import local_tinker

    root = tmp_path_factory.mktemp("tinker-server")
    blobs = LocalBlobStore(root)
    with (LocalTorchTrainingService(blobs) as service,
          local_tinker(service, blobs, MARKERS["TINKER_API_KEY"]) as accepting,
          local_tinker(service, blobs, MARKERS["TINKEX_SERVE_API_KEY"]) as rejecting):
        yield TinkerServers(accepting, rejecting, root)


class EchoingEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint at its worst: refuses every key and echoes it back in the error
    body (401 for chat, 400 for embeddings, whose body the adapter quotes)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        status = 401 if self.path.endswith("/chat/completions") else 400
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}", "code": status}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echoing_llm() -> Iterator[str]:
    with LocalServer(EchoingEndpoint, "echoing-llm") as server:
        yield f"{server.url}/v1"


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (it accepts any credentials, so the AWS markers sign every request)."""
    from tests.adapters.conftest import moto_server

    with moto_server(bucket=None) as endpoint:
        yield endpoint


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")


def sweep_bucket(sweep: Sweep, endpoint: str, bucket: str) -> int:
    client = s3_client(endpoint)
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    for key in keys:
        sweep.text(f"s3://{bucket}/{key}", client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return len(keys)


def tinker_manifest(tmp_path: Path, base_url: str, name: str = "tinker.yaml") -> str:
    return write_manifest(tmp_path / name, "local", {
        "training_client": {"adapter": "tinker", "base_url": base_url, "connect_attempts": 1},
        "blob_store": {"adapter": "local", "root": str(tmp_path / "runs")},
    })


# -- doctor on broken and healthy ports -------------------------------------------------------------------


def test_doctor_on_ports_that_fail_their_checks(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, tinker_servers: TinkerServers, echoing_llm: str, moto_s3: str,
) -> None:
    from tinkex_cookbook.runtime.doctor import FAIL, OK, diagnose

    pytest.importorskip("huggingface_hub")
    llm = {"adapter": "openai_compatible", "base_url": echoing_llm}
    broken = {
        "closed port": {"training_client": {"adapter": "tinker", "base_url": closed_port_url()}},
        "rejected key": {
            "training_client": {"adapter": "tinker", "base_url": tinker_servers.rejecting.base_url},
            "blob_store": {"adapter": "s3", "bucket": "no-such-bucket", "endpoint_url": moto_s3, "max_attempts": 1},
            "llm_client": llm, "embedding_client": llm, "dataset_store": {"adapter": "hf"},
            "hub_client": {"adapter": "hf", "endpoint": closed_port_url()},
        },
    }
    manifests = {label: write_manifest(tmp_path / f"{i}.yaml", "test", ports) for i, (label, ports) in
                 enumerate(broken.items())}
    manifests["accepted key"] = write_manifest(tmp_path / "ok.yaml", "test", {
        "training_client": {"adapter": "tinker", "base_url": tinker_servers.accepting.base_url}})
    for label, manifest in manifests.items():
        report = diagnose(manifest, timeout=2.0)
        sweep.objects(f"doctor report ({label})", report, *report.checks)
        want = OK if label == "accepted key" else FAIL
        assert report["training_client"].status == want, report["training_client"]
        invoke(sweep, "doctor", "-m", manifest, expect=0 if label == "accepted key" else 1)
    assert diagnose(manifests["rejected key"])["blob_store"].status == FAIL
    finish(sweep, logs, capfd, at_least=20)


# -- rejected keys ------------------------------------------------------------------------------------------


def test_a_rejected_tinker_key_stops_the_run_without_showing_it(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, tinker_servers: TinkerServers,
) -> None:
    manifest = tinker_manifest(tmp_path, tinker_servers.rejecting.base_url)
    cfg = {**LOCAL_CONFIGS["sl_basic"], "log_path": "rejected"}
    with pytest.raises(CookbookError) as caught:
        Runtime.run("sl_basic", cfg, manifest=manifest, verbose=True)
    assert "TINKER_API_KEY was rejected" in str(caught.value)
    sweep.error("rejected run", caught.value)
    result = invoke(sweep, "run", "sl_basic", "-m", manifest, *overrides(cfg), "--verbose", expect=2)
    assert "TINKER_API_KEY was rejected" in result.stderr
    sweep.tree("runs", tmp_path / "runs")
    sweep.tree("server", tinker_servers.root)
    finish(sweep, logs, capfd)


def test_a_run_through_tinker_with_an_accepted_key_leaves_no_secret(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, tinker_servers: TinkerServers,
) -> None:
    manifest = tinker_manifest(tmp_path, tinker_servers.accepting.base_url)
    result = run_in_process("sl_basic", {**LOCAL_CONFIGS["sl_basic"], "log_path": "accepted"}, manifest, sweep,
                            terminal=False)
    assert result.state["final_checkpoint"].startswith("tinker://")
    sweep.tree("runs", tmp_path / "runs")
    assert sweep.tree("server", tinker_servers.root) >= 2
    finish(sweep, logs, capfd, at_least=20)


def test_a_rejected_llm_key_and_hub_token_show_neither(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, echoing_llm: str,
) -> None:
    pytest.importorskip("httpx")
    pytest.importorskip("huggingface_hub")
    from tests.adapters.hub_server import FakeHub
    from tinkex_cookbook.ports import ChatMessage

    llm = {"adapter": "openai_compatible", "base_url": echoing_llm, "model": "m", "max_attempts": 1}
    manifest = disk_manifest(tmp_path, llm_client=llm, embedding_client=llm)
    cfg = {"teacher": "llm", "mode": "off_policy", "renderer_name": "role_colon", "num_steps": 2, "batch_size": 2,
           "log_path": "llm-teacher"}
    with pytest.raises(CookbookError) as caught:
        Runtime.run("distillation", cfg, manifest=manifest, verbose=True)
    assert "rejected the API key" in str(caught.value)
    sweep.error("llm teacher run", caught.value)
    with FakeHub({"org/tiny": {"config.json": b"{}"}}, token="hf_only_the_server_knows") as hub:
        hub_manifest = disk_manifest(tmp_path, hub_client={"adapter": "hf", "endpoint": hub.endpoint,
                                                           "cache_dir": str(tmp_path / "hub-cache")})
        with Runtime.open(hub_manifest, {"llm_client": llm, "embedding_client": llm}) as ports:
            calls = {
                "llm complete": lambda: ports.llm_client.complete([ChatMessage(role="user", content="hi")]),
                "embed": lambda: ports.embedding_client.embed(["hi"]),
                "hub download": lambda: ports.hub_client.download("org/tiny", "config.json"),
                "hub model_info": lambda: ports.hub_client.model_info("org/tiny"),
            }
            for label, call in calls.items():
                with pytest.raises(Exception) as failed:
                    call()
                assert isinstance(failed.value, CookbookError | ConnectionError), (label, failed.value)
                sweep.error(label, failed.value)
            assert any(MARKERS["HF_TOKEN"] in (auth or "") for auth in hub.authorizations)  # the token was sent
            sweep.objects("ports", ports, ports.llm_client, ports.embedding_client, ports.hub_client)
    sweep.tree("runs", tmp_path / "runs")
    sweep.tree("hub cache", tmp_path / "hub-cache")
    finish(sweep, logs, capfd, at_least=10)


# -- failures ------------------------------------------------------------------------------------------------


class LeakyTrainingService(NoopTrainingService):
    """A training port whose backend error quotes every secret of the process, as a careless SDK might."""

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        client = super().create_lora_training_client(base_model, rank, seed)

        def forward_backward(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("backend refused the request; environment: " + " ".join(
                f"{name}={os.environ[name]}" for name in MARKERS))

        client.forward_backward = forward_backward
        return client


def test_a_stage_failing_with_every_secret_in_its_error_shows_none(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with pytest.raises(StageError) as caught:
        Runtime.run("sl_basic", {**TEST_CONFIGS["sl_basic"], "log_path": "leaky"}, manifest=disk_manifest(tmp_path),
                    ports={"training_client": LeakyTrainingService()}, verbose=True)
    assert "stage 'forward_backward' failed: RuntimeError: backend refused the request" in str(caught.value)
    sweep.error("failed run", caught.value)
    log = (tmp_path / "runs" / "leaky" / "run.log").read_text()
    assert "workflow.exception error=RuntimeError stage=forward_backward" in log or "workflow.exception" in log
    sweep.tree("runs", tmp_path / "runs")
    finish(sweep, logs, capfd, at_least=6)


def test_a_scrubbed_error_keeps_no_reference_to_the_secret(secrets_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(StageError) as caught:
        Runtime.run("sl_basic", {**TEST_CONFIGS["sl_basic"], "log_path": "leaky"}, manifest="test",
                    ports={"training_client": LeakyTrainingService()})
    sweep = Sweep()
    sweep.error("failed run", caught.value, hidden=True)
    sweep.assert_clean()


# -- a secret pasted into a manifest option -------------------------------------------------------------------


def url_with_key_manifest(tmp_path: Path) -> str:
    """A manifest whose LLM endpoint carries the LLM key in its URL (secrets belong in the environment, but
    users paste URLs with credentials): the cookbook knows the value is a secret, so it must not repeat it."""
    url = f"http://user:{MARKERS['TINKEX_LLM_API_KEY']}@127.0.0.1:9/v1"
    return disk_manifest(tmp_path, llm_client={"adapter": "openai_compatible", "base_url": url})


def test_a_secret_in_a_manifest_option_is_hidden_by_doctor_and_runs_show(
    secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path
) -> None:
    manifest = url_with_key_manifest(tmp_path)
    Runtime.run("sl_basic", {**TEST_CONFIGS["sl_basic"], "log_path": "pasted"}, manifest=manifest)
    assert "**********" in invoke(sweep, "runs", "show", "pasted", "--root", str(tmp_path / "runs")).stdout
    invoke(sweep, "doctor", "-m", manifest)
    sweep.assert_clean(at_least=2)


def test_a_secret_in_a_manifest_option_is_never_saved_or_printed(
    secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path
) -> None:
    manifest = url_with_key_manifest(tmp_path)
    Runtime.run("sl_basic", {**TEST_CONFIGS["sl_basic"], "log_path": "pasted"}, manifest=manifest)
    sweep.tree("runs", tmp_path / "runs")
    invoke(sweep, "run", "sl_basic", "-m", manifest, "--dry-run")
    invoke(sweep, "manifests", "show", manifest)
    sweep.assert_clean(at_least=8)


# -- bad settings next to secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"TINKEX_PORTS": "[1, 2]"}, {"TINKEX_PORTS": "{not json"}, {"TINKEX_PORTS__TRAINING_CLIENT": "nope"},
    {"TINKEX_PORTS__BLOB_STORE__ADAPTER": "local", "TINKEX_PORTS__BLOB_STORE__ROOTS": "x"},
    {"TINKEX_MANIFEST": "no-such-manifest"},
])
def test_bad_settings_next_to_secrets_fail_without_showing_them(
    bad: dict[str, str], secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture,
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    for label, call in {"Settings()": Settings, "Runtime.run": lambda: Runtime.run("sl_basic", {}),
                        "Runtime.run dry": lambda: Runtime.run("sl_basic", {}, dry_run=True)}.items():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every kind of failure is searched
            sweep.error(label, exc)
    for args in (["run", "sl_basic"], ["run", "sl_basic", "--dry-run"], ["doctor"], ["manifests", "show", "test"]):
        result = invoke(sweep, *args, expect=None)
        assert result.exit_code != 0 or args[0] == "manifests", (args, result.output)
    finish(sweep, logs, capfd, at_least=8)


def test_settings_built_in_code_with_bad_values_show_no_secret(secrets_env: dict[str, str], sweep: Sweep) -> None:
    attempts = {
        "a list as the key": {"tinker_api_key": [MARKERS["TINKER_API_KEY"]]},
        "a number as the token": {"hf_token": 7, "llm_api_key": MARKERS["TINKEX_LLM_API_KEY"]},
        "bad ports next to keys": {"ports": 5, "tinker_api_key": MARKERS["TINKER_API_KEY"],
                                   "HF_TOKEN": MARKERS["HF_TOKEN"]},
        "a dict as the key": {"TINKEX_LLM_API_KEY": {"key": MARKERS["TINKEX_LLM_API_KEY"]}},
    }
    for label, kwargs in attempts.items():
        with pytest.raises(ConfigError, match="invalid cookbook settings: ") as caught:
            Settings(**kwargs)
        assert "TINKEX_PORTS" in str(caught.value) or "_KEY" in str(caught.value) or "TOKEN" in str(caught.value)
        sweep.error(label, caught.value, hidden=True)
    sweep.assert_clean(at_least=8)


# -- runs in S3 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipes", [
    ["sl_basic"], pytest.param(list(TEST_CONFIGS), marks=pytest.mark.long, id="every-recipe"),
])
def test_runs_stored_in_s3_hold_no_secret(
    recipes: list[str], secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture,
    capfd: pytest.CaptureFixture[str], tmp_path: Path, moto_s3: str,
) -> None:
    """The AWS markers sign every request (moto takes any credentials); the bucket's objects are searched."""
    bucket = f"tinkex-secrets-{len(recipes)}"
    s3_client(moto_s3).create_bucket(Bucket=bucket)
    blob = {"adapter": "s3", "bucket": bucket, "prefix": "team", "endpoint_url": moto_s3, "max_attempts": 2}
    manifest = disk_manifest(tmp_path, blob_store=blob)
    for recipe in recipes:
        run_in_process(recipe, {**TEST_CONFIGS[recipe], "log_path": recipe, "save_every": 4}, manifest, sweep,
                       terminal=False)
    assert sweep_bucket(sweep, moto_s3, bucket) >= 7 * len(recipes)
    finish(sweep, logs, capfd, at_least=10)


# -- the CLI as users run it: subprocesses --------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Command:
    args: list[str]
    code: int = 0
    env: dict[str, str] = field(default_factory=dict)


def cli_command() -> list[str]:
    """The ``tinkex-cookbook`` entry point installed beside this Python, else ``python -m``."""
    script = Path(sys.executable).with_name("tinkex-cookbook")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tinkex_cookbook.cli"]


def run_clis(commands: dict[str, Command], cwd: Path, workers: int = 2) -> dict[str, subprocess.CompletedProcess]:
    """Each command as its own process (``workers`` at a time), output captured, exit status checked."""
    from concurrent.futures import ThreadPoolExecutor

    cwd.mkdir(exist_ok=True)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "error", "COLUMNS": "80"}

    def one(command: Command) -> subprocess.CompletedProcess:
        return subprocess.run([*cli_command(), *command.args], cwd=cwd, env={**env, **command.env},
                              capture_output=True, timeout=300, check=False)

    with ThreadPoolExecutor(workers) as pool:
        futures = {label: pool.submit(one, command) for label, command in commands.items()}
        done = {label: future.result() for label, future in futures.items()}
    for label, process in done.items():
        assert process.returncode == commands[label].code, (label, process.stderr.decode()[-3000:])
    return done


def sweep_processes(sweep: Sweep, done: dict[str, subprocess.CompletedProcess]) -> None:
    for label, process in done.items():
        sweep.text(f"`{label}` stdout", process.stdout)
        sweep.text(f"`{label}` stderr", process.stderr)


def cli_matrix(tmp_path: Path, servers: TinkerServers | None, full: bool) -> dict[str, Command]:
    """sl_basic on `test` with the default progress (piped: a plain line every tenth of the run) and dpo
    --verbose; ``full``: every recipe both ways on `test`, every recipe on `local`, a run whose key a
    Tinker server rejects, and every other command (doctor on failing ports among them). Processes that
    import torch or the Tinker SDK cost seconds each, so the default form leaves them to the tests above,
    which run every recipe and command both ways in process, through the same CLI code."""
    test, local = disk_manifest(tmp_path), disk_manifest(tmp_path / "local", "local")
    test_runs = [(r, v) for r in TEST_CONFIGS for v in (False, True)] if full else [("sl_basic", False),
                                                                                     ("dpo", True)]
    local_runs = [(r, i % 2 == 0) for i, r in enumerate(LOCAL_CONFIGS)] if full else []
    commands = {}
    for manifest, name, runs, configs in (
        (test, "test", test_runs, TEST_CONFIGS), (local, "local", local_runs if _has("torch") else [], LOCAL_CONFIGS),
    ):
        for recipe, verbose in runs:
            log_path = f"cli-{recipe}{'-v' if verbose else ''}"
            commands[f"run {recipe} -m {name}{' -v' if verbose else ''}"] = Command(
                ["run", recipe, "-m", manifest, *overrides({**configs[recipe], "log_path": log_path}),
                 *(["--verbose"] if verbose else [])])
    if not full or servers is None:
        return commands
    rejecting = tinker_manifest(tmp_path, servers.rejecting.base_url, "rejecting.yaml")
    closed = write_manifest(tmp_path / "closed.yaml", "test", {
        "training_client": {"adapter": "tinker", "base_url": closed_port_url()}})
    commands.update({
        "run (rejected key) -v": Command(
            ["run", "sl_basic", "-m", rejecting, *overrides({**LOCAL_CONFIGS["sl_basic"], "log_path": "rejected"}),
             "--verbose"], code=2),
        "doctor (rejected key)": Command(["doctor", "-m", rejecting], code=1),
        "run --dry-run (test)": Command(["run", "dpo", "-m", test, "--dry-run"]),
        "run --dry-run (local)": Command(["run", "sl_basic", "-m", local, "--dry-run"]),
        "run (a failing stage)": Command(["run", "sl_basic", "-m", test, "dataset=nope", "log_path=failed"], code=2),
        "run (bad TINKEX_PORTS)": Command(["run", "sl_basic", "-m", test], code=2, env={"TINKEX_PORTS": "[1, 2]"}),
        "doctor (bad TINKEX_PORTS)": Command(["doctor", "-m", test], code=2, env={"TINKEX_PORTS": "{not json"}),
        "doctor -m test": Command(["doctor", "-m", "test"]),
        "doctor -m local": Command(["doctor", "-m", "local"]),
        "doctor (closed port)": Command(["doctor", "-m", closed], code=1),
        "doctor (accepted key)": Command(["doctor", "-m", tinker_manifest(tmp_path, servers.accepting.base_url,
                                                                            "accepting.yaml")]),
        "manifests list": Command(["manifests", "list"]),
        "recipes list": Command(["recipes", "list"]),
    })
    for name in [*shipped_manifest_names(), test]:
        commands[f"manifests show {Path(name).name}"] = Command(["manifests", "show", name])
    for recipe, cfg in TEST_CONFIGS.items():
        commands[f"spec {recipe}"] = Command(["spec", recipe, *overrides(cfg)])
        commands[f"recipes describe {recipe}"] = Command(["recipes", "describe", recipe])
    return commands


def test_the_cli_as_subprocesses(secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path) -> None:
    done = run_clis(cli_matrix(tmp_path, None, full=False), tmp_path / "cwd")
    for label, process in done.items():
        assert b"completed" in process.stdout, label
        assert (b"step 1/" if label.endswith("-v") else b"step ") in process.stderr, label
    sweep_processes(sweep, done)
    assert sweep.tree("runs", tmp_path / "runs") >= 12
    sweep.assert_clean(at_least=16)


@pytest.mark.long
def test_every_command_as_a_subprocess(
    secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path, tinker_servers: TinkerServers
) -> None:
    done = run_clis(cli_matrix(tmp_path, tinker_servers, full=True), tmp_path / "cwd")
    assert b"rejected" in done["doctor (rejected key)"].stdout
    assert b"TINKER_API_KEY was rejected" in done["run (rejected key) -v"].stderr
    root = str(tmp_path / "runs")
    browse = {"runs list": Command(["runs", "list", "--root", root]),
              "runs compare": Command(["runs", "compare", "cli-sl_basic", "cli-dpo", "--root", root, "--metric",
                                       "learning_rate", "--out", str(tmp_path / "compare.html")])}
    browse.update({f"runs show {r}": Command(["runs", "show", f"cli-{r}", "--root", root]) for r in TEST_CONFIGS})
    done.update(run_clis(browse, tmp_path / "cwd"))
    sweep_processes(sweep, done)
    sweep.tree("runs", tmp_path / "runs")
    sweep.tree("local runs", tmp_path / "local")
    sweep.tree("cwd", tmp_path / "cwd")
    sweep.text("chart", (tmp_path / "compare.html").read_bytes())
    sweep.tree("server", tinker_servers.root)
    sweep.assert_clean(at_least=150)


@pytest.mark.long
def test_serve_announces_and_refuses_without_showing_its_key(
    secrets_env: dict[str, str], sweep: Sweep, tmp_path: Path
) -> None:
    """`serve` reads TINKEX_SERVE_API_KEY; a client sending TINKER_API_KEY (another key) is refused."""
    import urllib.error
    import urllib.request

    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TINKEX_LOG_DIR": str(tmp_path / "served")}
    process = subprocess.Popen([*cli_command(), "serve", "--manifest", "local", "--port", "0"], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = process.stdout.readline().decode()  # type: ignore[union-attr]
        assert "serving the Tinker API at http://127.0.0.1:" in line, line
        base_url = line.split(" at ", 1)[1].split()[0]
        request = urllib.request.Request(f"{base_url}/api/v1/create_session", data=b"{}", method="POST",
                                         headers={"X-API-Key": MARKERS["TINKER_API_KEY"]})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
        sweep.text("refusal", refused.value.read())
        refused.value.close()
    finally:
        process.terminate()
        out, err = process.communicate(timeout=60)
    sweep.text("serve stdout", line.encode() + out)
    sweep.text("serve stderr", err)
    if (tmp_path / "served").exists():
        sweep.tree("served", tmp_path / "served")
    sweep.assert_clean(at_least=2)


@pytest.mark.long
def test_an_offline_wandb_run_holds_no_secret(
    secrets_env: dict[str, str], sweep: Sweep, logs: LogCapture, capfd: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """W&B reads WANDB_API_KEY itself; its offline run files, debug logs and console lines are searched
    (its console on, so its own lines show)."""
    wandb = pytest.importorskip("wandb")
    sink_module = pytest.importorskip("tinkex_cookbook.pipeline.wandb_sink")
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home" / name.lower()))
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    wandb.teardown()  # W&B reads its environment once per process, at its first run
    try:
        settings = {"x_disable_stats": True, "x_disable_meta": True, "disable_git": True,
                    "x_save_requirements": False}
        sink = sink_module.WandbSink("secrets", mode="offline", dir=tmp_path / "wandb", settings=settings)
        result = Runtime.run("sl_basic", {**TEST_CONFIGS["sl_basic"], "log_path": "wandb"},
                             manifest=disk_manifest(tmp_path), sinks=[sink], verbose=True)
        sweep.objects("wandb sink", sink, result)
    finally:
        wandb.teardown()
    assert list((tmp_path / "wandb").rglob("*.wandb"))
    sweep.tree("wandb", tmp_path / "wandb")
    sweep.tree("wandb home", tmp_path / "home")
    sweep.tree("runs", tmp_path / "runs")
    finish(sweep, logs, capfd, at_least=10)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
