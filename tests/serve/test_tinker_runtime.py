"""Recipes on the `tinker` adapter through the official SDK, against `serve` over the local backend.

The same run on `local` is the reference: training through Tinker's wire must not change a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.faults import metric_rows
from tests.serve.conftest import API_KEY
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.errors import ConfigError, TrainingBackendError
from tinkex_cookbook.ports import ModelInput, SamplingParams
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.serve import Fault, LocalTinker

CFG = {
    "model_name": "tiny-llama3", "dataset": "chitchat", "batch_size": 4, "max_length": 96, "lora_rank": 4,
    "learning_rate": 1e-2, "test_size": 4, "train_size": 16, "eval_every": 2, "save_every": 2,
    "log_path": "run",
}


@pytest.fixture(autouse=True)
def tinker_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", API_KEY)


def tinker_manifest(tmp_path: Path, server: LocalTinker, **options: Any) -> str:
    """A user manifest: everything as `local`, but training through the Tinker API at ``server``."""
    path = tmp_path / "local-tinker.yaml"
    binding = {"adapter": "tinker", "base_url": server.base_url, **options}
    path.write_text(json.dumps({
        "description": "local, training through a Tinker server", "extends": "local",
        "ports": {"training_client": binding, "blob_store": {"adapter": "local", "root": str(tmp_path / "runs")}},
    }))
    return str(path)


def rows(root: Path) -> list[dict[str, Any]]:
    return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Equal rows; floats to 1e-5 relative, or 1e-6 absolute for values near zero (a KL of 1e-7 is float
    noise: the local sampler decodes queued requests in one batch, the server gets them one by one)."""
    assert [r.keys() for r in got] == [r.keys() for r in expected]
    for row, want in zip(got, expected, strict=True):
        for key, value in want.items():
            assert row[key] == (pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value), key


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("local")
    Runtime.run(SlBasic, CFG, manifest="local", ports={"blob_store": {"adapter": "local", "root": str(root)}})
    return rows(root)


def test_sl_through_tinker_matches_local_and_samples(
    tmp_path: Path, server: LocalTinker, local_rows: list[dict[str, Any]]
) -> None:
    result = Runtime.run(SlBasic, CFG, manifest=tinker_manifest(tmp_path, server))
    assert_same_rows(rows(tmp_path / "runs"), local_rows)
    checkpoints = [json.loads(line) for line in (tmp_path / "runs/run/checkpoints.jsonl").read_text().splitlines()]
    assert checkpoints and all(c["state_path"].startswith("tinker://") for c in checkpoints)

    sampler_path = result.state["final_sampler_path"]
    assert sampler_path.startswith("tinker://")
    with Runtime.open(tinker_manifest(tmp_path, server)) as ports:
        sampler = ports.training_client.create_sampling_client(model_path=sampler_path)
        prompt = ModelInput.from_ints([128000, 9906, 11, 1268])
        response = sampler.sample(prompt, 2, SamplingParams(max_tokens=5, seed=7)).result()
        logprobs = sampler.compute_logprobs(prompt).result()
    assert [len(s.tokens) for s in response.sequences] == [5, 5]
    direct = server.api.service.create_sampling_client(model_path=server.api.resolve(sampler_path)["path"])
    expected = direct.sample(prompt, 2, SamplingParams(max_tokens=5, seed=7)).result()
    assert [s.tokens for s in response.sequences] == [s.tokens for s in expected.sequences]
    assert logprobs[0] is None and len(logprobs) == 4


def test_a_dropped_future_stops_the_run_clearly_and_it_resumes_to_the_same_metrics(
    tmp_path: Path, server: LocalTinker, local_rows: list[dict[str, Any]]
) -> None:
    manifest = tinker_manifest(tmp_path, server)
    fault = server.faults.add(Fault("/api/v1/optim_step", "drop_future", after=2, times=1))
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, CFG, manifest=manifest)
    assert fault.fired == 1
    assert isinstance(caught.value.__cause__, TrainingBackendError)
    assert "optim_step" in str(caught.value)
    resumed = Runtime.run(SlBasic, CFG, manifest=manifest)
    assert next(e.data["step"] for e in resumed.events if e.name == "train.resume") == 2
    assert_same_rows(rows(tmp_path / "runs"), local_rows)


def test_transient_faults_during_a_run_change_nothing(
    tmp_path: Path, server: LocalTinker, local_rows: list[dict[str, Any]]
) -> None:
    for fault in (Fault("/api/v1/forward_backward", "status", status=503, times=2, after=1, retry_after_ms=10),
                  Fault("/api/v1/optim_step", "lose_response", status=502, times=1, after=2, retry_after_ms=10),
                  Fault("/api/v1/save_weights", "status", status=429, times=2, retry_after_ms=10),
                  Fault("/api/v1/retrieve_future", "reset", times=2, after=5)):
        server.faults.add(fault)
    Runtime.run(SlBasic, CFG, manifest=tinker_manifest(tmp_path, server))
    assert all(f.fired == f.times for f in server.faults.faults)
    assert_same_rows(rows(tmp_path / "runs"), local_rows)


def test_a_request_that_never_finishes_fails_within_request_timeout(tmp_path: Path, server: LocalTinker) -> None:
    server.faults.add(Fault("/api/v1/forward_backward", "hang", after=1))
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, CFG, manifest=tinker_manifest(tmp_path, server, request_timeout=2))
    assert isinstance(caught.value.__cause__, TrainingBackendError)
    assert "request_timeout" in str(caught.value.__cause__)
    checkpoints = (tmp_path / "runs/run/checkpoints.jsonl")
    assert not checkpoints.exists() or all(json.loads(line) for line in checkpoints.read_text().splitlines())


def test_a_server_that_keeps_failing_gives_up_within_bounds(tmp_path: Path, server: LocalTinker) -> None:
    server.faults.add(Fault("/api/v1/create_model", "status", status=503, times=10_000, retry_after_ms=50))
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, CFG, manifest=tinker_manifest(tmp_path, server, request_timeout=2,
                                                           connect_attempts=2, backoff=0.1))
    assert isinstance(caught.value.__cause__, TrainingBackendError)
    assert "create_lora_training_client" in str(caught.value) and "after 2 attempts" in str(caught.value)


def test_a_wrong_key_is_a_config_error_that_names_the_variable_not_the_key(
    tmp_path: Path, server: LocalTinker
) -> None:
    settings = Settings(tinker_api_key="tml-not-the-servers-key")
    with pytest.raises(StageError, match="TINKER_API_KEY was rejected") as caught:
        Runtime.run(SlBasic, CFG, manifest=tinker_manifest(tmp_path, server), settings=settings)
    assert isinstance(caught.value.__cause__, ConfigError)
    assert "tml-not-the-servers-key" not in str(caught.value)


def test_rl_through_tinker_matches_local(tmp_path: Path, server: LocalTinker) -> None:
    from tinkex_cookbook import RlBasic

    cfg = {"model_name": "tiny-bytes", "env": "digits", "batch_size": 2, "group_size": 4, "max_tokens": 6,
           "learning_rate": 2e-2, "lora_rank": 4, "num_steps": 3, "save_every": 2, "log_path": "run"}
    Runtime.run(RlBasic, cfg, manifest="local", ports={"blob_store": {"adapter": "local", "root": str(tmp_path / "l")}})
    Runtime.run(RlBasic, cfg, manifest=tinker_manifest(tmp_path, server))
    drop = ("sample_seconds",)
    local = [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / "l")]
    remote = [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / "runs")]
    assert_same_rows(remote, local)
