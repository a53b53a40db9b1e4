"""The one lazy Registry: built-ins imported on first lookup, registration rules, did-you-mean,
plugins read from entry points, and the package roots' static imports matching their lazy ones."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook.errors import NameTakenError, PluginError, UnknownAdapterError, UnknownNameError
from tinkex_cookbook.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
GROUP = "tinkex_cookbook.test_widgets"


def _module(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(text))


@pytest.fixture
def widgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on ``sys.path`` for throwaway modules (and distributions); they are unloaded afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("widgets_")]:
        del sys.modules[name]


def _distribution(folder: Path, name: str, entry_points: str) -> None:
    """What pip writes for an installed distribution, as far as entry points need it."""
    info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_a_builtin_is_imported_on_first_lookup_only(widgets: Path) -> None:
    _module(widgets, "widgets_round", "ROUND = 'round widget'\n")
    registry: Registry[str] = Registry("widget", builtins={"round": "widgets_round:ROUND"})
    assert registry.names() == ["round"] and "round" in registry
    assert "widgets_round" not in sys.modules
    assert registry.get("round") == "round widget" and "widgets_round" in sys.modules


def test_a_module_registering_its_own_names_while_imported_takes_nothing(widgets: Path) -> None:
    registry: Registry[str] = Registry("widget", builtins={"a": "widgets_pair:A", "b": "widgets_pair:B"})
    sys.modules["widgets_registry"] = type(sys)("widgets_registry")
    sys.modules["widgets_registry"].REGISTRY = registry  # type: ignore[attr-defined]
    _module(widgets, "widgets_pair", """\
        from widgets_registry import REGISTRY
        A = REGISTRY.register("a", "made by a")
        B = REGISTRY.register("b", "made by b")
    """)
    assert registry.get("a") == "made by a" and registry.get("b") == "made by b"


def test_a_bare_module_declaration_must_register_its_name(widgets: Path) -> None:
    registry: Registry[str] = Registry("stage", builtins={"fit": "widgets_stages", "lost": "widgets_stages"})
    sys.modules["widgets_registry"] = type(sys)("widgets_registry")
    sys.modules["widgets_registry"].REGISTRY = registry  # type: ignore[attr-defined]
    _module(widgets, "widgets_stages", "from widgets_registry import REGISTRY\nREGISTRY.register('fit', 'fitted')\n")
    assert registry.get("fit") == "fitted"
    with pytest.raises(LookupError, match="module 'widgets_stages' was imported but registered no stage 'lost'"):
        registry.get("lost")


def test_taking_a_registered_or_declared_name_needs_replace(widgets: Path) -> None:
    _module(widgets, "widgets_square", "SQUARE = 'square'\n")
    registry: Registry[str] = Registry("widget", builtins={"square": "widgets_square:SQUARE"})
    with pytest.raises(NameTakenError, match="widget 'square' is already registered; pass replace=True"):
        registry.register("square", "mine")
    assert "widgets_square" not in sys.modules
    registry.register("square", "mine", replace=True)
    assert registry.get("square") == "mine"
    registry.register("square", "mine")  # the same object again is no clash


def test_an_unknown_name_lists_the_valid_ones_and_the_closest() -> None:
    registry: Registry[int] = Registry("widget", hint="add your own with register_widget()")
    for name in ("sprocket", "gear"):
        registry.register(name, 1)
    with pytest.raises(UnknownNameError) as caught:
        registry.get("sprocet")
    assert str(caught.value) == (
        "unknown widget 'sprocet'; valid widgets: 'gear', 'sprocket' (did you mean 'sprocket'?)")
    assert "(add your own with register_widget())" in registry.describe_unknown("zzz")


def test_the_error_type_and_context_are_the_registry_s() -> None:
    registry: Registry[int] = Registry("adapter", where=" for port 'blob_store'", unknown=UnknownAdapterError)
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'x' for port 'blob_store'; valid adapters"):
        registry.get("x")


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=8), st.text(max_size=8))
def test_names_are_what_was_registered_and_lookups_return_it(objects: dict[str, int], other: str) -> None:
    registry: Registry[object] = Registry("thing")
    boxed = {name: [value] for name, value in objects.items()}
    for name, obj in boxed.items():
        registry.register(name, obj)
    assert registry.names() == sorted(boxed)
    assert all(registry.get(name) is obj and name in registry for name, obj in boxed.items())
    if other not in boxed:
        with pytest.raises(UnknownNameError) as caught:
            registry.get(other)
        assert all(repr(name) in str(caught.value) for name in boxed)


def test_entry_points_add_names_imported_when_asked_for(widgets: Path) -> None:
    _module(widgets, "widgets_plugin", "HEX = 'hex widget'\nROUND = 'a plugin round'\n")
    _distribution(widgets, "widgets-plugin", f"""\
        [{GROUP}]
        hex = widgets_plugin:HEX
        round = widgets_plugin:ROUND
    """)
    _module(widgets, "widgets_round", "ROUND = 'round widget'\n")
    registry: Registry[str] = Registry("widget", builtins={"round": "widgets_round:ROUND"}, group=GROUP)
    assert registry.names() == ["hex", "round"] and "widgets_plugin" not in sys.modules
    assert registry.plugin("hex") == "widgets-plugin" and registry.plugin("round") is None
    assert registry.get("hex") == "hex widget"
    assert registry.get("round") == "round widget"  # a built-in name wins over a plugin's


def test_a_prefix_selects_one_port_s_entry_points(widgets: Path) -> None:
    _module(widgets, "widgets_ports", "A = 'a'\nB = 'b'\n")
    _distribution(widgets, "widgets-ports", f"""\
        [{GROUP}]
        left.a = widgets_ports:A
        right.b = widgets_ports:B
    """)
    assert Registry("adapter", group=GROUP, prefix="left.").names() == ["a"]


@pytest.mark.parametrize(("module", "problem"), [
    ("import widgets_dependency_nobody_installed\n", "ModuleNotFoundError: No module named"),
    ("GADGET = 3\n", "TypeError: 3 is not a widget"),
])
def test_a_plugin_that_fails_to_load_names_its_distribution(widgets: Path, module: str, problem: str) -> None:
    _module(widgets, "widgets_broken", module)
    _distribution(widgets, "widgets-broken", f"[{GROUP}]\ngadget = widgets_broken:GADGET\n")

    def only_strings(name: str, loaded: object) -> str:
        if not isinstance(loaded, str):
            raise TypeError(f"{loaded!r} is not a widget")
        return loaded

    registry: Registry[str] = Registry("widget", group=GROUP, adapt=only_strings)
    with pytest.raises(PluginError) as caught:
        registry.get("gadget")
    message = str(caught.value)
    assert message.startswith("widget 'gadget' comes from the plugin distribution 'widgets-broken'")
    assert problem in message and "pip uninstall widgets-broken" in message
    assert isinstance(caught.value, ImportError)


def _static_imports(package: str) -> dict[str, str]:
    """The names a package's ``if TYPE_CHECKING:`` block imports, with their modules."""
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text())
    (block,) = [node for node in tree.body
                if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {alias.name: str(node.module) for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


@pytest.mark.parametrize("package", ["tinkex_cookbook", "tinkex_cookbook.recipes"])
def test_type_checkers_see_every_lazy_name_from_where_it_is_imported(package: str) -> None:
    module = __import__(package, fromlist=["_MODULES"])
    assert _static_imports(package) == module._MODULES
    assert set(module._MODULES) <= set(module.__all__)


def test_a_run_imports_only_its_own_recipe_and_renderer() -> None:
    code = textwrap.dedent("""\
        import sys
        import tinkex_cookbook
        from tinkex_cookbook.recipes import get_recipe, recipe_names
        assert not any(name.startswith("tinkex_cookbook.recipes.") and name != "tinkex_cookbook.recipes.base"
                       for name in sys.modules), sorted(sys.modules)
        assert "dpo" in recipe_names() and get_recipe("dpo").name == "dpo"
        from tinkex_cookbook.train.renderers import get_renderer
        from tinkex_cookbook.train.tokenizer_sources import get_tokenizer
        get_renderer("llama3", get_tokenizer("tinkex/bytes"))
        loaded = {name for name in sys.modules if name.startswith("tinkex_cookbook.")}
        assert "tinkex_cookbook.recipes.dpo" in loaded and "tinkex_cookbook.recipes.rl_basic" not in loaded
        assert "tinkex_cookbook.train.renderers.llama3" in loaded
        assert "tinkex_cookbook.train.renderers.gpt_oss" not in loaded
    """)
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_entry_point_must_name_the_object_of_its_own_name() -> None:
    from tinkex_cookbook.eval.tasks import EvalTask, _checked_task
    from tinkex_cookbook.registry import check_entry_name

    check_entry_name("recipe", "sl_basic", "sl_basic")
    with pytest.raises(ValueError, match="the entry point is named 'mine' but the recipe's name is 'sl_basic'"):
        check_entry_name("recipe", "mine", "sl_basic")
    with pytest.raises(ValueError, match="the task's name is 'other'"):
        _checked_task("mine", EvalTask(name="other", evaluator="nll"))
