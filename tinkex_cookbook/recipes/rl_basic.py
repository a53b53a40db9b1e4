"""Reinforcement learning with group-relative advantages: tinker-cookbook's RL loop on any backend.

The spec reads: open a training session and its tokenizer, build the
environments, restore the last checkpoint if any, measure the starting rewards
on the first batch; then for each step sample every group, centre the rewards
within each group, train on the sampled turns with an importance-sampling loss,
save the new weights for sampling and log; measure the rewards again every
``eval_every`` steps and after the last, checkpoint every ``save_every`` steps,
and save the final weights.

``rl_basic`` defaults to graded arithmetic; ``math_rl`` to the shipped math word
problems with boxed answers. Both take the same config.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
)

from tinkex_cookbook.recipes.base import (
    RecipeBase,
    evaluation_before,
    evaluation_in_loop,
    register_recipe,
    stages,
    step_loop,
    transcript_stages,
)
from tinkex_cookbook.recipes.common import Name, StepRecipeConfig
from tinkex_cookbook.spec import Node
from tinkex_cookbook.train.rl.envs import RL_ENVS
from tinkex_cookbook.train.schedules import LRSchedule
from tinkex_cookbook.train.transcripts import (
    DEFAULT_PER_STEP,
    TRANSCRIPT_EVERY_HELP,
    TRANSCRIPTS_HELP,
)


class RlBasicConfig(StepRecipeConfig):
    """RL settings; defaults follow tinker-cookbook's ``rl_basic`` / ``math_rl`` where they apply."""

    model_name: Name = Field("meta-llama/Llama-3.2-1B", description="base model to train")
    env: str = Field("arithmetic", description=f"environment: {', '.join(RL_ENVS)}")
    dataset: Name = Field("math_word_problems", description="problems dataset (env=problems)")
    dataset_split: Name = Field("train", description="split of the problems dataset")
    question_field: Name = Field("question", description="column holding the question (e.g. problem for MATH)")
    answer_field: Name = Field(
        "answer", description="column holding the answer; a whole solution (MATH's solution, GSM8K's answer) "
        "counts by its final \\boxed{...} or '#### N' answer")
    grader: str = Field("numeric", description="answer grader: numeric, boxed, boxed_sympy, gsm8k, exact_match, contains")
    format_coef: NonNegativeFloat = Field(0.1, description="reward lost when the answer's format is wrong")
    group_size: PositiveInt = Field(4, description="samples per problem, compared with each other")
    batch_size: PositiveInt = Field(16, description="problems (groups) per step")
    num_steps: PositiveInt = Field(20, description="training steps (problems envs: at most one pass per step)")
    max_tokens: PositiveInt = Field(64, description="longest sampled answer, in tokens")
    temperature: PositiveFloat = Field(1.0, description="sampling temperature")
    loss_fn: Literal["importance_sampling", "ppo", "cispo"] = Field(
        "importance_sampling", description="policy-gradient loss the backend computes")
    loss_fn_config: dict[str, float] | None = Field(None, description="loss options, e.g. ppo clip thresholds")
    kl_penalty_coef: NonNegativeFloat = Field(0.0, description="penalty for drifting from the base model (0: off)")
    remove_constant_reward_groups: bool = Field(True, description="skip groups whose rewards are all equal")
    off_policy_steps: Literal[0, 1] = Field(
        0, description="1: sample the next step while this one trains, from weights one step old")
    learning_rate: PositiveFloat = Field(4e-5, description="peak Adam learning rate")
    lr_schedule: LRSchedule = Field("constant", description="linear, cosine or constant decay")
    lora_rank: PositiveInt = Field(32, description="LoRA rank of the trained adapter")
    save_every: NonNegativeInt = Field(10, description="checkpoint every N steps (0: only final)")
    eval_every: NonNegativeInt = Field(
        10, description="measure rewards on the first batch with fixed seeds, and run the evals= tasks, every N "
        "steps (0: only before the first step and after the last)")
    seed: int = Field(0, description="problem order and sampling seed")
    transcripts_per_step: NonNegativeInt = Field(DEFAULT_PER_STEP, description=TRANSCRIPTS_HELP)
    transcript_every: NonNegativeInt = Field(1, description=TRANSCRIPT_EVERY_HELP)

    @field_validator("env")
    @classmethod
    def _known_env(cls, name: str) -> str:
        if name not in RL_ENVS:
            raise ValueError(f"unknown env {name!r}; valid: {', '.join(RL_ENVS)}")
        return name

    @field_validator("grader")
    @classmethod
    def _known_grader(cls, name: str) -> str:
        from tinkex_cookbook.train.rl.graders import check_grader

        return check_grader(name)


class MathRlConfig(RlBasicConfig):
    env: str = Field("problems", description=f"environment: {', '.join(RL_ENVS)}")
    grader: str = Field("boxed", description="answer grader: numeric, boxed, boxed_sympy, gsm8k, exact_match, contains")
    max_tokens: PositiveInt = Field(256, description="longest sampled answer, in tokens")


@register_recipe
class RlBasic(RecipeBase[RlBasicConfig]):
    name: ClassVar[str] = "rl_basic"
    Config: ClassVar[type[BaseModel]] = RlBasicConfig

    @classmethod
    def title(cls, cfg: RlBasicConfig) -> str:
        return f"{cfg.model_name}:{cfg.env}"

    @classmethod
    def setup(cls, cfg: RlBasicConfig) -> list[Node]:
        first = ["rl_load_problems"] if cfg.env == "problems" else []  # bad rows fail before a session opens
        return stages(*first, "init_session", "init_tokenizer", "rl_build_envs", "resume", "rl_open_samplers")

    @classmethod
    def train(cls, cfg: RlBasicConfig) -> list[Node]:
        body = [*stages("rl_sample", "rl_train", "rl_update_sampler", "log_step"), *transcript_stages(cfg),
                *evaluation_in_loop("rl_evaluate", cfg.eval_every)]
        return [evaluation_before("rl_evaluate"), step_loop(body, cfg.save_every, cfg)]

    @classmethod
    def evaluation(cls, cfg: RlBasicConfig) -> list[Node]:
        """Rewards of the run's checkpoint (or of the base model) on the first batch, fixed seeds."""
        return stages("rl_evaluate")


@register_recipe
class MathRl(RlBasic):
    name: ClassVar[str] = "math_rl"
    Config: ClassVar[type[BaseModel]] = MathRlConfig
