"""Malformed manifests, generated: every one is a typed ``ManifestError`` naming the file and what is valid.

``tests/test_manifests.py`` and ``tests/test_manifest_edges.py`` hold one hand-written example per
mistake; here hypothesis writes the manifests: ``extends`` cycles of any length reached through any
spelling of the paths, missing parents at any depth, documents that are not mappings, any text or
bytes at all, wrong types for each top-level key, unknown keys, ports, adapters and options, and
repeated keys. The invariant under all of them: loading either succeeds or raises a ``ManifestError``
(never a bare ``yaml``, ``pydantic`` or ``UnicodeDecodeError``), whose message names the manifest
the mistake is in and, where there is a list, the valid names. A run given a bad manifest writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinkex_cookbook import (
    ManifestError,
    Runtime,
    SlBasic,
    UnknownAdapterError,
    UnknownManifestError,
    UnknownPortError,
)
from tinkex_cookbook.runtime import ADAPTERS, ManifestLoader, shipped_manifest_names
from tinkex_cookbook.runtime.manifest import ManifestFile

loader = ManifestLoader(ADAPTERS)
PORTS = ADAPTERS.ports()
TOP_LEVEL = sorted(ManifestFile.model_fields)
SHORT = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12)
scalars = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=8))
yaml_values = st.recursive(
    st.none() | scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


def fresh_dir(factory: pytest.TempPathFactory) -> Path:
    """A new folder per generated example (``tmp_path`` is shared by every example of a test)."""
    return factory.mktemp("manifests")


def write(folder: Path, name: str, data: object) -> Path:
    """``data`` as YAML; a ``str`` is taken to be YAML text already."""
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def load_error(path: Path, error: type[Exception] = ManifestError) -> str:
    with pytest.raises(error) as caught:
        loader.resolve(str(path))
    return str(caught.value)


# --- extends --------------------------------------------------------------------------------------


def spellings(folder: Path, target: str, depth: int) -> list[str]:
    """Ways to write ``extends: target`` from a file in ``folder`` (all resolve to the same file)."""
    return [target, f"./{target}", f"sub/../{target}", str(folder / target), f"./sub/./../{target}"][:depth + 2]


@st.composite
def cycles(draw: st.DrawFn) -> tuple[int, int, list[int], int]:
    """(cycle length, lead-in chain length, spelling per file, file to start from)."""
    length, lead = draw(st.integers(1, 5)), draw(st.integers(0, 3))
    spelling = draw(st.lists(st.integers(0, 4), min_size=length + lead, max_size=length + lead))
    return length, lead, spelling, draw(st.integers(0, length + lead - 1))


def check_cycle(factory: pytest.TempPathFactory, case: tuple[int, int, list[int], int]) -> None:
    length, lead, spelling, start = case
    folder = fresh_dir(factory)
    (folder / "sub").mkdir()
    files = [f"lead{i}.yaml" for i in range(lead)] + [f"cycle{i}.yaml" for i in range(length)]
    for i, name in enumerate(files):
        target = files[i + 1] if i + 1 < len(files) else files[lead]  # the last file closes the cycle
        ways = spellings(folder, target, 3)
        write(folder, name, {"extends": ways[spelling[i] % len(ways)], "ports": {"blob_store": "noop"}})
    message = load_error(folder / files[start])
    assert "'extends' cycle" in message
    for name in files[lead:]:  # every file of the cycle is named, by its resolved path
        assert str((folder / name).resolve()) in message, message


@given(cycles())
@SHORT
def test_extends_cycles_of_any_length_and_spelling_are_named(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[int, int, list[int], int]
) -> None:
    check_cycle(tmp_path_factory, case)


@pytest.mark.long
@given(cycles())
@LONG
def test_extends_cycles_long(tmp_path_factory: pytest.TempPathFactory, case: tuple[int, int, list[int], int]) -> None:
    check_cycle(tmp_path_factory, case)


def test_self_extends_by_symlink_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "real.yaml", "extends: link.yaml\n")
    os.symlink(tmp_path / "real.yaml", tmp_path / "link.yaml")
    assert "cycle" in load_error(tmp_path / "link.yaml")


@given(st.integers(0, 4), names, st.sampled_from([".yaml", ".yml", "", ".json"]))
@SHORT
def test_a_missing_parent_names_the_manifest_that_extends_it(
    tmp_path_factory: pytest.TempPathFactory, depth: int, missing: str, suffix: str
) -> None:
    """At any depth of the chain: the error names the child, the missing parent and the valid names."""
    folder = fresh_dir(tmp_path_factory)
    parent = f"{missing}{suffix}"
    if parent in shipped_manifest_names() or parent in {f"m{i}.yaml" for i in range(depth + 1)}:
        return
    for i in range(depth, -1, -1):
        write(folder, f"m{i}.yaml", {"extends": f"m{i + 1}.yaml" if i < depth else parent})
    message = load_error(folder / "m0.yaml", UnknownManifestError)
    assert f"manifest {str((folder / f'm{depth}.yaml').resolve())!r} extends {parent!r}" in message, message
    assert "'default', 'dev', 'local', 'prod', 'test'" in message


# --- whole documents ------------------------------------------------------------------------------


@given(yaml_values.filter(lambda v: v is not None and not isinstance(v, dict)))
@SHORT
def test_documents_that_are_not_mappings_are_rejected(tmp_path_factory: pytest.TempPathFactory, value: object) -> None:
    """``[]``, ``false``, ``0``, ``''`` used to load as an empty manifest; only an empty file is one."""
    path = write(fresh_dir(tmp_path_factory), "doc.yaml", yaml.safe_dump(value))  # a str value is dumped too
    message = load_error(path)
    assert "must be a mapping" in message and str(path.resolve()) in message
    assert all(repr(key) in message for key in TOP_LEVEL)


def check_any_text(folder: Path, text: str | bytes) -> None:
    path = folder / "any.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        manifest = loader.resolve(str(path))
    except ManifestError as error:
        assert str(path.resolve()) in str(error), str(error)
    else:
        assert set(manifest.ports) == set(PORTS)


yaml_ish = st.text(alphabet=st.sampled_from(list("ports:extends{}[]-,'\"&*!|>#%@` \n\tab\\")), max_size=60)


@given(st.one_of(st.text(max_size=60), yaml_ish, st.binary(max_size=60)))
@SHORT
def test_any_text_or_bytes_loads_or_is_a_manifest_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    check_any_text(fresh_dir(tmp_path_factory), text)


@pytest.mark.long
@given(st.one_of(st.text(max_size=200), yaml_ish, st.binary(max_size=200)))
@LONG
def test_any_text_or_bytes_long(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    check_any_text(fresh_dir(tmp_path_factory), text)


def test_bytes_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("description: caf\xe9\n".encode("latin-1"))
    assert "cannot be read as UTF-8" in load_error(path) and str(path) in load_error(path)


def test_a_repeated_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, "twice.yaml", "ports:\n  blob_store: noop\n  blob_store: {adapter: local, root: r}\n")
    message = load_error(path)
    assert "duplicate key 'blob_store'" in message and "line 3" in message
    merged = write(tmp_path, "merged.yaml", "ports:\n  blob_store: {<<: {adapter: noop}, adapter: local, root: a}\n"
                   "x-unused: 1\n")
    assert "'x-unused'" in load_error(merged)  # a merge key is no repeated key; unknown keys still fail
    anchors = write(tmp_path, "anchors.yaml", "ports:\n  blob_store: &b {adapter: local, root: a}\n")
    assert "line 2, column 15: found a YAML anchor" in load_error(anchors)  # tests/reliability/test_hostile_yaml.py


# --- fields ---------------------------------------------------------------------------------------

wrong_types = {
    "extends": yaml_values.filter(lambda v: v is not None and not isinstance(v, str)),
    "description": yaml_values.filter(lambda v: not isinstance(v, str)),
    "ports": yaml_values.filter(lambda v: not isinstance(v, dict)),
}


@given(st.sampled_from(sorted(wrong_types)).flatmap(lambda key: st.tuples(st.just(key), wrong_types[key])))
@SHORT
def test_wrong_types_for_top_level_keys_name_the_key(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, object]
) -> None:
    key, value = case
    path = write(fresh_dir(tmp_path_factory), "typed.yaml", {key: value})
    message = load_error(path)
    assert f"'{key}'" in message and str(path.resolve()) in message, message


@given(names.filter(lambda n: n not in TOP_LEVEL), yaml_values)
@SHORT
def test_unknown_top_level_keys_list_the_valid_ones(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: object
) -> None:
    message = load_error(write(fresh_dir(tmp_path_factory), "extra.yaml", {"extends": "test", key: value}))
    assert repr(key) in message and all(repr(valid) in message for valid in TOP_LEVEL), message


@given(names.filter(lambda n: n not in PORTS), st.sampled_from(["noop", "local"]))
@SHORT
def test_unknown_ports_name_the_manifest_and_list_the_valid_ports(
    tmp_path_factory: pytest.TempPathFactory, port: str, adapter: str
) -> None:
    path = write(fresh_dir(tmp_path_factory), "port.yaml", {"ports": {port: adapter}})
    message = load_error(path, UnknownPortError)
    assert repr(port) in message and str(path.resolve()) in message
    assert all(repr(valid) in message for valid in PORTS)


@given(st.sampled_from(PORTS), names, st.integers(0, 2))
@SHORT
def test_unknown_adapters_name_the_manifest_that_chose_them(
    tmp_path_factory: pytest.TempPathFactory, port: str, adapter: str, depth: int
) -> None:
    """The adapter may be chosen by a parent: the error names the file that chose it, not the child."""
    if adapter in ADAPTERS.names(port):
        return
    folder = fresh_dir(tmp_path_factory)
    write(folder, f"m{depth}.yaml", {"extends": "test", "ports": {port: {"adapter": adapter}}})
    for i in range(depth - 1, -1, -1):
        write(folder, f"m{i}.yaml", {"extends": f"m{i + 1}.yaml"})
    message = load_error(folder / "m0.yaml", UnknownAdapterError)
    assert message.startswith(str((folder / f"m{depth}.yaml").resolve())), message
    assert repr(adapter) in message and all(repr(valid) in message for valid in ADAPTERS.names(port))


shipped_entries = [entry for entry in ADAPTERS.entries() if entry.shipped]


@given(st.sampled_from(shipped_entries), names, scalars)
@SHORT
def test_unknown_options_name_the_manifest_and_the_valid_options(
    tmp_path_factory: pytest.TempPathFactory, entry: object, option: str, value: object
) -> None:
    valid = entry.options.model_fields  # type: ignore[attr-defined]
    if option in valid or option == "adapter":  # "adapter" names the adapter itself, not an option
        return
    path = write(fresh_dir(tmp_path_factory), "opt.yaml",
                 {"ports": {entry.port: {"adapter": entry.name, option: value}}})  # type: ignore[attr-defined]
    message = load_error(path)
    assert message.startswith(str(path.resolve())) and repr(option) in message, message
    assert all(repr(name) in message for name in valid)


@given(st.sampled_from(PORTS), yaml_values.filter(lambda v: not isinstance(v, str | dict)))
@SHORT
def test_a_binding_that_is_neither_a_name_nor_a_mapping_says_how_to_write_it(
    tmp_path_factory: pytest.TempPathFactory, port: str, binding: object
) -> None:
    path = write(fresh_dir(tmp_path_factory), "binding.yaml", {"ports": {port: binding}})
    message = load_error(path)
    assert repr(port) in message and str(path.resolve()) in message and "{adapter: NAME" in message, message


@pytest.mark.parametrize(
    ("option", "value"), [("root", 5), ("root", ["a"]), ("root", {"a": 1})],
)
def test_wrongly_typed_option_values_name_the_file_option_and_value(tmp_path: Path, option: str, value: object) -> None:
    path = write(tmp_path, "typed.yaml", {"ports": {"blob_store": {"adapter": "local", option: value}}})
    message = load_error(path)
    assert message.startswith(str(path.resolve())) and repr(option) in message and repr(value)[:20] in message


def test_bad_options_from_the_environment_and_overrides_name_their_layer() -> None:
    with pytest.raises(ManifestError, match=r"^ports= overrides: bad options for adapter 'local'"):
        loader.resolve("test", overrides={"blob_store": {"adapter": "local", "nope": 1}})
    with pytest.raises(UnknownAdapterError, match=r"^environment \(TINKEX_PORTS__\*\): unknown adapter 'nope'"):
        loader.resolve("test", env_ports={"blob_store": "nope"})


# --- a run given a bad manifest -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["extends: self.yaml\n", "extends: missing.yaml\n", "[]\n", "ports:\n  hub_client: nope\n",
     "ports:\n  nope: noop\n", "ports: [\n", "extends: test\nports:\n  llm_client: {adapter: noop, x: 1}\n"],
)
def test_a_run_with_a_bad_manifest_fails_before_writing_anything(tmp_path: Path, text: str) -> None:
    manifest = write(tmp_path, "self.yaml", text)
    root = tmp_path / "blobs"
    with pytest.raises(ManifestError):
        Runtime.run(SlBasic, {"renderer_name": "role_colon", "batch_size": 8}, manifest=str(manifest),
                    ports={"blob_store": {"adapter": "local", "root": str(root)}})
    assert not root.exists()
