"""Manifest edge cases not in ``test_manifests.py``: layer sources, per-adapter options,
environment errors, file forms, and extends chains that reach the same file by another path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinkex_cookbook import ManifestError, MissingSecretError, Runtime, UnknownPortError
from tinkex_cookbook.runtime import ADAPTERS, ManifestLoader, Settings
from tinkex_cookbook.runtime.manifest import normalise_layer

loader = ManifestLoader(ADAPTERS)


def bound(manifest) -> dict[str, str]:
    return {port: binding.adapter for port, binding in manifest.ports.items()}


def test_settings_ports_sit_between_the_manifest_and_ports_overrides() -> None:
    settings = Settings(ports={"blob_store": {"adapter": "local", "root": "/env"}, "dataset_store": "local"})
    manifest = Runtime.resolve_manifest("test", {"dataset_store": "noop"}, settings)
    assert manifest.sources == ("test", "environment", "ports=")
    assert manifest.ports["blob_store"].options.root == "/env"
    assert bound(manifest)["dataset_store"] == "noop"


def test_options_are_remembered_per_adapter_across_layers() -> None:
    manifest = loader.resolve("local", env_ports={"blob_store": "noop"}, overrides={"blob_store": "local"})
    assert bound(manifest)["blob_store"] == "local"
    assert manifest.ports["blob_store"].options.root == "runs"


def test_option_layers_merge_key_by_key() -> None:
    manifest = loader.resolve(
        "test", env_ports={"embedding_client": {"adapter": "noop", "dimension": 4}},
        overrides={"llm_client": {"adapter": "noop", "reply": "ok"}},
    )
    assert manifest.ports["embedding_client"].options.dimension == 4
    assert manifest.ports["llm_client"].options.reply == "ok"


def test_chain_of_user_file_over_dev_over_default_records_every_source(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text("extends: dev\ndescription: mine\nports:\n  hub_client: noop\n")
    manifest = loader.resolve(str(tmp_path / "mine.yml"))
    assert manifest.sources == ("default", "dev", str(tmp_path / "mine.yml"))
    assert (manifest.name, manifest.description) == ("mine", "mine")
    assert bound(manifest) | {"hub_client": "x"} == bound(loader.resolve("dev")) | {"hub_client": "x"}
    assert bound(manifest)["hub_client"] == "noop"


def test_empty_manifest_file_binds_every_port_to_noop(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert set(bound(loader.resolve(str(tmp_path / "empty.yaml"))).values()) == {"noop"}


def test_manifest_to_dict_is_json_with_options_inline() -> None:
    data = json.loads(json.dumps(loader.resolve("dev").to_dict()))
    assert data["name"] == "dev" and data["sources"] == ["default", "dev"]
    assert data["ports"]["blob_store"] == {"adapter": "local", "root": "runs/dev"}
    assert data["ports"]["training_client"] == {
        "adapter": "local_torch", "seed": 0, "dtype": "float32", "device": "cpu", "lora_alpha": 32.0,
        "micro_batch_tokens": 512}
    assert json.loads(json.dumps(loader.resolve("default").to_dict()))["ports"]["training_client"] == {
        "adapter": "tinker", "request_timeout": 900.0, "connect_attempts": 3, "backoff": 1.0}


def test_unknown_port_from_the_environment_says_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_PORTS__NOPE", "noop")
    with pytest.raises(UnknownPortError, match=r"TINKEX_PORTS__.*'nope'.*'blob_store'"):
        Runtime.resolve_manifest("test")


def test_environment_option_without_adapter_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_PORTS__BLOB_STORE__ROOT", "/x")
    with pytest.raises(ManifestError, match="without naming its adapter"):
        Runtime.resolve_manifest("test")


def test_overriding_the_keyed_port_removes_the_need_for_the_key() -> None:
    with pytest.raises(MissingSecretError):
        Runtime.resolve_manifest("default", settings=Settings())
    manifest = Runtime.resolve_manifest(
        "default", {"training_client": "noop", "hub_client": "noop", "blob_store": "noop"}, Settings(),
    )
    assert bound(manifest)["training_client"] == "noop"


def test_extends_cycle_through_a_parent_directory_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.yaml").write_text("extends: ../x/a.yaml\n")
    with pytest.raises(ManifestError, match="cycle"):
        loader.resolve(str(tmp_path / "x" / "a.yaml"))


def test_non_string_adapter_name_is_an_error() -> None:
    with pytest.raises(ManifestError, match="blob_store"):
        normalise_layer({"blob_store": {"adapter": 5}}, ADAPTERS.ports(), "ports= overrides")
