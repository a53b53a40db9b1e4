"""Environments the RL recipe ships: graded problems, on-the-fly arithmetic, and a dense toy.

- ``problems``: single-turn question/answer rows from the dataset store (e.g. the shipped
  ``math_word_problems``), graded by a named grader; reward as in tinker-cookbook's
  ``ProblemEnv``: ``format_coef * (format_ok - 1) + correct``.
- ``arithmetic``: "What is x + y?" generated from the run seed, tinker-cookbook's toy RL task.
- ``digits``: reward = the share of the response's tokens that are digits. Dense: every
  sample scores between 0 and 1, so even a randomly initialised tiny model gets a signal
  and its mean reward visibly rises within a few steps; used to check the algorithm learns.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.errors import DatasetError, UnknownNameError, choices
from tinkex_cookbook.ports import DatasetStore, ModelInput, Tokenizer
from tinkex_cookbook.train.renderers import Message, Renderer, get_text_content
from tinkex_cookbook.train.rl.graders import Grader, extract_boxed, extract_gsm8k, get_grader, reward
from tinkex_cookbook.train.rl.types import Env, EnvGroupBuilder, StepResult, StopCondition

BOXED_SUFFIX = " Write your final answer in \\boxed{}."


@dataclass
class ProblemEnv:
    """One question; the policy answers once; the grader scores the answer's text."""

    renderer: Renderer
    question: str
    answer: str
    grader: Grader
    format_coef: float = 0.1
    prefix: Sequence[Message] = ()

    def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        messages = [*self.prefix, {"role": "user", "content": self.question}]
        return self.renderer.build_generation_prompt(messages), self.renderer.get_stop_sequences()

    def step(self, action: Sequence[int]) -> StepResult:
        message, termination = self.renderer.parse_response(list(action))
        text = get_text_content(message)
        format_ok = termination.is_clean and self.grader.check_format(text)
        correct = bool(self.grader.grade(text, self.answer))
        return StepResult(reward(format_ok, correct, self.format_coef), True,
                          metrics={"format": float(format_ok), "correct": float(correct)})


@dataclass
class DigitsEnv:
    """Dense toy reward: the share of response tokens whose text is made of digits only."""

    renderer: Renderer
    tokenizer: Tokenizer
    prompt: str

    def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        messages = [{"role": "user", "content": self.prompt}]
        return self.renderer.build_generation_prompt(messages), self.renderer.get_stop_sequences()

    def step(self, action: Sequence[int]) -> StepResult:
        texts = [self.tokenizer.decode([t]).strip() for t in action]
        share = sum(1 for t in texts if t.isdigit()) / max(len(texts), 1)
        return StepResult(share, True, metrics={"digit_share": share})


@dataclass
class GroupOf:
    """``group_size`` fresh copies of one environment."""

    make_env: Callable[[], Env]
    group_size: int

    def make_envs(self) -> Sequence[Env]:
        return [self.make_env() for _ in range(self.group_size)]


@dataclass
class ProblemDataset:
    """``batch_size`` groups per step from a list of (question, answer) problems, reshuffled each pass."""

    problems: Sequence[tuple[str, str]]
    make_env: Callable[[str, str], Env]
    batch_size: int
    group_size: int
    num_steps: int
    seed: int = 0
    _orders: dict[int, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.num_steps

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.problems)))
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
            self._orders[epoch] = order
        return self._orders[epoch]

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        per_epoch = len(self.problems) // self.batch_size
        epoch, batch = divmod(index, per_epoch)
        picked = self._order(epoch)[batch * self.batch_size : (batch + 1) * self.batch_size]
        return [GroupOf(_bind(self.make_env, *self.problems[i]), self.group_size) for i in picked]


def _bind(make_env: Callable[[str, str], Env], question: str, answer: str) -> Callable[[], Env]:
    return lambda: make_env(question, answer)


@dataclass
class GeneratedDataset:
    """Problems generated per step from the seed: unlimited, and the same on every run."""

    generate: Callable[[random.Random], tuple[str, str]]
    make_env: Callable[[str, str], Env]
    batch_size: int
    group_size: int
    num_steps: int
    seed: int = 0

    def __len__(self) -> int:
        return self.num_steps

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        rng = random.Random(f"{self.seed}:batch:{index}")
        return [GroupOf(_bind(self.make_env, *self.generate(rng)), self.group_size) for _ in range(self.batch_size)]


def arithmetic_problem(rng: random.Random) -> tuple[str, str]:
    x, y = rng.randrange(100), rng.randrange(100)
    return f"What is {x} + {y}?", str(x + y)


def load_problems(store: DatasetStore, name: str, split: str, limit: int | None = None,
                  question_field: str = "question", answer_field: str = "answer") -> list[tuple[str, str]]:
    """(question, final answer) per row; a malformed row is named by its index, with the keys it has.

    An answer that is a whole solution keeps only its final answer: the last ``\\boxed{...}`` (MATH's
    ``solution``) or what follows ``####`` (GSM8K's ``answer``), so the grader compares like with like.
    """
    rows = store.load_dataset(name, split).to_list()
    problems = []
    where = f"of dataset {name!r} ({split})"
    for index, row in enumerate(rows[:limit] if limit else rows):
        question, answer = row.get(question_field), row.get(answer_field)
        if not isinstance(question, str) or not question or answer is None:
            raise DatasetError(
                f"row {index} {where} needs a non-empty string {question_field!r} and an {answer_field!r}; got "
                f"keys {sorted(row)}. Fix: set question_field= and answer_field= to the columns holding them "
                "(e.g. question_field=problem answer_field=solution for MATH)")
        answer = final_answer(answer) if isinstance(answer, str) else answer
        if not _is_answer(answer):
            raise DatasetError(f"row {index} {where}: field {answer_field!r} must be a non-empty string or a "
                               f"finite number, got {answer!r:.60}. Fix: write the expected final answer, e.g. "
                               '"42" or 42, or drop the row')
        problems.append((question, str(answer)))
    return problems


def final_answer(text: str) -> str:
    """A solution's final answer (its last ``\\boxed{...}``, else what follows ``####``), or ``text`` as it is."""
    if "\\boxed" in text:
        boxed = extract_boxed(text)
        if boxed is not None:
            return boxed
    if "####" in text:
        return extract_gsm8k(text) or ""
    return text


def problem_set(store: DatasetStore, cfg: Any) -> list[tuple[str, str]]:
    """The ``problems`` env's rows, checked: enough of them for one batch."""
    problems = load_problems(store, cfg.dataset, cfg.dataset_split, question_field=cfg.question_field,
                             answer_field=cfg.answer_field)
    if len(problems) < cfg.batch_size:
        raise DatasetError(f"dataset {cfg.dataset!r} has {len(problems)} problems, fewer than "
                           f"batch_size={cfg.batch_size}. Fix: set batch_size={max(len(problems), 1)} or lower")
    return problems


def _is_answer(value: Any) -> bool:
    """Text a grader can compare a reply with: ``str()`` of a list, bool or NaN is no answer any reply gives."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


RL_ENVS = ("problems", "arithmetic", "digits")


def build_rl_dataset(cfg: Any, renderer: Renderer, tokenizer: Tokenizer, dataset_store: DatasetStore,
                     problems: list[tuple[str, str]] | None = None) -> Any:
    """The step-indexed groups for ``cfg.env`` (one of ``RL_ENVS``); ``problems``: the ``problems`` env's rows
    when already read (``problem_set``)."""
    sizes = {"batch_size": cfg.batch_size, "group_size": cfg.group_size, "num_steps": cfg.num_steps,
             "seed": cfg.seed}
    if cfg.env == "digits":
        def digits(question: str, answer: str) -> Env:
            return DigitsEnv(renderer, tokenizer, question)
        return GeneratedDataset(lambda rng: (f"Write a number larger than {rng.randrange(1000)}.", ""),
                                digits, **sizes)
    grader = get_grader(cfg.grader)
    suffix = BOXED_SUFFIX if cfg.grader.startswith("boxed") else ""

    def problem(question: str, answer: str) -> Env:
        return ProblemEnv(renderer, question + suffix, answer, grader, cfg.format_coef)

    if cfg.env == "arithmetic":
        return GeneratedDataset(arithmetic_problem, problem, **sizes)
    if cfg.env == "problems":
        return ProblemDataset(problems if problems is not None else problem_set(dataset_store, cfg), problem,
                              **sizes)
    raise UnknownNameError(f"unknown RL environment {cfg.env!r}; valid: {choices(RL_ENVS)}")
