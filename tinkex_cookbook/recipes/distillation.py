"""Distillation from a teacher into a LoRA student, as tinker-cookbook's on-policy distillation.

The spec reads: open a session and tokenizer, load the prompts and open the
teacher, restore the last checkpoint (or save the starting sampler), measure
the student's KL to the teacher on held-out prompts; then per step sample,
score with the teacher and train (``mode=on_policy``), or train on the
teacher's own answers (``mode=off_policy``); refresh the sampler, log,
evaluate every ``eval_every`` and after the last step, checkpoint every ``save_every``, save the final weights.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
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
from tinkex_cookbook.recipes.common import MaxLength, Name, StepRecipeConfig
from tinkex_cookbook.spec import Node
from tinkex_cookbook.train.schedules import LRSchedule
from tinkex_cookbook.train.tokenizer_match import check_catalog_pair
from tinkex_cookbook.train.transcripts import (
    DEFAULT_PER_STEP,
    TRANSCRIPT_EVERY_HELP,
    TRANSCRIPTS_HELP,
)


class DistillationConfig(StepRecipeConfig):
    model_name: Name = Field("meta-llama/Llama-3.2-1B", description="student base model")
    teacher: Literal["sampler", "llm"] = Field(
        "sampler", description="sampler: a model or checkpoint on the training backend; llm: the llm_client port "
                               "(off_policy only)")
    teacher_model: Name | None = Field(None, description="teacher base model (teacher=sampler)")
    teacher_path: Name | None = Field(None, description="teacher's saved sampler weights (teacher=sampler)")
    mode: Literal["on_policy", "off_policy"] = Field(
        "on_policy", description="on_policy: teacher scores student samples; off_policy: SL on teacher answers")
    dataset: Name = Field("chitchat", description="prompts: rows with messages, or a prompt/question string")
    dataset_split: Name = Field("train", description="split of the prompts dataset")
    eval_size: NonNegativeInt = Field(8, description="held-out prompts for the student-teacher KL")
    group_size: PositiveInt = Field(1, description="student samples per prompt (on_policy)")
    batch_size: PositiveInt = Field(8, description="prompts per step")
    num_steps: PositiveInt = Field(20, description="training steps")
    max_tokens: PositiveInt = Field(64, description="longest sampled completion")
    max_length: MaxLength | None = Field(1024, description="truncate off-policy examples to this many tokens")
    temperature: PositiveFloat = Field(1.0, description="sampling temperature")
    kl_coef: PositiveFloat = Field(1.0, description="advantage = -kl_coef * (logp_student - logp_teacher)")
    loss_fn: Literal["importance_sampling", "ppo", "cispo"] = Field("importance_sampling")
    learning_rate: PositiveFloat = Field(1e-4, description="peak Adam learning rate")
    lr_schedule: LRSchedule = Field("constant", description="linear, cosine or constant decay")
    lora_rank: PositiveInt = Field(32, description="LoRA rank of the student")
    save_every: NonNegativeInt = Field(10, description="checkpoint every N steps (0: only final)")
    eval_every: NonNegativeInt = Field(
        5, description="measure the KL on held-out prompts, and run the evals= tasks, every N steps (0: only before the first step and after the last)")
    seed: int = Field(0, description="prompt order and sampling seed")
    transcripts_per_step: NonNegativeInt = Field(DEFAULT_PER_STEP, description=TRANSCRIPTS_HELP)
    transcript_every: NonNegativeInt = Field(1, description=TRANSCRIPT_EVERY_HELP)

    @model_validator(mode="after")
    def _one_teacher(self) -> DistillationConfig:
        if self.teacher == "sampler" and (self.teacher_model is None) == (self.teacher_path is None):
            raise ValueError("set exactly one of teacher_model (a base model) or teacher_path (saved weights)")
        if self.teacher == "llm" and self.mode == "on_policy":
            raise ValueError("teacher=llm cannot score the student's tokens; use mode=off_policy")
        return self

    @model_validator(mode="after")
    def _teacher_reads_the_students_tokens(self) -> DistillationConfig:
        """A sampler teacher pairs token ids with the student (both modes): its tokenizer must be the student's.
        Checked here when the model catalog knows both; the session compares the opened tokenizers."""
        if self.teacher == "sampler" and self.teacher_model is not None:
            check_catalog_pair(self.model_name, self.teacher_model, self.renderer_name)
        return self


@register_recipe
class Distillation(RecipeBase[DistillationConfig]):
    name: ClassVar[str] = "distillation"
    Config: ClassVar[type[BaseModel]] = DistillationConfig
    describe_example: ClassVar[dict[str, str]] = {"teacher_model": "<teacher base model>"}

    @classmethod
    def title(cls, cfg: DistillationConfig) -> str:
        return f"{cfg.model_name}:{cfg.dataset}"

    @classmethod
    def setup(cls, cfg: DistillationConfig) -> list[Node]:
        return stages("init_session", "init_tokenizer", "distill_setup", "resume", "open_sampler")

    @classmethod
    def train(cls, cfg: DistillationConfig) -> list[Node]:
        step = "distill_on_policy_step" if cfg.mode == "on_policy" else "distill_off_policy_step"
        body = [*stages(step, "update_sampler", "log_step"), *transcript_stages(cfg),
                *evaluation_in_loop("distill_evaluate", cfg.eval_every)]
        return [evaluation_before("distill_evaluate"), step_loop(body, cfg.save_every, cfg)]

    @classmethod
    def evaluation(cls, cfg: DistillationConfig) -> list[Node]:
        return stages("distill_evaluate")
