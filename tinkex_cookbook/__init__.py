"""tinkex-cookbook: fine-tune language models through ports, adapters and manifests.

    from tinkex_cookbook import Runtime, SlBasic
    result = Runtime.run(SlBasic, {"learning_rate": 1e-4}, manifest="local")
"""

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
from tinkex_cookbook.pipeline import stages as _stages  # noqa: F401  (registers the built-in stages)
from tinkex_cookbook.pipeline.registry import register_stage
from tinkex_cookbook.recipes import Distillation, Dpo, MathRl, RlBasic, SlBasic, SlBasicConfig, register_recipe
from tinkex_cookbook.runtime import RunResult, Runtime, Settings, register_adapter
from tinkex_cookbook.spec import Experiment, LoopSpec, StageSpec
from tinkex_cookbook.train.renderers import TrainOnWhat, register_renderer

__version__ = "0.1.0"

__all__ = [
    "AdapterUnavailableError", "ConfigError", "CookbookError", "DatasetError", "Distillation", "Dpo", "Experiment",
    "LoopSpec", "ManifestError", "MathRl", "MissingSecretError", "RlBasic", "RunResult", "Runtime", "Settings",
    "SlBasic", "SlBasicConfig", "SpecError", "StageError", "StageSpec", "TrainOnWhat",
    "UnknownAdapterError", "UnknownManifestError", "UnknownNameError", "UnknownPortError",
    "__version__", "register_adapter", "register_recipe", "register_renderer", "register_stage",
]
