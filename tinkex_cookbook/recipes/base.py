"""The recipe protocol, the one recipe skeleton, the recipe registry, and config parsing.

A recipe is a config model plus ``build_spec(cfg) -> Experiment`` (a training
run) and ``build_eval_spec(cfg) -> Experiment`` (set-up, the run's checkpoint if
any, the recipe's evaluation). ``RecipeBase`` builds both from the parts a recipe
supplies. Configs come from a dict, a model instance, or CLI ``key=value``
strings; a dotted key (``loss_fn_config.clip_high_threshold=1.3``) sets one key
inside a mapping field. Unknown keys and bad values raise ``ConfigError`` naming
the key, the value and what is valid (and the closest key to a mistyped one).
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tinkex_cookbook.errors import ConfigError, choices, did_you_mean, shown
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


def evaluation_before(name: str) -> StageSpec:
    """A recipe's own evaluation stage before its step loop: the starting weights (step 0 only, so a resumed
    run does not measure its checkpoint's step again)."""
    return StageSpec(name=name, options={"at": "start"})


def evaluation_in_loop(name: str, every: int) -> list[Node]:
    """A recipe's own evaluation stage in its step loop: every ``every`` steps (0: none) and after the last
    step. The stage measures a step once (``pipeline.stages.common.eval_due``): a last step also due by
    ``every`` has one row, and a resumed finished run, whose loop does not run, adds none."""
    periodic = [StageSpec(name=name, every=every)] if every else []
    return [*periodic, StageSpec(name=name, options={"at": "end"})]


def transcript_stages(cfg: BaseModel) -> list[Node]:
    """What a step loop runs to keep transcripts: ``write_transcript`` every ``transcript_every`` steps (none
    when that or ``transcripts_per_step`` is 0)."""
    every, kept = (int(getattr(cfg, key, 0) or 0) for key in ("transcript_every", "transcripts_per_step"))
    return [StageSpec(name="write_transcript", every=every)] if every and kept else []


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
    """CLI ``key=value`` strings -> a dict; JSON lists/objects and ``null`` are decoded.

    Keys stay as given (dotted ones too) in the order of their last occurrence, so ``layer_config``
    applies them as the command line reads: a later pair wins.
    """
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"config override {pair!r} is not key=value (e.g. learning_rate=1e-4)")
        parsed.pop(key.strip(), None)
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


def layer_config(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """One config from layers applied in order (e.g. a config file, then the command line's overrides).

    A plain key replaces the value; a dotted key ``field.key`` sets one key inside the mapping ``field``
    holds (a new mapping when it holds none), so ``loss_fn_config.clip_high_threshold=1.3`` keeps the
    field's other keys. The result has no dotted keys; the layers are not modified.
    """
    config: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            path = str(key).split(".")
            if not all(part.strip() for part in path):
                raise ConfigError(f"config key {key!r} has an empty part; a dotted key reads FIELD.KEY, "
                                  "e.g. loss_fn_config.clip_high_threshold=1.3")
            _set_key(config, path, value)
    return config


def _set_key(config: dict[str, Any], path: list[str], value: Any) -> None:
    head, *rest = path
    if not rest:
        config[head] = value
        return
    inner = config.get(head)
    config[head] = inner = dict(inner) if isinstance(inner, Mapping) else {}
    _set_key(inner, rest, value)


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
        return config_model.model_validate(layer_config(cfg or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(config_model, exc)) from None


def _describe(config_model: type[BaseModel], exc: ValidationError) -> str:
    return f"{config_model.__name__}: " + config_problems(config_model, exc)


MAX_PROBLEMS = 10
"""Problems of a config listed one by one; past them a count (a file of 40,000 unknown keys is one line)."""


def config_problems(config_model: type[BaseModel], exc: ValidationError) -> str:
    """Each bad key of a config with its value and what is wrong; the valid keys only when a key is unknown."""
    problems, unknown = [], False
    errors = exc.errors(include_input=True, include_url=False)
    for err in errors[:MAX_PROBLEMS]:
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = did_you_mean(key, config_model.model_fields) if len(err["loc"]) == 1 else ""
            problems.append(f"unknown config key {shown(key)}" + (f"; {close}" if close else ""))
            unknown = True
        elif err["type"] == "missing":
            problems.append(f"config key {key!r} is required")
        elif not key:  # a check across keys: its message names them
            problems.append(err["msg"].removeprefix("Value error, "))
        else:
            problems.append(f"config key {shown(key)} = {shown(err.get('input'))}: {err['msg']}")
    if len(errors) > MAX_PROBLEMS:
        unknown = unknown or any(err["type"] == "extra_forbidden" for err in errors)
        problems.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
    text = "; ".join(problems)
    if not unknown:
        return text
    return text + ("" if text.endswith("?") else ".") + f" Valid keys: {choices(config_model.model_fields)}"


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
    from tinkex_cookbook.recipes.sink_keys import SINK_KEYS

    lines = [f"{recipe.name}: {recipe_summary(recipe)}", "",
             "config (key=value, or keys of a --config YAML or JSON file):"]
    fields = sorted(recipe.Config.model_fields.items(), key=lambda item: item[0] in SINK_KEYS)  # the recipe's own first
    lines += [_field_line(field_name, field) for field_name, field in fields]
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


def _field_line(name: str, field: FieldInfo) -> str:
    """``name (type, default X)  help``; a field with a closed set of values lists them as typed on the
    command line, and a mapping field shows how a dotted key sets one of its keys."""
    values = _choices(field.annotation)
    kind = "one of: " + ", ".join(values) if values else _type_name(field.annotation)
    default = "required" if field.is_required() else "default " + _shown(
        field.get_default(call_default_factory=True), bool(values))
    notes = [field.description] if field.description else []
    if _is_mapping(field.annotation):
        notes.append(f"set one key with {name}.KEY=VALUE")
    return f"  {name} ({kind}, {default})" + ("  " + "; ".join(notes) if notes else "")


def _choices(annotation: Any) -> list[str] | None:
    """The values a Literal or an Enum (optionally ``| None``) allows, as typed on the command line."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _choices(args[0])
    if origin is typing.Literal:
        return [str(arg.value if isinstance(arg, enum.Enum) else arg) for arg in args]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    if annotation is type(None):
        return ["None"]
    if origin in (typing.Union, types.UnionType):
        parts = [_choices(arg) for arg in args]
        return None if any(part is None for part in parts) else [v for part in parts if part for v in part]
    return None


def _shown(default: Any, plain: bool) -> str:
    """A default as it would be typed: an enum's value, JSON for lists and mappings."""
    if isinstance(default, enum.Enum):
        default = default.value
    if plain:
        return str(default)
    if isinstance(default, (list, dict)):
        try:
            return json.dumps(default)
        except TypeError:
            return repr(default)
    return repr(default)


def _is_mapping(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        return any(_is_mapping(arg) for arg in (args[:1] if origin is typing.Annotated else args))
    return origin in (dict, Mapping) or annotation in (dict, Mapping) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel))


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
