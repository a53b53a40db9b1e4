"""The wheel carries the manifests, the public API is pinned, and the README's commands are real."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import tinkex_cookbook

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_API = {
    "AdapterUnavailableError", "ConfigError", "CookbookError", "DatasetError", "Distillation", "Dpo", "Experiment",
    "LoopSpec", "ManifestError", "MathRl", "MissingSecretError", "RlBasic", "RunOptions", "RunResult", "Runtime", "Settings",
    "SlBasic", "SlBasicConfig", "SpecError", "StageError", "StageSpec", "TrainOnWhat",
    "UnknownAdapterError", "UnknownManifestError", "UnknownNameError", "UnknownPortError",
    "__version__", "register_adapter", "register_recipe", "register_renderer", "register_stage",
}


def test_public_api_is_pinned() -> None:
    assert set(tinkex_cookbook.__all__) == PUBLIC_API
    assert all(hasattr(tinkex_cookbook, name) for name in PUBLIC_API)


def test_wheel_ships_every_manifest(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "manifests").glob("*.yaml")}
    assert shipped == {"default.yaml", "local.yaml", "dev.yaml", "prod.yaml", "test.yaml"}
    assert {f"tinkex_cookbook/manifests/{name}" for name in shipped} <= names
    data = {str(p.relative_to(ROOT)) for p in (ROOT / "tinkex_cookbook" / "data").glob("*/*.jsonl")}
    assert {"tinkex_cookbook/data/mmlu_sample/test.jsonl", "tinkex_cookbook/data/ifeval_sample/test.jsonl"} <= data
    assert data <= names


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^python -m pytest .*$", readme, re.MULTILINE)
    assert command and "-W error" in command.group(0)
    assert "^python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_domain_code_never_imports_the_outer_layers() -> None:
    forbidden = re.compile(r"^\s*(from|import) (tinkex_cookbook\.(adapters|runtime)|dependency_injector)\b|os\.environ|getenv", re.M)
    for layer in ("train", "recipes", "pipeline", "spec", "ports"):
        for path in (ROOT / "tinkex_cookbook" / layer).rglob("*.py"):
            assert not forbidden.search(path.read_text()), f"{path} reaches outside the domain"


def test_only_the_container_imports_dependency_injector() -> None:
    users = [p.name for p in (ROOT / "tinkex_cookbook").rglob("*.py") if "dependency_injector" in p.read_text()]
    assert users == ["container.py"]


def _lock_pins() -> dict[str, Version]:
    """The lock as ``.ci/lockdiff.py`` (what CI checks installs against) reads it."""
    spec = importlib.util.spec_from_file_location("lockdiff", ROOT / ".ci" / "lockdiff.py")
    assert spec is not None and spec.loader is not None
    lockdiff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lockdiff)
    return {name: Version(v) for name, v in lockdiff.read_lock(ROOT / ".ci" / "constraints.txt").items()}


def _declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    return [Requirement(text) for text in declared]


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    """CI installs through the lock: a dependency missing from it would float to the newest release."""
    pins = _lock_pins()
    for requirement in _declared_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared in pyproject.toml but not pinned in .ci/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f".ci/constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_the_build_backend_is_locked() -> None:
    """A locked install builds the project without isolation, with the locked hatchling."""
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = _lock_pins()
    for requirement in map(Requirement, backend):
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)])
    assert {"pip", "editables", "setuptools"} <= set(pins)
