"""tinkex-cookbook: fine-tune language models through ports, adapters and manifests.

    from tinkex_cookbook import Runtime, SlBasic
    result = Runtime.run(SlBasic, {"learning_rate": 1e-4}, manifest="local")
"""

from typing import TYPE_CHECKING

from tinkex_cookbook._lazy import lazy_attributes
from tinkex_cookbook.errors import (
    AdapterUnavailableError,
    ConfigError,
    CookbookError,
    DatasetError,
    ManifestError,
    MissingSecretError,
    SpecError,
    StageError,
    UnknownAdapterError,
    UnknownManifestError,
    UnknownNameError,
    UnknownPortError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first access
    from tinkex_cookbook.pipeline.registry import register_stage
    from tinkex_cookbook.recipes import (
        Distillation,
        Dpo,
        MathRl,
        RlBasic,
        SlBasic,
        SlBasicConfig,
        register_recipe,
    )
    from tinkex_cookbook.runtime import RunOptions, RunResult, Runtime, Settings, register_adapter
    from tinkex_cookbook.spec import Experiment, LoopSpec, StageSpec
    from tinkex_cookbook.train.renderers import TrainOnWhat, register_renderer

_MODULES = {
    **dict.fromkeys(("Distillation", "Dpo", "MathRl", "RlBasic", "SlBasic", "SlBasicConfig", "register_recipe"),
                    "tinkex_cookbook.recipes"),
    **dict.fromkeys(("RunOptions", "RunResult", "Runtime", "Settings", "register_adapter"), "tinkex_cookbook.runtime"),
    **dict.fromkeys(("Experiment", "LoopSpec", "StageSpec"), "tinkex_cookbook.spec"),
    **dict.fromkeys(("TrainOnWhat", "register_renderer"), "tinkex_cookbook.train.renderers"),
    "register_stage": "tinkex_cookbook.pipeline.registry",
}
"""Where each lazily imported name lives; a test keeps it equal to the ``TYPE_CHECKING`` imports."""
__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = [
    "AdapterUnavailableError", "ConfigError", "CookbookError", "DatasetError", "Distillation", "Dpo", "Experiment",
    "LoopSpec", "ManifestError", "MathRl", "MissingSecretError", "RlBasic", "RunOptions", "RunResult", "Runtime",
    "Settings", "SlBasic", "SlBasicConfig", "SpecError", "StageError", "StageSpec", "TrainOnWhat",
    "UnknownAdapterError", "UnknownManifestError", "UnknownNameError", "UnknownPortError",
    "__version__", "register_adapter", "register_recipe", "register_renderer", "register_stage",
]
