"""Bad configs for every recipe, generated: a ``ConfigError`` naming the key and value, and no run folder.

For each recipe (sl_basic, rl_basic, math_rl, dpo, distillation) hypothesis draws a key and a bad
value for it: zero, negative, NaN or infinite numbers where a positive finite one is needed,
booleans, lists and text where a number is, unknown renderer names, unknown keys, run folders that
would leave the blob store. Each is run the three ways a config arrives: ``Runtime.run`` with a
dict, with CLI ``key=value`` strings, and ``Runtime.run_spec`` with a spec whose config was edited
by hand (as a saved ``spec.json`` may be). Every one must raise ``ConfigError`` naming the key (and
the value, when there is one) before anything is written: the blob root is never created, and an
existing run folder under the same ``log_path`` keeps every byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults import local_blobs
from tinkex_cookbook import ConfigError, Experiment, Runtime
from tinkex_cookbook.recipes import get_recipe
from tinkex_cookbook.train.renderers import renderer_names

RECIPES = ("sl_basic", "rl_basic", "math_rl", "dpo", "distillation")
SMALL: dict[str, dict[str, Any]] = {
    "sl_basic": {"batch_size": 8, "eval_every": 0},
    "rl_basic": {"num_steps": 2, "batch_size": 2},
    "math_rl": {"num_steps": 2, "batch_size": 2},
    "dpo": {"batch_size": 4, "eval_every": 0},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 2, "batch_size": 2, "eval_every": 0},
}
SHORT = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def base(recipe: str) -> dict[str, Any]:
    return {"renderer_name": "role_colon", "log_path": "run", **SMALL[recipe]}


def fields_of(recipe: str) -> dict[str, Any]:
    return get_recipe(recipe).Config.model_fields


def numeric_bounds(recipe: str) -> list[tuple[str, str, float]]:
    """(key, constraint, bound) for every bounded number in the recipe's config."""
    found = []
    for key, field in fields_of(recipe).items():
        for meta in field.metadata:
            for constraint in ("gt", "ge", "lt", "le"):
                bound = getattr(meta, constraint, None)
                if bound is not None:
                    found.append((key, constraint, bound))
    return found


def violating(constraint: str, bound: float, is_int: bool) -> st.SearchStrategy[Any]:
    """Values on the wrong side of ``constraint bound``, NaN and infinities included."""
    numbers = st.integers if is_int else st.floats
    if constraint in ("gt", "ge"):
        below = numbers(max_value=int(bound) - (constraint == "ge")) if is_int else st.floats(
            max_value=bound, exclude_max=constraint == "ge", allow_nan=False)
        return below | st.just(-math.inf) | st.just(math.nan)
    above = st.integers(min_value=int(bound) + (constraint == "le")) if is_int else st.floats(
        min_value=bound, exclude_min=constraint == "le", allow_nan=False)
    return above | st.just(math.inf) | st.just(math.nan)


def is_int_field(recipe: str, key: str) -> bool:
    return "int" in str(fields_of(recipe)[key].annotation)


@st.composite
def bad_numbers(draw: st.DrawFn, recipe: str) -> tuple[str, Any]:
    key, constraint, bound = draw(st.sampled_from(numeric_bounds(recipe)))
    return key, draw(violating(constraint, bound, is_int_field(recipe, key)))


@st.composite
def wrong_types(draw: st.DrawFn, recipe: str) -> tuple[str, Any]:
    """A number field given a bool, a list, a dict, non-numeric text, or (ints) a fraction; floats get NaN/inf."""
    numeric = [key for key, field in fields_of(recipe).items() if any(t in str(field.annotation) for t in ("int", "float"))
               and not any(t in str(field.annotation) for t in ("bool", "dict"))]
    key = draw(st.sampled_from(numeric))
    bad = st.booleans() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                 max_size=1)
    bad |= st.text(alphabet="abcxyz!?", min_size=1, max_size=6)
    if is_int_field(recipe, key):
        bad |= st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v))
    if "float" in str(fields_of(recipe)[key].annotation):
        bad |= st.sampled_from([math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
    return key, draw(bad)


unknown_renderers = st.text(max_size=12).filter(lambda name: name not in renderer_names())
unsafe_log_paths = st.sampled_from(["/", "//", "..", "../x", "a/../../x", "a//b", "  ", "a/ /b", "a\\b", "a\nb", "x/\x00"])


@st.composite
def bad_configs(draw: st.DrawFn) -> tuple[str, str, Any, bool]:
    """(recipe, key, value, is the value quoted in the error) for one generated bad config."""
    recipe = draw(st.sampled_from(RECIPES))
    kind = draw(st.sampled_from(["number", "type", "renderer", "unknown", "log_path", "empty"]))
    if kind == "number":
        key, value = draw(bad_numbers(recipe))
    elif kind == "type":
        key, value = draw(wrong_types(recipe))
    elif kind == "renderer":
        key, value = "renderer_name", draw(unknown_renderers)
    elif kind == "log_path":
        key, value = "log_path", draw(unsafe_log_paths)
    elif kind == "empty":
        key, value = draw(st.sampled_from(["model_name", "dataset", "dataset_split"])), ""
        if key not in fields_of(recipe):
            key = "model_name"
    else:
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=14).filter(
            lambda k: k not in fields_of(recipe)))
        value = draw(st.integers() | st.text(max_size=5))
    return recipe, key, value, kind != "unknown"


def check_rejected(error: ConfigError, key: str, value: Any, quoted: bool) -> None:
    message = str(error)
    assert f"'{key}'" in message, message
    if quoted:
        assert repr(value)[:40] in message or str(value)[:40] in message, message
    else:
        assert "unknown config key" in message and "Valid keys:" in message, message


def check_all_three_ways(root: Path, case: tuple[str, str, Any, bool]) -> None:
    recipe, key, value, quoted = case
    cfg = {**base(recipe), key: value}
    with pytest.raises(ConfigError) as by_dict:
        Runtime.run(recipe, cfg, manifest="test", ports=local_blobs(root))
    check_rejected(by_dict.value, key, value, quoted)
    spec = json.loads(Runtime.build_spec(recipe, base(recipe)).to_json())
    spec["config"][key] = value
    edited = Experiment.model_validate(spec)
    with pytest.raises(ConfigError) as by_spec:
        Runtime.run_spec(edited, manifest="test", ports=local_blobs(root))
    check_rejected(by_spec.value, key, value, quoted)
    if isinstance(value, str | int | float) and not isinstance(value, bool) and "\n" not in str(value):
        pairs = [f"{k}={v}" for k, v in base(recipe).items()] + [f"{key}={value}"]
        try:
            Runtime.run(recipe, pairs, manifest="test", ports=local_blobs(root))
        except ConfigError as by_cli:
            assert f"'{key}'" in str(by_cli), str(by_cli)
        else:  # from the command line every value is text: only "1.0" for an int key may read fine
            assert is_int_field(recipe, key) and float(value) == int(float(value)), (key, value)
    assert not root.exists(), sorted(p.name for p in root.rglob("*"))


@given(bad_configs())
@SHORT
def test_bad_configs_are_config_errors_that_write_nothing(tmp_path: Path, case: tuple[str, str, Any, bool]) -> None:
    check_all_three_ways(tmp_path / "never-created", case)


@pytest.mark.long
@given(bad_configs())
@LONG
def test_bad_configs_long(tmp_path: Path, case: tuple[str, str, Any, bool]) -> None:
    check_all_three_ways(tmp_path / "never-created", case)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("learning_rate", 0, ["greater than 0"]),
        ("learning_rate", -1e-4, ["greater than 0"]),
        ("learning_rate", math.inf, ["finite number"]),
        ("learning_rate", math.nan, ["finite number"]),
        ("batch_size", 0, ["greater than 0"]),
        ("batch_size", -8, ["greater than 0"]),
        ("batch_size", True, ["not the boolean True"]),
        ("batch_size", "eight", ["valid integer"]),
        ("renderer_name", "llama-3", ["unknown renderer 'llama-3'", "'llama3'", "'role_colon'"]),
        ("log_path", "../elsewhere", ["'..' segment", "Fix:"]),
        ("lora_rank", 0.5, ["valid integer"]),
    ],
)
def test_each_recipe_names_the_key_the_value_and_the_fix(
    tmp_path: Path, recipe: str, key: str, value: Any, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        Runtime.run(recipe, {**base(recipe), key: value}, manifest="test", ports=local_blobs(tmp_path / "root"))
    message = str(caught.value)
    assert f"config key '{key}' = {value!r}" in message and all(word in message for word in words), message
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_rejected_config_leaves_an_existing_run_folder_byte_for_byte(tmp_path: Path, recipe: str) -> None:
    """A bad value for an existing run (same ``log_path``) fails before the run's files are rewritten."""
    Runtime.run(recipe, base(recipe), manifest="test", ports=local_blobs(tmp_path))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for bad in ({"learning_rate": -1.0}, {"batch_size": 0}, {"renderer_name": "nope"}, {"nope": 1}):
        with pytest.raises(ConfigError):
            Runtime.run(recipe, {**base(recipe), **bad}, manifest="test", ports=local_blobs(tmp_path))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("recipe", RECIPES)
def test_build_spec_rejects_what_run_rejects(recipe: str) -> None:
    with pytest.raises(ConfigError, match="'max_length'|'batch_size'"):
        Runtime.build_spec(recipe, {**base(recipe), "batch_size": 0, "max_length": 1})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan"])
@pytest.mark.parametrize("recipe", ["rl_basic", "math_rl"])
def test_nan_and_infinity_inside_loss_options_are_rejected(recipe: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"'loss_fn_config\.clip_low_threshold' = .*finite number"):
        Runtime.build_spec(recipe, {**base(recipe), "loss_fn_config": {"clip_low_threshold": value}})


def test_max_length_below_two_is_a_config_error_not_a_row_error() -> None:
    """One input and one target token are the least a datum holds: ``max_length=1`` used to fail on row 0."""
    for recipe in ("sl_basic", "dpo", "distillation"):
        with pytest.raises(ConfigError, match=r"'max_length' = 1: .*greater than or equal to 2"):
            Runtime.build_spec(recipe, {**base(recipe), "max_length": 1})


def test_distillation_teacher_choice_is_checked() -> None:
    cfg = {**base("distillation"), "teacher_path": "local://x"}
    with pytest.raises(ConfigError, match="exactly one of teacher_model .* or teacher_path"):
        Runtime.build_spec("distillation", cfg)
    with pytest.raises(ConfigError, match="teacher=llm cannot score"):
        Runtime.build_spec("distillation", {**base("distillation"), "teacher": "llm"})


@given(st.sampled_from(RECIPES), st.floats(1e-9, 10.0), st.from_regex(r"[a-z0-9_-]{1,8}(/[a-z0-9_.-]{1,8}){0,3}",
                                                                         fullmatch=True).filter(lambda p: ".." not in p))
@settings(max_examples=30, deadline=None)
def test_good_values_next_to_the_bad_ones_still_build(recipe: str, learning_rate: float, log_path: str) -> None:
    """The checks reject only what is wrong: any positive finite rate and any relative folder build a spec."""
    spec = Runtime.build_spec(recipe, {**base(recipe), "learning_rate": learning_rate, "log_path": log_path})
    assert spec.config["learning_rate"] == learning_rate and spec.config["log_path"] == log_path
