"""Tasks: an evaluator with its config under a name users know (``chitchat_nll``, ``gsm8k``, ``mmlu``).

A task is what ``--tasks`` and ``evals=`` name. Given as a string it is a registered task;
given as a mapping it is either a registered task with some config keys replaced
(``{"task": "arithmetic", "limit": 16}``) or a task of its own
(``{"name": "mine", "evaluator": "generation", "dataset": "qa.jsonl", "grader": "numeric"}``).
Shipped tasks are listed in ``SHIPPED_TASKS``; plugins add theirs through the
``tinkex_cookbook.tasks`` entry-point group or ``register_task``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tinkex_cookbook.errors import ConfigError, choices
from tinkex_cookbook.eval.base import EVALUATORS, Evaluator
from tinkex_cookbook.recipes.base import config_problems
from tinkex_cookbook.registry import Registry, check_entry_name


class EvalTask(BaseModel):
    """A named evaluator config: what one column of numbers in a report measures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    evaluator: str = Field(..., min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    def build(self) -> Evaluator:
        """The evaluator, its config checked: a bad key is a ``ConfigError`` naming the task and the key."""
        evaluator_cls = EVALUATORS.get(self.evaluator)
        try:
            config = evaluator_cls.Config.model_validate(self.config)
        except ValidationError as exc:
            raise ConfigError(f"task {self.name!r} (evaluator {self.evaluator!r}): "
                              f"{config_problems(evaluator_cls.Config, exc)}") from None
        return evaluator_cls(config)  # type: ignore[call-arg]  # evaluators are built from their Config


SHIPPED_TASKS: dict[str, EvalTask] = {
    task.name: task for task in (
        EvalTask(name="chitchat_nll", evaluator="nll", config={"dataset": "chitchat", "split": "test"},
                 description="held-out NLL on the shipped chitchat conversations (the main job's data)"),
        EvalTask(name="arithmetic", evaluator="rl_reward",
                 config={"env": "arithmetic", "num_problems": 32, "grader": "numeric", "max_tokens": 32},
                 description="'What is x + y?' for 32 seeded problems, graded numerically (rl_basic's env)"),
        EvalTask(name="math_word_problems", evaluator="rl_reward",
                 config={"env": "problems", "dataset": "math_word_problems", "split": "test", "grader": "boxed",
                         "max_tokens": 256},
                 description="shipped math word problems, boxed answers (math_rl's test split)"),
        EvalTask(name="preference_pairs", evaluator="preference",
                 config={"dataset": "preference_pairs", "split": "test"},
                 description="held-out preference pairs: how often the chosen reply is the likelier one"),
        EvalTask(name="chitchat_judge", evaluator="llm_judge", config={"dataset": "chitchat", "split": "test"},
                 description="replies to the held-out chitchat conversations, rated 1-10 by the llm_client judge"),
    )
}


def _checked_task(name: str, loaded: Any) -> EvalTask:
    task = loaded if isinstance(loaded, EvalTask) else EvalTask.model_validate(loaded)
    check_entry_name("task", name, task.name)
    return task


TASKS: Registry[EvalTask] = Registry(
    "evaluation task",
    builtins={"gsm8k": "tinkex_cookbook.eval.public:GSM8K", "math500": "tinkex_cookbook.eval.public:MATH500",
              "mmlu": "tinkex_cookbook.eval.public:MMLU", "ifeval": "tinkex_cookbook.eval.public:IFEVAL",
              "mmlu_sample": "tinkex_cookbook.eval.public:MMLU_SAMPLE",
              "ifeval_sample": "tinkex_cookbook.eval.public:IFEVAL_SAMPLE"},
    group="tinkex_cookbook.tasks",
    hint="list them with `tinkex-cookbook eval --list-tasks`; add your own with register_task() or a plugin",
    adapt=_checked_task,
)
for _task in SHIPPED_TASKS.values():
    TASKS.register(_task.name, _task)


def register_task(task: EvalTask, replace: bool = False) -> EvalTask:
    return TASKS.register(task.name, task, replace=replace)


TaskInput = str | Mapping[str, Any] | EvalTask


def resolve_task(spec: TaskInput) -> EvalTask:
    """A task from a name, a mapping (a registered task with keys replaced, or a task of its own), or a task."""
    if isinstance(spec, EvalTask):
        return spec
    if isinstance(spec, str):
        return TASKS.get(spec.strip())
    if not isinstance(spec, Mapping):
        raise ConfigError(f"an evaluation task is a name or a mapping, not {type(spec).__name__}: {spec!r:.80}")
    data = dict(spec)
    if "task" in data:
        base = TASKS.get(str(data.pop("task")))
        name = str(data.pop("name", base.name))
        return base.model_copy(update={"name": name, "config": {**base.config, **data}})
    if "evaluator" not in data or "name" not in data:
        raise ConfigError(f"evaluation task {spec!r:.100} needs 'task' (a registered task to change) or both "
                          "'name' and 'evaluator' (a task of its own); e.g. {\"task\": \"arithmetic\", \"limit\": 8}")
    fields = {"name": data.pop("name"), "evaluator": data.pop("evaluator"),
              "description": data.pop("description", "")}
    try:
        return EvalTask.model_validate({**fields, "config": data})
    except ValidationError as exc:
        raise ConfigError(f"evaluation task {fields['name']!r}: {exc.errors()[0]['msg']}") from None


def resolve_tasks(specs: list[TaskInput] | tuple[TaskInput, ...] | str) -> list[EvalTask]:
    """Tasks from a list, or a comma-separated string of names; each is built once to check its config."""
    if isinstance(specs, str):
        specs = [name for name in specs.split(",") if name.strip()]
    tasks = [resolve_task(spec) for spec in specs]
    if not tasks:
        raise ConfigError("no evaluation task given; name one or more, e.g. --tasks chitchat_nll "
                          f"(shipped: {choices(SHIPPED_TASKS)})")
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ConfigError(f"evaluation task {task.name!r} is given twice; give each task once "
                              "(a changed copy needs a 'name' of its own)")
        seen.add(task.name)
        task.build()
    return tasks


def describe_tasks() -> str:
    lines = []
    for name in TASKS.names():
        try:
            task = TASKS.get(name)
        except Exception as exc:  # a broken plugin is listed, not fatal to the listing
            lines.append(f"  {name:<20} (cannot load: {exc})")
            continue
        lines.append(f"  {name:<20} {task.evaluator:<11} {task.description}")
    return "evaluation tasks:\n" + "\n".join(lines)
