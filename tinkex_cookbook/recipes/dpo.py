"""Preference optimisation (DPO) on chosen/rejected pairs, as tinker-cookbook's ``train_dpo``.

The spec reads: open a session and its tokenizer, load and render the pairs,
save the starting weights as the frozen reference (or restore the last
checkpoint); then for each step score the batch under the reference, train on
the DPO loss, log; evaluate on held-out pairs every ``eval_every`` steps and after the last,
checkpoint every ``save_every``, and save the final weights.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, NonNegativeInt, PositiveFloat, PositiveInt

from tinkex_cookbook.recipes.base import RecipeBase, evaluation_in_loop, register_recipe, stages, step_loop
from tinkex_cookbook.recipes.common import MaxLength, Name, StepRecipeConfig
from tinkex_cookbook.spec import Node
from tinkex_cookbook.train.schedules import LRSchedule


class DpoConfig(StepRecipeConfig):
    """DPO settings; defaults follow the reference's ``train_dpo`` where they apply."""

    model_name: Name = Field("meta-llama/Llama-3.2-1B", description="base model to train")
    dataset: Name = Field("preference_pairs", description="pairs dataset (prompt/chosen/rejected, HH-RLHF, ...)")
    dataset_split: Name = Field("train", description="split to load; test pairs are held out from it")
    test_size: NonNegativeInt = Field(16, description="pairs held out for evaluation")
    max_length: MaxLength | None = Field(1024, description="truncate each side to this many tokens")
    beta: PositiveFloat = Field(0.1, description="DPO temperature: how far the policy may move from the reference")
    batch_size: PositiveInt = Field(8, description="pairs per optimizer step")
    num_epochs: PositiveInt = Field(1, description="passes over the training pairs")
    learning_rate: PositiveFloat = Field(1e-5, description="peak Adam learning rate")
    lr_schedule: LRSchedule = Field("linear", description="linear, cosine or constant decay")
    lora_rank: PositiveInt = Field(32, description="LoRA rank of the trained adapter")
    save_every: NonNegativeInt = Field(20, description="checkpoint every N steps (0: only final)")
    eval_every: NonNegativeInt = Field(
        10, description="evaluate on held-out pairs, and run the evals= tasks, every N steps (0: only after the last step)")
    seed: int = Field(0, description="shuffling seed")


@register_recipe
class Dpo(RecipeBase[DpoConfig]):
    name: ClassVar[str] = "dpo"
    Config: ClassVar[type[BaseModel]] = DpoConfig

    @classmethod
    def title(cls, cfg: DpoConfig) -> str:
        return f"{cfg.model_name}:{cfg.dataset}"

    @classmethod
    def setup(cls, cfg: DpoConfig) -> list[Node]:
        return stages("init_session", "init_tokenizer", "dpo_load_pairs", "resume", "dpo_reference")

    @classmethod
    def train(cls, cfg: DpoConfig) -> list[Node]:
        body = stages("dpo_step", "log_step")
        if cfg.test_size:
            body += evaluation_in_loop("dpo_evaluate", cfg.eval_every)
        return [step_loop(body, cfg.save_every, cfg)]

    @classmethod
    def evaluation(cls, cfg: DpoConfig) -> list[Node]:
        return stages("dpo_evaluate")
