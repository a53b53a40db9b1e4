"""Configs the way users write them: a YAML or JSON file under ``key=value`` overrides, dotted keys into
mapping fields, a did-you-mean for a mistyped key, a readable ``recipes describe`` and help text that keeps
its bracketed extras."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import assume, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tinkex_cookbook import ConfigError, Runtime
from tinkex_cookbook.cli import app
from tinkex_cookbook.recipes import describe_recipe, get_recipe, recipe_names
from tinkex_cookbook.recipes.base import layer_config, parse_config
from tinkex_cookbook.runtime.config_file import MAX_CONFIG_BYTES, config_from, load_config_file

RUN_YAML = """\
batch_size: 4
learning_rate: 1e-4
loss_fn_config:
  clip_high_threshold: 1.2
  clip_low_threshold: 0.8
"""


def config_of(recipe: str, cfg: Any) -> dict[str, Any]:
    return Runtime.build_spec(recipe, cfg).config


@pytest.fixture
def run_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_YAML)
    return path


def test_overrides_win_over_the_file_and_the_file_over_the_defaults(run_yaml: Path) -> None:
    config = config_of("rl_basic", config_from(run_yaml, ["batch_size=2"]))
    assert (config["batch_size"], config["learning_rate"], config["group_size"]) == (2, 1e-4, 4)
    assert config["loss_fn_config"] == {"clip_high_threshold": 1.2, "clip_low_threshold": 0.8}


def test_a_json_file_reads_like_the_yaml_one(tmp_path: Path, run_yaml: Path) -> None:
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps(load_config_file(run_yaml)))
    assert load_config_file(as_json) == load_config_file(run_yaml)


def test_runtime_takes_the_path_of_a_config_file(run_yaml: Path) -> None:
    assert config_of("rl_basic", run_yaml)["batch_size"] == 4
    with pytest.raises(ConfigError, match="is a string; pass a list of key=value strings, a dict, or a pathlib"):
        Runtime.build_spec("rl_basic", str(run_yaml))


def test_a_dotted_key_sets_one_key_of_a_mapping_field(run_yaml: Path) -> None:
    assert config_of("rl_basic", ["loss_fn_config.clip_high_threshold=1.3"])["loss_fn_config"] == {
        "clip_high_threshold": 1.3}
    on_top = config_of("rl_basic", config_from(run_yaml, ["loss_fn_config.clip_high_threshold=1.3"]))
    assert on_top["loss_fn_config"] == {"clip_high_threshold": 1.3, "clip_low_threshold": 0.8}
    replaced = config_of("rl_basic", config_from(run_yaml, ['loss_fn_config={"clip_high_threshold": 2}']))
    assert replaced["loss_fn_config"] == {"clip_high_threshold": 2.0}
    assert config_of("rl_basic", config_from(run_yaml, ["loss_fn_config=null"]))["loss_fn_config"] is None


def test_dotted_keys_work_in_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "dotted.yaml"
    path.write_text("loss_fn_config.clip_high_threshold: 1.3\nloss_fn_config.clip_low_threshold: 0.7\n")
    assert config_of("rl_basic", path)["loss_fn_config"] == {"clip_high_threshold": 1.3, "clip_low_threshold": 0.7}


def test_the_last_of_repeated_overrides_wins_in_command_line_order() -> None:
    pairs = ["loss_fn_config.a=1", "loss_fn_config=null", "loss_fn_config.b=2", "batch_size=3", "batch_size=5"]
    config = config_of("rl_basic", pairs)
    assert config["loss_fn_config"] == {"b": 2.0} and config["batch_size"] == 5


json_values = st.recursive(st.none() | st.integers() | st.text(max_size=3),
                           lambda inner: st.dictionaries(st.sampled_from("xyz"), inner, max_size=3), max_leaves=6)
layers = st.lists(st.dictionaries(st.sampled_from(["a", "b", "a.x", "a.y", "b.x.z"]), json_values, max_size=4),
                  max_size=4)


@given(layers=layers)
def test_layering_leaves_its_layers_alone_and_plain_keys_take_the_last_value(layers: list[dict[str, Any]]) -> None:
    before = json.dumps(layers)
    config = layer_config(*layers)
    assert json.dumps(layers) == before
    assert not any("." in key for key in config)
    for key in ("a", "b"):
        last = [layer for layer in layers if any(k.split(".")[0] == key for k in layer)][-1:]
        if last and key in last[0] and not any(k.startswith(key + ".") for k in last[0]):
            assert config[key] == last[0][key]


def test_a_dotted_key_on_a_field_that_is_no_mapping_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"config key 'learning_rate' = \{'x': '1'\}: Input should be a valid"):
        Runtime.build_spec("rl_basic", ["learning_rate.x=1"])
    with pytest.raises(ConfigError, match=r"config key 'loss_fn_config\.' has an empty part"):
        Runtime.build_spec("rl_basic", ["loss_fn_config.=1"])


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("missing.yaml", None, "does not exist"),
    ("run.txt", "batch_size: 4", "must end in .yaml, .yml or .json"),
    ("list.yaml", "- batch_size\n- 4\n", "must hold a mapping of config keys to values"),
    ("scalar.yml", "batch_size\n", "must hold a mapping of config keys to values (e.g. 'learning_rate: 1e-4'"),
    ("null.json", "null", "must hold a mapping"),
    ("broken.yaml", "batch_size: [4\n", "is not valid YAML"),
    ("twice.yaml", "batch_size: 4\nbatch_size: 8\n", "found duplicate key 'batch_size'"),
    ("twice.json", '{"batch_size": 4, "batch_size": 8}', "is not valid JSON: repeated key 'batch_size'"),
    ("broken.json", '{"batch_size": 4,}', "is not JSON (Expecting property name"),
    ("numbers.yaml", "1: 4\n", "has the key 1; config keys are names"),
    ("latin1.yaml", b"name: caf\xe9\n", "cannot be read as UTF-8 text"),
    ("huge.yaml", "a: " + "x" * MAX_CONFIG_BYTES, f"is over {MAX_CONFIG_BYTES} bytes"),
])
def test_a_bad_config_file_is_a_config_error_naming_it(
    tmp_path: Path, name: str, text: str | bytes | None, expected: str,
) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(caught.value).startswith(f"config file {str(path)!r}") and expected in str(caught.value)


def test_a_folder_is_no_config_file(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").mkdir()
    with pytest.raises(ConfigError, match="does not exist \\(it is a folder\\)"):
        load_config_file(tmp_path / "run.yaml")


def test_an_empty_yaml_file_is_an_empty_config(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing set yet\n")
    assert load_config_file(tmp_path / "empty.yaml") == {}


def test_keys_in_a_file_are_checked_like_command_line_keys(tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text("learning_rte: 1e-4\nloss_reduction: sum\n")
    with pytest.raises(ConfigError) as from_file:
        Runtime.build_spec("sl_basic", tmp_path / "typo.yaml")
    with pytest.raises(ConfigError) as from_cli:
        Runtime.build_spec("sl_basic", ["learning_rte=1e-4", "loss_reduction=sum"])
    assert str(from_file.value) == str(from_cli.value)
    assert "unknown config key 'learning_rte'; did you mean 'learning_rate'?" in str(from_file.value)


def _typo(name: str, data: st.DataObject) -> str:
    """``name`` with one character inserted, deleted or replaced."""
    alphabet = string.ascii_lowercase + string.digits + "_"
    kind = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    at = data.draw(st.integers(0, len(name) - (kind != "insert")))
    char = data.draw(st.sampled_from(alphabet))
    return name[:at] + ("" if kind == "delete" else char) + name[at + (kind != "insert"):]


@given(data=st.data())
def test_a_key_one_typo_from_a_field_suggests_that_field(data: st.DataObject) -> None:
    recipe = get_recipe(data.draw(st.sampled_from(recipe_names())))
    field = data.draw(st.sampled_from(sorted(recipe.Config.model_fields)))
    typo = _typo(field, data)
    assume(typo not in recipe.Config.model_fields)
    with pytest.raises(ConfigError) as caught:
        parse_config(recipe.Config, {typo: 1})
    suggestion = re.search(r"did you mean ([^?]*)\?", str(caught.value))
    assert suggestion is not None and repr(field) in suggestion.group(1).split(" or "), str(caught.value)


def test_the_issue_example_reads_as_written() -> None:
    result = CliRunner().invoke(app, ["spec", "sl_basic", "learning_rte=1e-4"])
    assert result.exit_code == 2
    assert "unknown config key 'learning_rte'; did you mean 'learning_rate'? Valid keys: " in result.output


def test_describe_shows_choices_and_defaults_as_typed() -> None:
    text = describe_recipe("sl_basic")
    assert ("train_on_what (one of: last_assistant_message, last_assistant_turn, all_assistant_messages, "
            "all_messages, all_tokens, all_user_and_system_messages, customized, default all_assistant_messages)"
            in text)
    assert "loss_reduction (one of: mean, none, default mean)" in text
    assert "lr_schedule (one of: linear, cosine, constant, default linear)" in text
    assert "evals (list[str | dict[str, Any]], default [])" in text
    rl = describe_recipe("rl_basic")
    assert "off_policy_steps (one of: 0, 1, default 0)" in rl
    assert "loss_fn_config (dict[str, float] | None, default None)" in rl
    assert "set one key with loss_fn_config.KEY=VALUE" in rl


@pytest.mark.parametrize("name", recipe_names())
def test_no_recipe_describes_a_python_repr(name: str) -> None:
    assert not re.search(r"<\w+\.\w+: ", describe_recipe(name))


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def _typers(root: typer.Typer) -> list[typer.Typer]:
    found = [root]
    for group in root.registered_groups:
        if group.typer_instance is not None:
            found += _typers(group.typer_instance)
    return found


COMMANDS = _commands(typer.main.get_command(app))
BRACKETED = re.compile(r"\[[a-z][\w,-]*\]")


def test_every_typer_app_keeps_its_help_text_plain() -> None:
    """Rich markup would take ``[wandb]`` for a style tag and print nothing of it."""
    assert len(_typers(app)) >= 5
    assert all(each.rich_markup_mode is None for each in _typers(app))


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda path: " ".join(path) or "root")
def test_every_commands_help_keeps_its_bracketed_text(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    written = " ".join([command.help or "", *(getattr(param, "help", None) or "" for param in command.params)])
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for bracketed in BRACKETED.findall(written):
        assert bracketed in result.output, (bracketed, result.output)


def test_the_wandb_extra_is_named_in_runs_help() -> None:
    assert "(extra [wandb];" in CliRunner().invoke(app, ["run", "--help"]).output


def test_a_config_of_many_unknown_keys_is_one_short_error(tmp_path: Path) -> None:
    from tinkex_cookbook.recipes.base import parse_config
    from tinkex_cookbook.recipes.sl_basic import SlBasic

    with pytest.raises(ConfigError) as info:
        parse_config(SlBasic.Config, {f"k{i}": 1 for i in range(5000)})
    message = str(info.value)
    assert "unknown config key 'k9';" in message and "'k10'" not in message
    assert "and 4990 more problems" in message and len(message) < 3000
