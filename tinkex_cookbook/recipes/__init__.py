"""Recipes: a config model plus a spec builder each, registered by name.

Recipe classes are imported on first access, so ``import tinkex_cookbook.recipes``
does not import RL, DPO or distillation code a run does not use.
"""

from tinkex_cookbook._lazy import lazy_attributes
from tinkex_cookbook.recipes.base import (
    Recipe,
    describe_recipe,
    get_recipe,
    parse_config,
    parse_overrides,
    recipe_names,
    register_recipe,
)

_MODULES = {
    **dict.fromkeys(("SlBasic", "SlBasicConfig"), "tinkex_cookbook.recipes.sl_basic"),
    **dict.fromkeys(("RlBasic", "RlBasicConfig", "MathRl", "MathRlConfig"), "tinkex_cookbook.recipes.rl_basic"),
    **dict.fromkeys(("Dpo", "DpoConfig"), "tinkex_cookbook.recipes.dpo"),
    **dict.fromkeys(("Distillation", "DistillationConfig"), "tinkex_cookbook.recipes.distillation"),
}
__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = [
    "Distillation", "DistillationConfig", "Dpo", "DpoConfig", "MathRl", "MathRlConfig", "Recipe", "RlBasic",
    "RlBasicConfig", "SlBasic", "SlBasicConfig", "describe_recipe", "get_recipe", "parse_config", "parse_overrides",
    "recipe_names", "register_recipe",
]
