"""Every shipped recipe runs on the `test` manifest with its own defaults (only sizes shrunk)."""

from __future__ import annotations

from typing import Any

import pytest

from tinkex_cookbook import Runtime
from tinkex_cookbook.recipes import recipe_names

SMALL: dict[str, dict[str, Any]] = {
    "sl_basic": {"batch_size": 8},
    "rl_basic": {"num_steps": 2, "batch_size": 2},
    "math_rl": {"num_steps": 2, "batch_size": 2},
    "dpo": {"batch_size": 4},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 2, "batch_size": 2},
}


def test_every_recipe_is_covered() -> None:
    assert set(recipe_names()) == set(SMALL)


@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_recipe_runs_on_test_with_its_defaults(recipe: str) -> None:
    result = Runtime.run(recipe, {"renderer_name": "role_colon", **SMALL[recipe]}, manifest="test")
    assert any(m["event"] == "train.step" for m in result.metrics)
    assert result.state["final_checkpoint"].startswith("noop://")
