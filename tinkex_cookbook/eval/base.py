"""What an evaluation is made of: a target to evaluate, an evaluator, and what the evaluator returns.

An *evaluator* (``nll``, ``generation``, ``preference``, ``rl_reward``, ``llm_judge``,
``inspect``) is a class with a pydantic ``Config``; built from a config, it measures one
``EvalTarget`` (a sampling client over fixed weights and the renderer its prompts are
written with) and returns named metrics and one record per example. It reaches the
world only through ``EvalEnv``: the ports it reads (a dataset store, an LLM client) and
the seed that makes its sampling repeatable. Evaluators are registered by name in
``EVALUATORS`` (shipped ones imported on first use, plugins from the
``tinkex_cookbook.evaluators`` entry-point group), as recipes and adapters are.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from tinkex_cookbook.ports import DatasetStore, LLMClient, SamplingClient
from tinkex_cookbook.registry import Registry, check_entry_name
from tinkex_cookbook.train.renderers import Renderer


@dataclass(frozen=True)
class EvalTarget:
    """What is evaluated: fixed weights to sample from, the renderer its prompts use, and a label
    (``base``, ``final``, ``step-000008``, a model name) that names its column in a report."""

    label: str
    sampler: SamplingClient
    renderer: Renderer


@dataclass
class EvalResult:
    """Named metrics (floats; higher or lower is better as the name says) and one record per example."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping beside the numbers (e.g. where inspect-ai wrote its log)."""


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...


class PortReader(Protocol):
    def __getitem__(self, port: str) -> object: ...


@contextmanager
def _no_progress(name: str, total: int) -> Iterator[Progress]:
    class _Silent:
        def advance(self, n: int = 1) -> None:
            return None

    yield _Silent()


class EvalEnv:
    """What an evaluator may use besides its target: ports, read when first used (an NLL evaluation on
    ``prod`` never needs the LLM key), the seed, and a progress display for long loops."""

    def __init__(
        self, ports: PortReader | None = None, seed: int = 0,
        task: Callable[[str, int], AbstractContextManager[Progress]] | None = None,
    ) -> None:
        self._ports = ports
        self.seed = seed
        self.task = task or _no_progress

    def port(self, name: str) -> object:
        if self._ports is None:
            from tinkex_cookbook.errors import ConfigError

            raise ConfigError(f"this evaluation was given no ports, and its evaluator needs the {name!r} port")
        return self._ports[name]

    @property
    def dataset_store(self) -> DatasetStore:
        return cast(DatasetStore, self.port("dataset_store"))

    @property
    def llm_client(self) -> LLMClient:
        return cast(LLMClient, self.port("llm_client"))


class EvalConfig(BaseModel):
    """Fields every evaluator's config has: strict keys, and how many examples to take."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    limit: PositiveInt | None = Field(None, description="evaluate at most this many examples (default: all)")


class DatasetEvalConfig(EvalConfig):
    """An evaluator over rows of a dataset in the dataset store (a shipped name or a file path)."""

    dataset: str = Field(..., min_length=1, description="dataset name for the dataset_store port, or a file")
    split: str = Field("test", min_length=1, description="split to evaluate on")
    skip: NonNegativeInt = Field(0, description="rows to skip first (e.g. those a run trained on)")


@runtime_checkable
class Evaluator(Protocol):
    """Built from its ``Config``; measures one target."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult: ...


C = TypeVar("C", bound=BaseModel)


class EvaluatorBase(Generic[C]):
    """The usual evaluator: ``self.config`` is its own ``Config``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: C) -> None:
        self.config = config

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        raise NotImplementedError


def _checked_evaluator(name: str, loaded: Any) -> type[Evaluator]:
    if not isinstance(loaded, type) or not hasattr(loaded, "Config") or not hasattr(loaded, "evaluate"):
        raise TypeError(f"{loaded!r} is not an evaluator class (one with name, Config and evaluate)")
    evaluator = typing.cast(type[Evaluator], loaded)
    check_entry_name("evaluator", name, evaluator.name)
    return evaluator


EVALUATORS: Registry[type[Evaluator]] = Registry(
    "evaluator",
    builtins={
        "nll": "tinkex_cookbook.eval.evaluators.nll:NllEvaluator",
        "generation": "tinkex_cookbook.eval.evaluators.generation:GenerationEvaluator",
        "preference": "tinkex_cookbook.eval.evaluators.preference:PreferenceEvaluator",
        "rl_reward": "tinkex_cookbook.eval.evaluators.rl_reward:RlRewardEvaluator",
        "llm_judge": "tinkex_cookbook.eval.evaluators.llm_judge:LlmJudgeEvaluator",
        "inspect": "tinkex_cookbook.eval.inspect_bridge:InspectEvaluator",
    },
    group="tinkex_cookbook.evaluators",
    hint="add your own with register_evaluator() or a plugin",
    adapt=_checked_evaluator,
)
"""Evaluators by name: shipped ones imported on first use, plugins from ``tinkex_cookbook.evaluators``."""

E = TypeVar("E", bound=type[Evaluator])


def register_evaluator(evaluator: E) -> E:
    """Class decorator: make ``evaluator`` usable by name in tasks, ``evals=`` and the CLI."""
    EVALUATORS.register(evaluator.name, evaluator)
    return evaluator


def metric_mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def messages_text(messages: list[Mapping[str, Any]]) -> str:
    """A conversation as one readable string, for records and reports."""
    from tinkex_cookbook.train.renderers import get_text_content

    return "\n".join(f"{m.get('role')}: {get_text_content(cast(Any, m))}" for m in messages)
