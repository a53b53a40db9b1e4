"""``generation``: sample replies to prompts and score them with a grader (exact, contains, numeric,
boxed, sympy, gsm8k, choice, ifeval, math_verify).

A row is ``question``/``answer`` (fields configurable), or a ``messages`` conversation whose
last assistant message is the reference; with ``format`` (``gsm8k``, ``math``, ``mmlu``,
``ifeval``: ``tinkex_cookbook.eval.public.ROW_FORMATS``) a public set's raw row is turned into
the question and the reference first. Every prompt is submitted before any reply is
awaited, so a remote backend works on them together and the local one batches them.
With ``num_samples=n`` each prompt gets ``n`` samples: ``accuracy`` is the mean over all
samples (pass@1), and ``pass@k`` for each ``k`` in ``pass_k`` is the unbiased estimate.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, NonNegativeFloat, PositiveInt, field_validator, model_validator

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.eval.base import (
    DatasetEvalConfig,
    EvalEnv,
    EvalResult,
    EvalTarget,
    EvaluatorBase,
    register_evaluator,
)
from tinkex_cookbook.eval.evaluators._data import load_rows
from tinkex_cookbook.eval.metrics import example_seed, pass_at_k
from tinkex_cookbook.train.renderers import Message, get_text_content
from tinkex_cookbook.train.replies import parse_reply, sampling_params
from tinkex_cookbook.train.rl.graders import check_grader, get_grader


class SamplingEvalConfig(BaseModel):
    """How replies are sampled: greedy by default, so a checkpoint's score is the same every time."""

    max_tokens: PositiveInt = Field(256, description="longest reply, in tokens")
    temperature: NonNegativeFloat = Field(0.0, description="0: greedy")
    num_samples: PositiveInt = Field(1, description="samples per prompt (pass@k needs k of them)")
    pass_k: list[PositiveInt] = Field(default_factory=list, description="report pass@k for these k (<= num_samples)")

    @model_validator(mode="after")
    def _k_within_samples(self) -> SamplingEvalConfig:
        too_big = [k for k in self.pass_k if k > self.num_samples]
        if too_big:
            raise ValueError(f"pass_k {too_big} exceeds num_samples={self.num_samples}; raise num_samples")
        if self.num_samples > 1 and self.temperature == 0:
            raise ValueError(f"num_samples={self.num_samples} at temperature 0 samples the same reply each time; "
                             "set temperature (e.g. 0.7)")
        return self


class GenerationConfig(DatasetEvalConfig, SamplingEvalConfig):
    grader: str = Field("exact_match", description="how a reply is scored against the reference")
    question_field: str = Field("question", description="the row's prompt text")
    answer_field: str = Field("answer", description="the row's reference answer")
    system_prompt: str | None = Field(None, description="a system message before each question")
    prompt_suffix: str = Field("", description="text added after each question (e.g. an answer-format hint)")
    format: str | None = Field(None, description="a row format (gsm8k, math, mmlu, ifeval) turning a raw row "
                               "into question and reference; question_field and answer_field are then unused")

    @field_validator("grader")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_grader(name)

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str | None) -> str | None:
        from tinkex_cookbook.eval.public import ROW_FORMATS

        if name is not None and name not in ROW_FORMATS:
            raise ValueError(f"unknown row format {name!r}; valid: {', '.join(sorted(ROW_FORMATS))}")
        return name


def sample_metrics(correct: list[list[bool]], pass_k: list[int]) -> dict[str, float]:
    """``accuracy`` (pass@1 over every sample) and ``pass@k`` for each ``k``, from per-prompt verdicts."""
    flat = [c for row in correct for c in row]
    metrics = {"accuracy": sum(flat) / len(flat)}
    for k in pass_k:
        metrics[f"pass@{k}"] = sum(pass_at_k(len(row), sum(row), k) for row in correct) / len(correct)
    return metrics


@register_evaluator
class GenerationEvaluator(EvaluatorBase[GenerationConfig]):
    name: ClassVar[str] = "generation"
    Config: ClassVar[type[BaseModel]] = GenerationConfig

    def _prompt(self, index: int, row: dict[str, Any]) -> tuple[list[Message], str]:
        cfg = self.config
        question, answer = row.get(cfg.question_field), row.get(cfg.answer_field)
        if cfg.format is not None:
            from tinkex_cookbook.eval.public import RowFormatError, format_row

            try:
                question, answer = format_row(cfg.format, row)
            except RowFormatError as exc:
                raise DatasetError(f"row {index} of {cfg.dataset!r} ({cfg.split}): {exc}") from None
        if isinstance(question, str) and question and answer is not None:
            messages: list[Message] = [{"role": "user", "content": question + cfg.prompt_suffix}]
            reference = answer if isinstance(answer, str) else str(answer)
        elif isinstance(row.get("messages"), list):
            from tinkex_cookbook.train.replies import held_out_prompt

            prompt = held_out_prompt(row, index)
            if prompt is None or prompt.reference is None:
                raise DatasetError(f"row {index} of {cfg.dataset!r}: its messages end with no assistant reply "
                                   "to grade against")
            messages, reference = list(prompt.messages), prompt.reference
        else:
            raise DatasetError(
                f"row {index} of {cfg.dataset!r} ({cfg.split}): expected {cfg.question_field!r} and "
                f"{cfg.answer_field!r} (or a 'messages' conversation); found keys {sorted(row)}. Fix: name the "
                "fields with question_field= and answer_field=")
        if cfg.system_prompt:
            messages = [{"role": "system", "content": cfg.system_prompt}, *messages]
        return messages, reference

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        grader = get_grader(cfg.grader)
        prompts = [(index, *self._prompt(index, row)) for index, row in load_rows(cfg, env)]
        renderer = target.renderer
        with env.task(f"{self.name} {target.label}", len(prompts)) as progress:
            futures = [target.sampler.sample(
                renderer.build_generation_prompt(messages), cfg.num_samples,
                sampling_params(renderer, cfg.max_tokens, cfg.temperature, example_seed(env.seed, cfg.dataset, index)))
                for index, messages, _ in prompts]
            records, verdicts = [], []
            for (index, messages, reference), future in zip(prompts, futures, strict=True):
                replies = [parse_reply(renderer, s.tokens) for s in future.result().sequences]
                correct = [bool(grader.grade(reply, reference)) for reply in replies]
                verdicts.append(correct)
                records.append({"index": index, "prompt": get_text_content(messages[-1]), "reference": reference,
                                "replies": replies, "correct": correct,
                                "format_ok": [bool(grader.check_format(r)) for r in replies]})
                progress.advance()
        metrics = sample_metrics(verdicts, cfg.pass_k)
        metrics["format_rate"] = sum(sum(r["format_ok"]) for r in records) / sum(len(r["format_ok"]) for r in records)
        if cfg.grader == "ifeval":  # IFEval's second headline: the share of single instructions followed
            from tinkex_cookbook.train.rl.eval_graders import ifeval_results

            followed = []
            for record in records:
                record["instructions"] = [ifeval_results(reply, record["reference"]) for reply in record["replies"]]
                followed += [ok for per_reply in record["instructions"] for ok in per_reply]
            metrics["instruction_accuracy"] = sum(followed) / len(followed) if followed else 0.0
        metrics["examples"] = float(len(records))
        return EvalResult(metrics, records)
