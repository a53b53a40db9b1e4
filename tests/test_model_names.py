"""A model name is a name, never a path: no name reaches a folder outside the models folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook.adapters.training.model_files import (
    ModelSources,
    candidate_folders,
    ensure_model_folder,
    find_model_folder,
)
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.train.model_names import check_model_name, model_name_problem


def model_folder(folder: Path) -> Path:
    """Files that make a folder look like a model folder (has_weights), enough to be chosen."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def sources(tmp_path: Path) -> ModelSources:
    (tmp_path / "models").mkdir()
    return ModelSources.of(tmp_path / "models", tmp_path / "cache")


@pytest.mark.parametrize("name", ["../outside/evilmodel", "/abs/evilmodel", "org/../../outside/evilmodel",
                                  "..", "org/..", "a\\..\\b", "~/m", "org//m", "", "m\x00", "org/.hidden"])
def test_a_name_that_would_leave_the_models_folder_is_refused(
    tmp_path: Path, sources: ModelSources, name: str
) -> None:
    model_folder(tmp_path / "outside" / "evilmodel")
    model_folder(tmp_path / "abs" / "evilmodel")
    with pytest.raises(ConfigError, match="model name") as caught:
        ensure_model_folder(name, sources)
    assert "models: entry" in str(caught.value)
    with pytest.raises(ConfigError):
        find_model_folder(name, sources)


def test_names_of_the_catalog_and_the_hub_are_fine(sources: ModelSources) -> None:
    for name in ("tiny-llama3", "HuggingFaceTB/SmolLM2-135M-Instruct", "meta-llama/Llama-3.2-1B:peft",
                 "Qwen/Qwen3-0.6B", "acme/house_model.v2"):
        assert check_model_name(name) == name
    assert candidate_folders("acme/m", sources)[:2] == [sources.models_dir / "acme" / "m",  # type: ignore[operator]
                                                        sources.models_dir / "acme--m"]  # type: ignore[operator]


def test_a_symlink_out_of_the_models_folder_is_refused_and_one_inside_is_fine(
    tmp_path: Path, sources: ModelSources
) -> None:
    assert sources.models_dir is not None
    outside = model_folder(tmp_path / "elsewhere" / "m")
    (sources.models_dir / "acme--out").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="leads outside the models folder"):
        ensure_model_folder("acme/out", sources)
    inside = model_folder(sources.models_dir / "real")
    (sources.models_dir / "acme--in").symlink_to(inside, target_is_directory=True)
    assert find_model_folder("acme/in", sources) == sources.models_dir / "acme--in"


@given(st.text(alphabet=st.sampled_from(list("ab./\\~:_-\x00 ")), max_size=12))
def test_every_accepted_name_stays_inside_the_models_folder(name: str) -> None:
    root = Path("/models")
    if model_name_problem(name) is None:
        for folder in (root / name, root / name.replace("/", "--")):
            assert Path(*folder.parts).resolve().is_relative_to(root.resolve())
            assert ".." not in folder.parts and folder.is_relative_to(root)
