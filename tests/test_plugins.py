"""A pip-installed plugin adds an adapter a YAML manifest binds and a recipe the CLI runs.

Two tiny projects are built and installed with pip (offline, no dependencies) into a folder that
the CLI's subprocess gets on its ``PYTHONPATH``: ``cookbook-team-plugin``, the files docs/plugins.md
shows, adds a dataset store and a recipe through entry points; ``cookbook-broken-plugin`` declares a
recipe and an adapter whose module cannot be imported. This test process imports neither.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GUIDE = ROOT / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"```(?:toml|python|yaml)\n# (?P<path>[\w./-]+)\n(?P<text>.*?)```", re.DOTALL)

BROKEN_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "cookbook-broken-plugin"
version = "0.1.0"

[tool.hatch.build.targets.wheel]
packages = ["cookbook_broken_plugin"]

[project.entry-points."tinkex_cookbook.recipes"]
broken_recipe = "cookbook_broken_plugin:BrokenRecipe"

[project.entry-points."tinkex_cookbook.adapters"]
"blob_store.broken" = "cookbook_broken_plugin:BROKEN_BLOBS"
"""


def guide_files() -> dict[str, str]:
    """The files docs/plugins.md shows, by the path on each block's first line."""
    return {m["path"]: m["text"] for m in FILE_BLOCK.finditer(GUIDE.read_text())}


def _project(folder: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding both plugins as pip installs them: packages plus ``*.dist-info`` metadata."""
    root = tmp_path_factory.mktemp("plugins")
    files = guide_files()
    assert {"pyproject.toml", "cookbook_team_plugin/adapter.py", "cookbook_team_plugin/recipe.py"} <= set(files)
    team = _project(root / "team", {path: text for path, text in files.items() if not path.endswith(".yaml")})
    broken = _project(root / "broken", {
        "pyproject.toml": BROKEN_PYPROJECT,
        "cookbook_broken_plugin/__init__.py": "import cookbook_dependency_nobody_installed\n",
    })
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(team), str(broken)],
        check=True, capture_output=True, timeout=300,
    )
    return target


def cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), str(site), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-W", "error", "-m", "tinkex_cookbook", *args], cwd=cwd, check=False,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)


def test_pip_wrote_the_entry_points(site: Path) -> None:
    (dist_info,) = site.glob("cookbook_team_plugin-*.dist-info")
    assert "dataset_store.team = cookbook_team_plugin.adapter:TEAM_DATASETS" in (
        dist_info / "entry_points.txt").read_text()


def test_a_manifest_binds_the_plugin_adapter_and_the_cli_runs_its_recipe(site: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "team.yaml"
    manifest.write_text(guide_files()["team.yaml"])
    done = cli(site, "run", "team_sl", "--manifest", str(manifest), "-q",
               "dataset=research/numbers", "batch_size=8", "test_size=8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and '"step": 7' in done.stdout


def test_the_manifest_checks_the_plugin_adapter_options(site: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text("extends: test\nports:\n  dataset_store: {adapter: team, tem: research}\n")
    done = cli(site, "run", "team_sl", "--manifest", str(manifest), "--dry-run", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "bad options for adapter 'team'" in done.stderr and "Valid options: 'team'" in done.stderr


def test_listings_show_the_plugins_and_name_the_broken_one(site: Path, tmp_path: Path) -> None:
    recipes = cli(site, "recipes", "list", cwd=tmp_path)
    adapters = cli(site, "adapters", "list", cwd=tmp_path)
    assert "team_sl" in recipes.stdout and "[plugin cookbook-team-plugin]" in recipes.stdout
    assert "sl_basic" in recipes.stdout and "broken_recipe" in recipes.stdout
    team = next(line for line in adapters.stdout.splitlines() if " team " in line)
    assert team.split()[:2] == ["dataset_store", "team"] and "[plugin cookbook-team-plugin]" in team
    for listing in (recipes, adapters):
        assert listing.returncode == 1 and "Traceback" not in listing.stderr
        assert "'cookbook-broken-plugin'" in listing.stderr
        assert "No module named 'cookbook_dependency_nobody_installed'" in listing.stderr


@pytest.mark.parametrize(("args", "names"), [
    (["run", "broken_recipe", "--manifest", "test"], "recipe 'broken_recipe'"),
    (["run", "sl_basic", "--manifest", "test", "--dry-run"], "adapter 'broken' for port 'blob_store'"),
], ids=["recipe", "adapter"])
def test_a_broken_plugin_is_one_clear_error(site: Path, tmp_path: Path, args: list[str], names: str) -> None:
    if "sl_basic" in args:
        (tmp_path / "broken.yaml").write_text("extends: test\nports:\n  blob_store: broken\n")
        args = [*args[:2], "--manifest", str(tmp_path / "broken.yaml"), *args[4:]]
    done = cli(site, *args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert names in line and "plugin distribution 'cookbook-broken-plugin'" in line
    assert "pip uninstall cookbook-broken-plugin" in line
