"""Supervised fine-tuning on chat conversations: the cookbook's basic recipe.

The spec reads: load the dataset, open a training session, render the
conversations into weighted datums, then for each epoch and batch submit
forward_backward, take an optimizer step and log; checkpoint every
``save_every`` steps, evaluate every ``eval_every``, and save the final weights. The
held-out NLL is measured before the first step and after the last, and the base and final
models answer the same held-out prompts (``samples.jsonl``), so a run shows what it changed.

``mixture`` trains on several datasets interleaved by weight; ``streaming`` reads the data as it
trains and renders each batch when it is taken (the run's length is then ``max_steps``);
``packing`` concatenates examples into sequences of up to ``max_length`` tokens (``train/sl_data.py``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from tinkex_cookbook.recipes.base import RecipeBase, eval_stages, register_recipe, stages
from tinkex_cookbook.recipes.common import RENDERER_HELP, MaxLength, Name, RecipeConfig, check_renderer
from tinkex_cookbook.spec import LoopSpec, Node, StageSpec
from tinkex_cookbook.train.formats import FormatName, check_role_map
from tinkex_cookbook.train.renderers import TrainOnWhat
from tinkex_cookbook.train.schedules import LRSchedule
from tinkex_cookbook.train.sl_data import Part


class MixturePart(BaseModel):
    """One dataset of a mixture."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: Name = Field(description="dataset name (a named set such as gsm8k, or your own)")
    split: Name | None = Field(None, description="split to read (default: the run's dataset_split)")
    weight: PositiveFloat = Field(1.0, description="relative share of the rows drawn from this dataset")


MIXTURE_HELP = ('datasets interleaved by weight, instead of dataset: [{"dataset": "no_robots", "weight": 0.7}, '
                '{"dataset": "gsm8k", "weight": 0.3, "split": "train"}]; it ends when the next dataset drawn runs out')


class SlBasicConfig(RecipeConfig):
    """Supervised fine-tuning settings; defaults follow the reference's sl_basic."""

    model_config = ConfigDict(use_enum_values=True)

    model_name: Name = Field("meta-llama/Llama-3.2-1B", description="base model to fine-tune")
    dataset: Name = Field(
        "no_robots", description="dataset name for the dataset_store port, or a .jsonl/.json file path")
    dataset_split: Name = Field("train", description="split to train on")
    dataset_format: FormatName = Field(
        "auto", description="row shape: auto (detected from the rows' keys), messages, sharegpt, alpaca, "
        "prompt_completion or text (docs/datasets.md)")
    messages_field: Name | None = Field(
        None, description="column holding the message list (default: messages; conversations for sharegpt)")
    role_map: dict[str, str] = Field(
        default_factory=dict, description='role names in the data -> ours, e.g. {"bot": "assistant"} '
        "(over sharegpt's usual names: human, gpt, ...)")
    text_field: Name = Field("text", description="column holding plain text (dataset_format=text)")
    mixture: list[MixturePart] = Field(default_factory=list, description=MIXTURE_HELP)
    streaming: bool = Field(
        False, description="read the data as it trains, rendering each batch when taken (needs max_steps)"
    )
    shuffle_buffer: PositiveInt = Field(1000, description="rows a streamed dataset is shuffled through")
    max_steps: PositiveInt | None = Field(None, description="optimizer steps of a streamed run (streaming only)")
    packing: bool = Field(
        False, description="pack several examples into each sequence of up to max_length tokens; "
        "batch_size then counts packed sequences"
    )
    test_size: NonNegativeInt | None = Field(
        None, description="rows held out for evaluation (default: 32, or 10% of a dataset too small for that)")
    train_size: PositiveInt | None = Field(None, description="use at most this many training rows (default: all)")
    renderer_name: str | None = Field(None, description=RENDERER_HELP)
    train_on_what: TrainOnWhat = Field(
        TrainOnWhat.ALL_ASSISTANT_MESSAGES, description="which tokens carry loss weight"
    )
    max_length: MaxLength | None = Field(
        32768, description="truncate examples to this many tokens (longer rows are cut, as the reference does)"
    )
    loss_reduction: Literal["mean", "none"] = Field(
        "mean", description="mean: each example's weights sum to 1 (the reference's default); none: per token"
    )
    num_epochs: PositiveInt = Field(1, description="passes over the training set")
    batch_size: PositiveInt = Field(16, description="conversations per optimizer step")
    learning_rate: PositiveFloat = Field(1e-5, description="peak Adam learning rate")
    lr_schedule: LRSchedule = Field("linear", description="linear, cosine or constant decay")
    warmup_steps: NonNegativeInt = Field(0, description="steps of linear warmup before the schedule")
    pipeline_depth: NonNegativeInt = Field(
        1, description="steps submitted ahead before awaiting results (0: wait for each step)"
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    adam_eps: PositiveFloat = 1e-8
    lora_rank: PositiveInt = Field(32, description="LoRA rank of the trained adapter")
    save_every: NonNegativeInt = Field(20, description="checkpoint every N steps (0: only final)")
    eval_every: NonNegativeInt = Field(
        8, description="evaluate every N steps (0: only before the first step and after the last)"
    )
    sample_prompts: NonNegativeInt = Field(
        4, description="held-out prompts the base and the final model answer, side by side in samples.jsonl"
    )
    sample_max_tokens: PositiveInt = Field(64, description="longest reply, in tokens, for those samples")
    seed: int = Field(0, description="shuffling and sampling seed")
    log_path: str | None = Field(None, description="run folder in the blob store (default: timestamped)")

    @field_validator("renderer_name")
    @classmethod
    def _known_renderer(cls, name: str | None) -> str | None:
        return check_renderer(name)

    @field_validator("role_map")
    @classmethod
    def _known_roles(cls, roles: dict[str, str]) -> dict[str, str]:
        return dict(check_role_map(roles))

    @model_validator(mode="after")
    def _data_options(self) -> SlBasicConfig:
        """The data options that only make sense together, checked before any work."""
        if self.mixture:  # dataset names the mixture, as the saved config and the run's title show it
            name = "+".join(p.dataset for p in self.mixture)
            if "dataset" in self.model_fields_set and self.dataset != name:
                raise ValueError("give either dataset or mixture, not both: a mixture lists its datasets")
            self.dataset = name
        if self.streaming:
            if self.max_steps is None:
                raise ValueError("streaming=true reads the data as it trains, so its length is unknown: set "
                                 "max_steps to the number of optimizer steps to take")
            for key, default in (("num_epochs", 1), ("train_size", None)):
                if getattr(self, key) != default:
                    raise ValueError(f"{key} does not apply with streaming=true: max_steps sets the run's length "
                                     "(a new pass over the data starts when one runs out). Fix: drop " + key)
        elif self.max_steps is not None:
            raise ValueError("max_steps applies to streaming=true; a dataset held whole trains for num_epochs "
                             "(cap it with train_size), so drop max_steps or set streaming=true")
        if self.packing and self.max_length is None:
            raise ValueError("packing=true fills sequences up to max_length tokens: set max_length")
        return self

    def parts(self) -> list[Part]:
        """The datasets a run reads: the mixture's, else ``dataset`` alone."""
        if not self.mixture:
            return [Part(self.dataset, self.dataset_split)]
        return [Part(p.dataset, p.split or self.dataset_split, p.weight) for p in self.mixture]


@register_recipe
class SlBasic(RecipeBase[SlBasicConfig]):
    name: ClassVar[str] = "sl_basic"
    Config: ClassVar[type[BaseModel]] = SlBasicConfig

    @classmethod
    def title(cls, cfg: SlBasicConfig) -> str:
        return f"{cfg.model_name}:{cfg.dataset}"

    @classmethod
    def setup(cls, cfg: SlBasicConfig) -> list[Node]:
        if cfg.streaming:
            return stages("open_stream", "init_session", "init_tokenizer", "build_stream", "resume")
        return stages("load_dataset", "init_session", "init_tokenizer", "build_dataset", "resume")

    @classmethod
    def train(cls, cfg: SlBasicConfig) -> list[Node]:
        step = stages("get_stream_batch" if cfg.streaming else "get_batch", "forward_backward", "optim_step",
                      "log_step_metrics")
        if cfg.test_size != 0:
            step.append(StageSpec(name="evaluate_at_end"))
        if cfg.eval_every and cfg.test_size != 0:
            step.append(StageSpec(name="evaluate", every=cfg.eval_every))
        step += eval_stages(cfg)
        if cfg.save_every:  # a checkpoint is of finished steps: read the ones in flight first
            step += [StageSpec(name="finish_steps", every=cfg.save_every),
                     StageSpec(name="checkpoint", every=cfg.save_every)]
        on_stop = stages("finish_steps", "checkpoint")  # Ctrl-C, SIGTERM: checkpoint the steps reached
        batches = LoopSpec(
            name="batches", var="batch", count_key="num_batches", start_key="start_batch", body=step,
            on_stop=on_stop,
        )
        epochs = LoopSpec(  # a stream's passes are its own: one loop of max_steps batches
            name="epochs", var="epoch", count=cfg.num_epochs, start_key="start_epoch",
            body=[batches] if cfg.streaming else [StageSpec(name="set_epoch"), batches], on_stop=on_stop,
        )
        return [StageSpec(name="evaluate_base"), epochs]

    @classmethod
    def finish(cls, cfg: SlBasicConfig) -> list[Node]:
        return stages("finish_steps", "evaluate_final")

    @classmethod
    def evaluation(cls, cfg: SlBasicConfig) -> list[Node]:
        """The held-out NLL of the run's checkpoint (or of the base model): no training."""
        return stages("evaluate")
