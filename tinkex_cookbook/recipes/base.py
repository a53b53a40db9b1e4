"""The recipe protocol, the one recipe skeleton, the recipe registry, and config parsing.

A recipe is a config model plus ``build_spec(cfg) -> Experiment`` (a training
run) and ``build_eval_spec(cfg) -> Experiment`` (set-up, the run's checkpoint if
any, the recipe's evaluation). ``RecipeBase`` builds both from the parts a recipe
supplies. Configs come from a dict, a model instance, or CLI ``key=value``
strings; unknown keys and bad values raise ``ConfigError`` naming the key, the
value and what is valid.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ValidationError

from tinkex_cookbook.errors import ConfigError, choices
from tinkex_cookbook.registry import Registry, check_entry_name
from tinkex_cookbook.spec import Experiment, LoopSpec, Node, StageSpec


@runtime_checkable
class Recipe(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    @classmethod
    def build_spec(cls, cfg: BaseModel) -> Experiment: ...

    @classmethod
    def build_eval_spec(cls, cfg: BaseModel) -> Experiment: ...


C = TypeVar("C", bound=BaseModel)


class RecipeBase(Generic[C]):
    """The skeleton every recipe shares: ``setup``, then ``train``, then ``finish`` and ``save_final``;
    for evaluation, ``setup`` (which resumes from the run's checkpoint, if any) and ``evaluation``.

    A recipe subclasses ``RecipeBase[ItsConfig]``, sets ``name`` and ``Config``, and supplies the parts.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    @classmethod
    def title(cls, cfg: C) -> str:
        """What the experiment's name says after the recipe's, e.g. ``model:dataset``."""
        raise NotImplementedError

    @classmethod
    def setup(cls, cfg: C) -> list[Node]:
        """Stages that open the session and data, and restore the run's last checkpoint."""
        raise NotImplementedError

    @classmethod
    def train(cls, cfg: C) -> list[Node]:
        raise NotImplementedError

    @classmethod
    def finish(cls, cfg: C) -> list[Node]:
        """Stages between the training loops and ``save_final``."""
        return []

    @classmethod
    def evaluation(cls, cfg: C) -> list[Node]:
        raise NotImplementedError

    @classmethod
    def build_spec(cls, cfg: BaseModel) -> Experiment:
        config = cls._own(cfg)
        start, end = (stages("evals_start"), stages("evals_final")) if _evals(config) else ([], [])
        return cls._experiment(config, [
            *cls.setup(config), *start, *cls.train(config), *cls.finish(config), *end, StageSpec(name="save_final")])

    @classmethod
    def build_eval_spec(cls, cfg: BaseModel) -> Experiment:
        config = cls._own(cfg)
        spec = cls._experiment(config, [*cls.setup(config), *cls.evaluation(config)])
        return spec.model_copy(update={"name": spec.name + ":eval", "purpose": "eval"})

    @classmethod
    def _own(cls, cfg: BaseModel) -> C:
        if not isinstance(cfg, cls.Config):
            raise ConfigError(f"recipe {cls.name!r} takes a {cls.Config.__name__}, not a {type(cfg).__name__}; "
                              "parse it with parse_config(recipe.Config, ...)")
        return cast(C, cfg)

    @classmethod
    def _experiment(cls, cfg: C, stages: list[Node]) -> Experiment:
        """The spec; an unset ``log_path`` stays unset (a run gets a fresh timestamped folder when it starts,
        so a printed spec replays into a new folder each time)."""
        return Experiment(name=f"{cls.name}:{cls.title(cfg)}", recipe=cls.name,
                          config=cfg.model_dump(mode="json"), stages=stages)


def _evals(cfg: BaseModel) -> list[Any]:
    return list(getattr(cfg, "evals", None) or [])


def eval_stages(cfg: BaseModel) -> list[Node]:
    """What a recipe's step loop runs for ``evals=``: ``run_evals`` every ``eval_every`` steps (none when no
    task is given or ``eval_every`` is 0: then only before the first step and after the last)."""
    every = int(getattr(cfg, "eval_every", 0) or 0)
    return [StageSpec(name="run_evals", every=every)] if _evals(cfg) and every else []


def stages(*names: str) -> list[Node]:
    """Plain stages, in order."""
    return [StageSpec(name=name) for name in names]


def _checked_recipe(name: str, loaded: Any) -> type[Recipe]:
    """A plugin's entry point must name a recipe class whose ``name`` is the entry point's name."""
    if not isinstance(loaded, type) or not isinstance(loaded, Recipe):
        raise TypeError(f"{loaded!r} is not a recipe class (one with name, Config and build_spec)")
    recipe = typing.cast(type[Recipe], loaded)
    check_entry_name("recipe", name, recipe.name)
    return recipe


RECIPES: Registry[type[Recipe]] = Registry(
    "recipe",
    builtins={
        "sl_basic": "tinkex_cookbook.recipes.sl_basic:SlBasic",
        "rl_basic": "tinkex_cookbook.recipes.rl_basic:RlBasic",
        "math_rl": "tinkex_cookbook.recipes.rl_basic:MathRl",
        "dpo": "tinkex_cookbook.recipes.dpo:Dpo",
        "distillation": "tinkex_cookbook.recipes.distillation:Distillation",
    },
    group="tinkex_cookbook.recipes",
    hint="add your own with register_recipe() or a plugin",
    adapt=_checked_recipe,
)
"""Recipes by name: shipped ones imported on first use, plugins from the ``tinkex_cookbook.recipes`` group."""


RecipeT = typing.TypeVar("RecipeT", bound=type[Recipe])


def register_recipe(recipe: RecipeT) -> RecipeT:
    """Class decorator: make ``recipe`` runnable by name (CLI, ``run_spec``)."""
    RECIPES.register(recipe.name, recipe)
    return recipe


def recipe_names() -> list[str]:
    return RECIPES.names()


def get_recipe(recipe: str | type[Recipe]) -> type[Recipe]:
    return RECIPES.get(recipe) if isinstance(recipe, str) else recipe


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """CLI ``key=value`` strings -> a dict; JSON lists/objects and ``null`` are decoded."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"config override {pair!r} is not key=value (e.g. learning_rate=1e-4)")
        parsed[key.strip()] = _decode_value(value)
    return parsed


def _decode_value(value: str) -> Any:
    if value in ("null", "None"):
        return None
    if value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_config(
    config_model: type[BaseModel], cfg: BaseModel | Mapping[str, Any] | Sequence[str] | None
) -> BaseModel:
    if isinstance(cfg, config_model):
        return cfg
    if isinstance(cfg, BaseModel):
        cfg = cfg.model_dump()
    elif cfg is not None and not isinstance(cfg, Mapping):
        cfg = parse_overrides(list(cfg))
    try:
        return config_model.model_validate(dict(cfg or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(config_model, exc)) from None


def _describe(config_model: type[BaseModel], exc: ValidationError) -> str:
    return f"{config_model.__name__}: " + config_problems(config_model, exc)


def config_problems(config_model: type[BaseModel], exc: ValidationError) -> str:
    """Each bad key of a config with its value and what is wrong; the valid keys only when a key is unknown."""
    problems, unknown = [], False
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown config key {key!r}")
            unknown = True
        elif err["type"] == "missing":
            problems.append(f"config key {key!r} is required")
        elif not key:  # a check across keys: its message names them
            problems.append(err["msg"].removeprefix("Value error, "))
        else:
            problems.append(f"config key {key!r} = {err.get('input')!r:.60}: {err['msg']}")
    valid = f". Valid keys: {choices(config_model.model_fields)}" if unknown else ""
    return "; ".join(problems) + valid


def step_loop(body: list[Node], save_every: int, cfg: BaseModel | None = None) -> LoopSpec:
    """The ``num_steps`` loop of a step-based recipe, resumable at ``start_step``, running the config's
    evaluation tasks every ``eval_every`` steps, checkpointing every ``save_every`` steps and when a stop
    is asked for (Ctrl-C, SIGTERM)."""
    if cfg is not None:
        body = [*body, *eval_stages(cfg)]
    if save_every:
        body = [*body, StageSpec(name="checkpoint", every=save_every)]
    return LoopSpec(name="steps", var="step_index", count_key="num_steps", start_key="start_step", body=body,
                    on_stop=stages("checkpoint"))


def timestamped(recipe: str, log_path: str | None) -> str:
    """``log_path``, else ``recipe/<UTC time to the millisecond>``: two runs started in the same second get
    folders of their own (a run folder holds one run at a time)."""
    if log_path:
        return log_path
    now = datetime.now(UTC)
    return f"{recipe}/{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"


def describe_recipe(name: str) -> str:
    """A recipe's config fields (type, default, help), its stages, and the ports those stages use."""
    from tinkex_cookbook.pipeline.registry import STAGES

    recipe = get_recipe(name)
    lines = [f"{recipe.name}: {recipe_summary(recipe)}", "", "config:"]
    for field_name, field in recipe.Config.model_fields.items():
        kind = _type_name(field.annotation)
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        help_text = f"  {field.description}" if field.description else ""
        lines.append(f"  {field_name} ({kind}, {default}){help_text}")
    spec = recipe.build_spec(recipe.Config.model_validate(_describe_defaults(recipe)))
    stage_names = spec.stage_names()
    ports = sorted({port for s in stage_names for port in STAGES.get(s).ports})
    lines += ["", "stages: " + ", ".join(stage_names), "ports: " + ", ".join(ports)]
    return "\n".join(lines)


def recipe_summary(recipe: type[Recipe]) -> str:
    """The first line of the recipe's docstring, else of its module's."""
    import sys

    doc = recipe.__doc__ or sys.modules[recipe.__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _type_name(annotation: Any) -> str:
    """``int | None`` rather than ``Optional[Annotated[int, Gt(gt=0)]]``: constraints show up in errors."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if not args and hasattr(annotation, "__name__"):
        return str(annotation.__name__)
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _describe_defaults(recipe: type[Recipe]) -> dict[str, Any]:
    """Placeholder values for required fields, plus the recipe's ``describe_example`` (values its validators
    insist on, e.g. one of two alternatives), so the default spec can be built for description."""
    required = {name: "<required>" for name, field in recipe.Config.model_fields.items() if field.is_required()}
    return {**required, **getattr(recipe, "describe_example", {})}
