"""``rl_reward``: an RL environment's reward on a held-out set of its problems, pass@1 and pass@k.

The environments are the RL recipe's own (``problems`` from a dataset, generated
``arithmetic``, the dense ``digits`` toy), with their graders and format reward, so the test
reward reads like the training reward. Each problem gets ``num_samples`` samples with a seed
of its own; all are submitted before any is awaited. Generated problems come from a seed
apart from training's, so a test set is not the training batches.
"""

from __future__ import annotations

import random
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, field_validator, model_validator

from tinkex_cookbook.eval.base import EvalConfig, EvalEnv, EvalResult, EvalTarget, EvaluatorBase, register_evaluator
from tinkex_cookbook.eval.evaluators.generation import SamplingEvalConfig, sample_metrics
from tinkex_cookbook.eval.metrics import example_seed
from tinkex_cookbook.ports import SamplingParams
from tinkex_cookbook.train.replies import parse_reply
from tinkex_cookbook.train.rl.envs import BOXED_SUFFIX, DigitsEnv, ProblemEnv, arithmetic_problem, load_problems
from tinkex_cookbook.train.rl.graders import check_grader, get_grader
from tinkex_cookbook.train.rl.types import Env
from tinkex_cookbook.train.types import stop_tuple

TEST_SEED = "test"
"""Generated problems for evaluation come from this seed, never from a training run's."""


class RlRewardConfig(EvalConfig, SamplingEvalConfig):
    env: Literal["problems", "arithmetic", "digits"] = Field("problems", description="the RL environment")
    dataset: str = Field("math_word_problems", min_length=1, description="problems dataset (env=problems)")
    split: str = Field("test", min_length=1, description="split of the problems dataset")
    skip: NonNegativeInt = Field(0, description="problems to skip first")
    num_problems: PositiveInt = Field(32, description="generated problems (env=arithmetic or digits)")
    grader: str = Field("boxed", description="answer grader (env=problems or arithmetic)")
    format_coef: NonNegativeFloat = Field(0.1, description="reward lost when the answer's format is wrong")
    max_tokens: PositiveInt = Field(64, description="longest answer, in tokens")

    @field_validator("grader")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_grader(name)

    @model_validator(mode="after")
    def _default_k(self) -> RlRewardConfig:
        if self.num_samples > 1 and not self.pass_k:
            self.pass_k = [1, self.num_samples]
        return self


@register_evaluator
class RlRewardEvaluator(EvaluatorBase[RlRewardConfig]):
    name: ClassVar[str] = "rl_reward"
    Config: ClassVar[type[BaseModel]] = RlRewardConfig

    def _problems(self, env: EvalEnv) -> list[tuple[int, str, str]]:
        cfg = self.config
        if cfg.env == "problems":
            problems = load_problems(env.dataset_store, cfg.dataset, cfg.split)
            end = len(problems) if cfg.limit is None else cfg.skip + cfg.limit
            return [(i, q, a) for i, (q, a) in enumerate(problems) if cfg.skip <= i < end]
        count = min(cfg.num_problems, cfg.limit or cfg.num_problems)
        rng = random.Random(f"{TEST_SEED}:{cfg.env}")
        if cfg.env == "digits":
            return [(i, f"Write a number larger than {rng.randrange(1000)}.", "") for i in range(count)]
        return [(i, *arithmetic_problem(rng)) for i in range(count)]

    def _env(self, target: EvalTarget, question: str, answer: str) -> Env:
        cfg = self.config
        if cfg.env == "digits":
            return DigitsEnv(target.renderer, target.renderer.tokenizer, question)
        suffix = BOXED_SUFFIX if cfg.grader.startswith("boxed") else ""
        return ProblemEnv(target.renderer, question + suffix, answer, get_grader(cfg.grader), cfg.format_coef)

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        problems = self._problems(env)
        submitted = []
        with env.task(f"{self.name} {target.label}", len(problems)) as progress:
            for index, question, answer in problems:
                prompt, stop = self._env(target, question, answer).initial_observation()
                params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, stop=stop_tuple(stop),
                                        seed=example_seed(env.seed, f"{cfg.env}:{cfg.dataset}", index))
                submitted.append((index, question, answer, prompt,
                                  target.sampler.sample(prompt, cfg.num_samples, params)))
            records, rewards, verdicts = [], [], []
            for index, question, answer, _prompt, future in submitted:
                sequences = future.result().sequences
                steps = [self._env(target, question, answer).step(list(s.tokens)) for s in sequences]
                replies = [parse_reply(target.renderer, list(s.tokens)) for s in sequences]
                sample_rewards = [step.reward for step in steps]
                correct = [bool(step.metrics.get("correct", step.reward >= 1.0)) for step in steps]
                rewards += sample_rewards
                verdicts.append(correct)
                records.append({"index": index, "prompt": question, "reference": answer, "replies": replies,
                                "rewards": sample_rewards, "correct": correct})
                progress.advance()
        metrics = {"reward": sum(rewards) / len(rewards), **sample_metrics(verdicts, cfg.pass_k)}
        if cfg.env != "digits":
            metrics["pass@1"] = metrics["accuracy"]
        metrics["examples"] = float(len(records))
        return EvalResult(metrics, records)

