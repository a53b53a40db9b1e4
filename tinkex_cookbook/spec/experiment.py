"""Experiment specs: what a run will do, as plain data.

A spec is a recipe's name, its validated config and a tree of stages: a
``StageSpec`` names a registered stage (optionally only every N steps), a
``LoopSpec`` repeats its body a fixed number of times or as many times as a
state value says (e.g. batches per epoch, known only after loading data), and
says what a requested stop runs before the run stops (``on_stop``).
Specs round-trip through JSON exactly, so a run saves its spec beside its
results and ``run_spec`` can replay it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from tinkex_cookbook.errors import SpecError, validation_problems
from tinkex_cookbook.json_values import unusable
from tinkex_cookbook.jsonio import parse


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSpec(_Spec):
    """Run the stage registered as ``name``; with ``every``, only when ``state[every_key] % every == 0``."""

    kind: Literal["stage"] = "stage"
    name: str = Field(min_length=1)
    options: dict[str, JsonValue] = {}
    every: PositiveInt | None = None
    every_key: str = "step"


class LoopSpec(_Spec):
    """Repeat ``body``, setting ``state[var]`` to 0, 1, ...; ``count`` or ``count_key`` says how often."""

    kind: Literal["loop"] = "loop"
    name: str = Field(min_length=1)
    var: str = Field(min_length=1)
    count: NonNegativeInt | None = None
    count_key: str | None = None
    start_key: str | None = None
    """If ``state[start_key]`` is set when the loop starts, begin there (once): how a resumed run
    skips the epochs and batches it already finished."""
    body: list[Node]
    on_stop: list[Node] = []
    """What a requested stop (Ctrl-C, SIGTERM) runs before the run stops, at the loop's next iteration
    boundary: a step loop's checkpoint, so the stopped run resumes at exactly the next step. A loop
    without it does not stop early."""

    @model_validator(mode="after")
    def _one_count(self) -> LoopSpec:
        if (self.count is None) == (self.count_key is None):
            raise ValueError(f"loop {self.name!r} needs exactly one of 'count' or 'count_key'")
        return self


Node = Annotated[StageSpec | LoopSpec, Field(discriminator="kind")]
LoopSpec.model_rebuild()


class Experiment(_Spec):
    """A whole run: recipe name, config as JSON data, and the stage tree."""

    schema_version: Literal[1] = 1
    name: str
    recipe: str
    config: dict[str, JsonValue]
    stages: list[Node]
    purpose: Literal["train", "eval"] = "train"
    """``eval``: the spec reads a run folder's checkpoint and writes nothing into it (no run files, no
    metric rows), so evaluating a run never changes what it recorded."""

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Experiment:
        return cls.model_validate_json(text)

    @classmethod
    def read(cls, data: str | bytes, where: str) -> Experiment:
        """The spec in a file's text (``spec.json``), or a ``SpecError`` naming ``where`` and what is wrong:
        text that is not UTF-8 or not JSON, nesting too deep to read, a value no run can use (a lone
        surrogate, NaN), a field the schema does not have."""
        value = parse(data, where, SpecError)
        if not isinstance(value, dict):
            raise SpecError(f"{where} is not an experiment spec: it holds a JSON {type(value).__name__}, not an object")
        found = unusable(value)
        if found is not None:
            raise SpecError(f"{where}, field {found[0]!r}: the value {found[1]}")
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise SpecError(f"{where} is not an experiment spec: {exc.error_count()} problem(s): "
                            f"{validation_problems(exc)}") from None

    def with_config(self, **updates: JsonValue) -> Experiment:
        """This spec with config keys replaced, its stages unchanged (e.g. ``log_path``: replay it into
        another run folder)."""
        return self.model_copy(update={"config": {**self.config, **updates}})

    def stage_names(self) -> list[str]:
        """Every stage name in the tree, in first-appearance order."""
        return list(dict.fromkeys(_walk_names(self.stages)))


def _walk_names(nodes: list[Any]) -> list[str]:
    names: list[str] = []
    for node in nodes:
        names.extend(_walk_names([*node.body, *node.on_stop]) if isinstance(node, LoopSpec) else [node.name])
    return names
