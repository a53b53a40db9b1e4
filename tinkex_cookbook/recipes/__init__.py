"""Recipes: a config model plus a spec builder each, registered by name."""

from tinkex_cookbook.recipes.base import (
    Recipe,
    get_recipe,
    parse_config,
    parse_overrides,
    recipe_names,
    register_recipe,
)
from tinkex_cookbook.recipes.distillation import Distillation, DistillationConfig
from tinkex_cookbook.recipes.dpo import Dpo, DpoConfig
from tinkex_cookbook.recipes.rl_basic import MathRl, MathRlConfig, RlBasic, RlBasicConfig
from tinkex_cookbook.recipes.sl_basic import SlBasic, SlBasicConfig

__all__ = [
    "Distillation", "DistillationConfig", "Dpo", "DpoConfig", "MathRl", "MathRlConfig", "Recipe", "RlBasic", "RlBasicConfig", "SlBasic", "SlBasicConfig", "get_recipe", "parse_config", "parse_overrides",
    "recipe_names", "register_recipe",
]
