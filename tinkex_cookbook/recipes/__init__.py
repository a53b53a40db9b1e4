"""Recipes: a config model plus a spec builder each, registered by name.

Recipe classes are imported on first access, so ``import tinkex_cookbook.recipes``
does not import RL, DPO or distillation code a run does not use.
"""

from typing import TYPE_CHECKING

from tinkex_cookbook._lazy import lazy_attributes
from tinkex_cookbook.recipes.base import (
    RECIPES,
    Recipe,
    describe_recipe,
    get_recipe,
    parse_config,
    parse_overrides,
    recipe_names,
    register_recipe,
)

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first access
    from tinkex_cookbook.recipes.distillation import Distillation, DistillationConfig
    from tinkex_cookbook.recipes.dpo import Dpo, DpoConfig
    from tinkex_cookbook.recipes.rl_basic import MathRl, MathRlConfig, RlBasic, RlBasicConfig
    from tinkex_cookbook.recipes.sl_basic import SlBasic, SlBasicConfig

_MODULES = {
    **dict.fromkeys(("SlBasic", "SlBasicConfig"), "tinkex_cookbook.recipes.sl_basic"),
    **dict.fromkeys(("RlBasic", "RlBasicConfig", "MathRl", "MathRlConfig"), "tinkex_cookbook.recipes.rl_basic"),
    **dict.fromkeys(("Dpo", "DpoConfig"), "tinkex_cookbook.recipes.dpo"),
    **dict.fromkeys(("Distillation", "DistillationConfig"), "tinkex_cookbook.recipes.distillation"),
}
"""Where each lazily imported name lives; a test keeps it equal to the ``TYPE_CHECKING`` imports."""
__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = [
    "RECIPES", "Distillation", "DistillationConfig", "Dpo", "DpoConfig", "MathRl", "MathRlConfig", "Recipe",
    "RlBasic", "RlBasicConfig", "SlBasic", "SlBasicConfig", "describe_recipe", "get_recipe", "parse_config",
    "parse_overrides", "recipe_names", "register_recipe",
]
