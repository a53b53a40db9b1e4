"""Manifests, config files and ``TINKEX_PORTS`` built to hurt: each is a typed error naming the file.

``test_bad_manifests.py`` tries careless mistakes; here the input is hostile: alias bombs (a few
hundred bytes that stand for billions of values), nesting thousands deep, tens of thousands of keys,
files of megabytes, and a ``.yaml`` symlink to a file that is no manifest at all. Each must end in a
``ManifestError`` or ``ConfigError`` that names the file (and the line where there is one), quickly,
through the library and the command line alike, and never quote the text of a file that is not YAML.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tinkex_cookbook import ConfigError, ManifestError, Runtime
from tinkex_cookbook.cli import app
from tinkex_cookbook.errors import shown
from tinkex_cookbook.runtime import ADAPTERS, ManifestLoader, Settings
from tinkex_cookbook.runtime.config_file import load_config_file
from tinkex_cookbook.runtime.user_files import MAX_DEPTH, MAX_FILE_BYTES, StrictYamlLoader

loader = ManifestLoader(ADAPTERS)
runner = CliRunner()
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def alias_bomb(levels: int = 9) -> str:
    """A flow list whose last item stands for ``9 ** levels`` strings, in about 40 bytes a level."""
    anchors = ['&a ["x","x","x","x","x","x","x","x","x"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    anchors += [f"&{names[i]} [{','.join([f'*{names[i - 1]}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


def load_manifest(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        loader.resolve(str(path))
    return str(caught.value)


def load_config(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    return str(caught.value)


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stderr


# --- aliases ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "line"), [
    ("key.yaml", f"x-bomb: {alias_bomb()}\n", 1),  # an unknown key: its error listed the value
    ("binding.yaml", f"extends: test\nports:\n  blob_store: {alias_bomb()}\n", 3),  # quoted by the port's error
    ("key-of-a-key.yaml", f"ports:\n  ? {alias_bomb(3)}\n  : noop\n", 2),  # the repeated-key check built it
    ("merge.yaml", "base: &b {adapter: noop}\nports:\n  blob_store: {<<: *b}\n", 1),
])
def test_an_alias_bomb_in_a_manifest_is_refused_at_its_line(tmp_path: Path, name: str, text: str, line: int) -> None:
    """Used to take gigabytes (a MemoryError) or hang past a minute; refused before anything is built."""
    path = tmp_path / name
    path.write_text(text)
    start = time.perf_counter()
    message = load_manifest(path)
    assert time.perf_counter() - start < 5
    assert message.startswith(f"manifest {str(path)!r}, line {line}, ") and "anchors and aliases are not" in message


def test_an_alias_bomb_in_a_config_file_is_refused_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"learning_rate: {alias_bomb()}\n")
    code, err = cli("run", "sl_basic", "-m", "test", "--dry-run", "--config", str(path))
    assert code == 2 and err.startswith(f"error: config file {str(path)!r}, line 1, column 17: found a YAML anchor")


@given(st.sampled_from(["*a", "&a x", "&a [1]", "<<: *a", "!!str &a x"]), st.sampled_from(["a: {}", "- {}", "{}"]))
@FEW
def test_any_alias_or_anchor_is_refused_in_any_place(
    tmp_path_factory: pytest.TempPathFactory, use: str, around: str,
) -> None:
    path = tmp_path_factory.mktemp("aliases") / "run.yaml"
    path.write_text("a: &a 1\n" + around.replace("{}", use if use.startswith("<<") else "{k: " + use + "}") + "\n")
    message = load_config(path)
    assert "anchors and aliases are not accepted" in message and ", line " in message


class Leaf:
    """A value that counts how often an error message renders it."""

    renders = 0

    def __repr__(self) -> str:
        Leaf.renders += 1
        return "leaf"


def shared_lists(levels: int) -> list[Any]:
    """What an alias bomb loads to: one list shared ``9 ** levels`` times, cheap to hold, huge to walk."""
    value: list[Any] = [Leaf()] * 9
    for _ in range(levels):
        value = [value] * 9
    return value


@pytest.mark.parametrize("raise_error", [
    lambda bomb: loader.resolve("test", overrides={"blob_store": bomb}),
    lambda bomb: loader.resolve("test", overrides={"blob_store": {"adapter": "local", "root": bomb}}),
    lambda bomb: Runtime.build_spec("sl_basic", {"learning_rate": bomb}),
    lambda bomb: Settings(log_dir=bomb),
])
def test_an_error_quotes_a_value_without_walking_all_of_it(raise_error: Callable[[Any], object]) -> None:
    """Values that do not come from a YAML file (``ports=``, a config dict) can still be shared that way:
    an error quotes a few items of a few levels (it rendered every one of 9 ** 6 leaves)."""
    Leaf.renders = 0
    with pytest.raises((ManifestError, ConfigError)) as caught:
        raise_error(shared_lists(5))
    assert Leaf.renders < 100 and "[[" in str(caught.value)
    assert len(shown(shared_lists(20))) <= 60


# --- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2000])
@pytest.mark.parametrize(("name", "template", "error"), [
    ("deep.yaml", "ports:\n  blob_store: {}\n", ManifestError),
    ("run.yaml", "learning_rate: {}\n", ConfigError),
    ("run.yml", "learning_rate:\n  x: {}\n", ConfigError),
    ("run.json", '{{"learning_rate": {}}}', ConfigError),
])
def test_deep_nesting_is_an_error_naming_the_file(
    tmp_path: Path, depth: int, name: str, template: str, error: type[Exception],
) -> None:
    """``[`` x 2000 was a RecursionError traceback; a depth just past the bound loaded and would recurse
    later (merging layers, printing)."""
    path = tmp_path / name
    path.write_text(template.format("[" * depth + "]" * depth))
    with pytest.raises(error) as caught:
        loader.resolve(str(path)) if error is ManifestError else load_config_file(path)
    message = str(caught.value)
    assert message.startswith(f"{'manifest' if error is ManifestError else 'config file'} {str(path)!r}")
    assert "deeper than 64 levels" in message or "too deeply" in message
    assert "line " in message or name.endswith(".json")


def test_nesting_up_to_the_bound_loads(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert load_config_file(path) == {"x": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}


@pytest.mark.parametrize(("variable", "value"), [
    ("TINKEX_PORTS", '{"blob_store": ' + "[" * 2000 + "]" * 2000 + "}"),
    ("TINKEX_PORTS", '{"blob_store": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}"),
    ("TINKEX_PORTS__BLOB_STORE" + "__A" * 200, "1"),
])
def test_a_deep_tinkex_ports_is_a_config_error(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=r"^TINKEX_PORTS nests (arrays or objects too deeply|.* deeper than 64 levels)"):
        Settings()
    code, err = cli("manifests", "show", "test")
    assert code == 2 and err.startswith("error: TINKEX_PORTS nests ")


# --- many keys, big files -----------------------------------------------------------------------


class Key(str):
    """A key that counts how often it is compared for equality (the work a repeated-key check does)."""

    compared = 0
    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        Key.compared += 1
        return str.__eq__(self, other)


class CountingLoader(StrictYamlLoader):
    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> Any:
        return Key(super().construct_scalar(node))


def test_the_repeated_key_check_is_linear(keys: int = 1500) -> None:
    """It compared each key with every one before it (40,000 keys took 15 s); now a key is compared only
    with one of equal hash. ``bench/yaml_keys.py`` times it against plain ``yaml.safe_load``."""
    Key.compared = 0
    data = yaml.load("".join(f"k{i}: {i}\n" for i in range(keys)), Loader=CountingLoader)
    assert len(data) == keys and Key.compared < keys
    with pytest.raises(yaml.YAMLError, match="found duplicate key 'k3'"):
        yaml.load("".join(f"k{i}: {i}\n" for i in range(keys)) + "k3: 0\n", Loader=CountingLoader)


def test_a_json_config_of_many_keys_loads_in_linear_time(tmp_path: Path) -> None:
    """Its repeated-key check counted every key among all of them: minutes for 20,000 keys."""
    path = tmp_path / "many.json"
    path.write_text(json.dumps({f"k{i}": i for i in range(20_000)}))
    start = time.perf_counter()
    assert len(load_config_file(path)) == 20_000
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_manifest_over_the_size_bound_names_its_size_and_the_bound(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    path.write_text("description: " + "x" * MAX_FILE_BYTES + "\n")
    message = load_manifest(path)
    assert message == (f"manifest {str(path)!r} is over {MAX_FILE_BYTES} bytes (it has {MAX_FILE_BYTES + 14} "
                       "bytes); is it the right file?")
    code, err = cli("manifests", "show", str(path))
    assert code == 2 and err == f"error: {message}\n"


def test_many_unknown_keys_are_listed_a_few_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("".join(f"k{i}: 1\n" for i in range(5000)))
    message = load_manifest(path)
    assert "'k9': Extra inputs" in message and "'k10'" not in message and "and 4990 more" in message


# --- files that are not YAML --------------------------------------------------------------------

SECRET_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./$!*&[]{}#\"'%@`|>-?,="
shadow_lines = st.lists(st.tuples(
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), st.text(SECRET_CHARS, min_size=20, max_size=40),
    st.booleans(),
), min_size=1, max_size=4)


@given(shadow_lines, st.sampled_from(["manifest.yaml", "run.yaml", "run.json"]), st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_symlink_to_a_file_that_is_no_yaml_never_shows_its_text(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, str, bool]], name: str, twice: bool,
) -> None:
    """A ``.yaml`` symlink to ``/etc/shadow``-like lines (a hash first or later, of any characters but
    blanks): whether the text parses (as one string) or not, the error names the file and the type or
    position of the problem, and quotes no run of ten characters of any hash (a line given twice is a
    repeated key, which is described, not quoted)."""
    lines = lines + lines[:1] if twice else lines
    folder = tmp_path_factory.mktemp("links")
    target = folder / "shadow"
    target.write_text("".join(f"{secret}:{user}:19000:0:99999:7:::\n" if first else f"{user}:{secret}:19000::\n"
                              for user, secret, first in lines))
    link = folder / name
    link.symlink_to(target)
    if name == "manifest.yaml":
        message = load_manifest(link)
        assert f"manifest {str(target)!r}" in message
    else:
        message = load_config(link)
        assert message.startswith(f"config file {str(link)!r}")
    for _, secret, _ in lines:
        assert not any(secret[i:i + 10] in message for i in range(len(secret) - 9)), message


@pytest.mark.parametrize(("text", "expected"), [
    ("root:x:0:0:root:/root:/bin/bash\n",
     "must be a mapping with keys 'description', 'extends', 'models', 'ports', got a str"),
    ("line one\n  secret: [unclosed\n", "is not valid YAML: line 2, column 9: mapping values are not allowed here"),
    ("\x00\x01binary", "is not valid YAML: line 1: the control character #x0000 is not allowed in YAML text"),
    ("a: 1\n\tsecret\n", "is not valid YAML: line 2, column 1: found character '\\t' that cannot start any token"),
])
def test_a_file_that_is_no_manifest_is_named_by_type_and_position(tmp_path: Path, text: str, expected: str) -> None:
    """It used to print the first 60 characters of the file, or PyYAML's snippet of the bad line."""
    target = tmp_path / "passwd"
    target.write_text(text)
    (tmp_path / "m.yaml").symlink_to(target)
    code, err = cli("manifests", "show", str(tmp_path / "m.yaml"))
    assert code == 2 and err.startswith(f"error: manifest {str(target)!r} {expected}"), err
    assert "root:x" not in err and "unclosed" not in err and "secret" not in err and "binary" not in err


@pytest.mark.parametrize(("text", "expected"), [
    ("description: 2024-13-45\n", "line 1, column 14: a timestamp value cannot be read (month must be in 1..12)"),
    ("description: 0x" + "f" * 4000 + "\n", "line 1, column 14: an integer of more than 4300 digits"),
])
def test_a_value_yaml_cannot_build_is_an_error_at_its_line(tmp_path: Path, text: str, expected: str) -> None:
    """These were a bare ValueError, or an integer no error message or saved config could print."""
    path = tmp_path / "m.yaml"
    path.write_text(text)
    assert load_manifest(path) == f"manifest {str(path)!r}, {expected}"


def test_a_pipe_named_like_a_config_file_is_not_read(tmp_path: Path) -> None:
    """Reading a FIFO would block until something writes to it; it was called a folder."""
    import os

    os.mkfifo(tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == f"config file {str(tmp_path / 'run.yaml')!r} is not a regular file"


def test_a_repeated_json_key_that_is_no_name_is_described(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"learning_rate": {"root:$6$S3CR3THASH:19000": 1, "root:$6$S3CR3THASH:19000": 2}}')
    assert load_config(path) == (f"config file {str(path)!r} is not valid JSON: repeated key (a str of 24 characters "
                                 "that is no name); keep one entry (only the last would count)")
