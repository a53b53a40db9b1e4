"""Manifest loading, extends, layering and errors; merge properties with hypothesis."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import ManifestError, UnknownAdapterError, UnknownManifestError, UnknownPortError
from tinkex_cookbook.runtime import ADAPTERS, ManifestLoader, Settings, shipped_manifest_names
from tinkex_cookbook.runtime.manifest import deep_merge, merge_layers, normalise_layer

loader = ManifestLoader(ADAPTERS)
PORTS = ADAPTERS.ports()


def adapters(manifest) -> dict[str, str]:
    return {port: binding.adapter for port, binding in manifest.ports.items()}


def test_the_five_manifests_ship() -> None:
    assert shipped_manifest_names() == ["default", "dev", "local", "prod", "test"]


@pytest.mark.parametrize("name", ["default", "dev", "local", "prod", "test"])
def test_every_shipped_manifest_binds_every_port(name: str) -> None:
    assert set(loader.resolve(name).ports) == set(PORTS)


def test_extends_chain_layers_child_over_parent() -> None:
    dev = loader.resolve("dev")
    assert dev.sources == ("default", "dev")
    assert adapters(dev)["training_client"] == "local_torch" and adapters(dev)["dataset_store"] == "hf"
    assert dev.ports["blob_store"].options.root == "runs/dev"
    assert adapters(loader.resolve("prod"))["blob_store"] == "s3"


def test_user_manifest_by_path_with_relative_extends(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("extends: test\nports:\n  blob_store: {adapter: local, root: /r}\n")
    (tmp_path / "mine.yaml").write_text("extends: base.yaml\nports:\n  dataset_store: local\n")
    mine = loader.resolve(str(tmp_path / "mine.yaml"))
    assert mine.name == "mine"
    assert adapters(mine)["dataset_store"] == "local" and mine.ports["blob_store"].options.root == "/r"
    assert adapters(mine)["training_client"] == "noop"


def test_extends_cycle_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ManifestError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        loader.resolve(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("ports:\n  nope: noop\n", UnknownPortError, ["'nope'", "'blob_store'", "'training_client'"]),
        ("ports:\n  blob_store: nope\n", UnknownAdapterError, ["'nope'", "'local'", "'noop'", "'s3'"]),
        ("ports:\n  blob_store: {adapter: local, nope: 1}\n", ManifestError, ["'nope'", "'root'"]),
        ("ports:\n  blob_store: {root: /x}\n", ManifestError, ["without naming its adapter"]),
        ("ports:\n  blob_store: [1, 2]\n", ManifestError, ["blob_store"]),
        ("ports: [\n", ManifestError, ["not valid YAML"]),
        ("nope: 1\n", ManifestError, ["nope", "'extends'", "'ports'"]),
        ("- 1\n", ManifestError, ["must be a mapping"]),
        ("extends: nope\n", UnknownManifestError, ["'nope'", "'test'"]),
    ],
)
def test_malformed_manifests_are_typed_errors(tmp_path: Path, text: str, error: type, words: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error) as caught:
        loader.resolve(str(path))
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_unknown_manifest_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownManifestError, match="'default', 'dev', 'local', 'prod', 'test'"):
        loader.resolve("nope")


def test_switching_adapter_drops_the_old_adapters_options() -> None:
    manifest = loader.resolve("local", overrides={"blob_store": "noop"})
    assert adapters(manifest)["blob_store"] == "noop"
    back = loader.resolve("local", overrides={"blob_store": "noop"}, env_ports={})
    assert back.ports["blob_store"].options.model_dump() == {}


def test_environment_sits_between_manifest_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_PORTS__BLOB_STORE__ADAPTER", "local")
    monkeypatch.setenv("TINKEX_PORTS__BLOB_STORE__ROOT", "/from/env")
    monkeypatch.setenv("TINKEX_PORTS__DATASET_STORE", "local")
    env = Settings().ports
    manifest = loader.resolve("test", env_ports=env)
    assert manifest.ports["blob_store"].options.root == "/from/env"
    assert adapters(manifest)["dataset_store"] == "local"
    over = loader.resolve("test", env_ports=env, overrides={"blob_store": {"adapter": "local", "root": "/x"}})
    assert over.ports["blob_store"].options.root == "/x"
    assert over.sources == ("test", "environment", "ports=")


def test_registry_lookups_are_total_over_registered_names() -> None:
    for entry in ADAPTERS.entries():
        assert ADAPTERS.get(entry.port, entry.name) is entry
        if entry.shipped:
            manifest = loader.resolve("test", overrides={entry.port: entry.name})
            assert manifest.ports[entry.port].adapter == entry.name


@given(st.text(min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_unregistered_names_are_always_unknown(name: str) -> None:
    for port in PORTS:
        if name not in ADAPTERS.names(port):
            with pytest.raises(UnknownAdapterError):
                ADAPTERS.get(port, name)


names = st.sampled_from(["noop", "local", "s3"])
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.none())
raw_binding = st.one_of(
    names,
    st.fixed_dictionaries({"adapter": names}, optional={"root": scalars, "bucket": scalars}),
)
raw_layers = st.dictionaries(st.sampled_from(PORTS[:3]), raw_binding, max_size=3)
layers = raw_layers.map(lambda raw: normalise_layer(raw, PORTS, "generated"))


@given(layers, layers, layers)
@settings(max_examples=200, deadline=None)
def test_merge_is_associative(a: dict, b: dict, c: dict) -> None:
    assert deep_merge(deep_merge(a, b), c) == deep_merge(a, deep_merge(b, c))
    assert merge_layers([a, b, c]) == deep_merge(deep_merge(a, b), c)


@given(layers)
@settings(max_examples=100, deadline=None)
def test_empty_layer_is_identity(a: dict) -> None:
    assert deep_merge(a, {}) == a == deep_merge({}, a)


def leaves(tree: dict, path: tuple = ()) -> dict:
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, (*path, key)) if isinstance(value, dict) and value else {(*path, key): value})
    return out


@given(st.lists(layers, min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_later_layers_win_on_every_key(stack: list[dict]) -> None:
    merged = leaves(merge_layers(stack))
    for path, value in leaves(stack[-1]).items():
        assert merged[path] == value


@given(st.lists(st.tuples(st.sampled_from(PORTS), st.sampled_from(["noop", "local"])), max_size=6))
@settings(max_examples=100, deadline=None)
def test_last_named_adapter_is_bound(choices: list[tuple[str, str]]) -> None:
    stack = [normalise_layer({port: name}, PORTS, "t") for port, name in choices
             if name in ADAPTERS.names(port)]
    merged = merge_layers([loader.defaults(), *stack])
    for port in PORTS:
        named = [layer[port]["adapter"] for layer in stack if port in layer]
        assert merged[port]["adapter"] == (named[-1] if named else "noop")
