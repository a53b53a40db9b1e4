"""The wheel carries the manifests, the public API is pinned, and the README's commands are real."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import tinkex_cookbook

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_API = {
    "AdapterUnavailableError", "ConfigError", "CookbookError", "DatasetError", "Distillation", "Dpo", "Experiment",
    "LoopSpec", "ManifestError", "MathRl", "MissingSecretError", "RlBasic", "RunResult", "Runtime", "Settings",
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
