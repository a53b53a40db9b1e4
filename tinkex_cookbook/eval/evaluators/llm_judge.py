"""``llm_judge``: sample the target's replies to prompts and have another model (the ``llm_client``
port) rate each one on a scale.

A row is a ``messages`` conversation (the messages before its last assistant reply are the
prompt, that reply is the reference), or a ``prompt``/``question`` string with an optional
``reference``. Every prompt is submitted to the target before any reply is awaited; each
reply is handed to the judge as soon as it arrives, and at most ``concurrency`` judge calls
run at once (the port is a blocking HTTP client, so they run on a small thread pool).

The judge gets ``rubric`` with ``{question}``, ``{reply}`` and ``{reference}`` (and
``{scale_min}``, ``{scale_max}``) filled in, and is asked to reason, then end with
``Score: N``. ``parse_score`` reads the judge's verdict: the last ``Score: N``,
``Rating: N``, ``N/10`` or ``N out of 10`` in its text. A reply with no score, or one outside
the scale, is counted in ``unparsed`` and left out of the mean; it never fails the
evaluation. A failing judge endpoint does: its error (which names the endpoint and the
status) is raised, not scored as zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field, NonNegativeFloat, PositiveInt, field_validator, model_validator

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.eval.base import (
    DatasetEvalConfig,
    EvalEnv,
    EvalResult,
    EvalTarget,
    EvaluatorBase,
    messages_text,
    metric_mean,
    register_evaluator,
)
from tinkex_cookbook.eval.evaluators._data import load_rows
from tinkex_cookbook.eval.metrics import example_seed
from tinkex_cookbook.ports.llm import ChatMessage, Completion, LLMClient
from tinkex_cookbook.train.renderers import Message, get_text_content, validate_conversation
from tinkex_cookbook.train.replies import parse_reply, sampling_params

DEFAULT_RUBRIC = """\
You are an impartial judge. Rate the quality of an AI assistant's reply to the user below: \
how helpful, correct, relevant and clear it is. If a reference answer is given, use it as a \
guide to what a good reply contains; a good reply need not match it word for word.

[Question]
{question}

[Reference answer]
{reference}

[Assistant's reply]
{reply}

First explain your reasoning in a few sentences. Then end with a final line rating the reply \
from {scale_min} (worst) to {scale_max} (best), in exactly this form:
Score: <number>"""
"""The rubric used when a task gives none: reasoning first, then ``Score: N`` on the last line."""

NO_REFERENCE = "(none given)"
"""What ``{reference}`` becomes for a row that has no reference answer."""

PLACEHOLDERS = ("question", "reply", "reference", "scale_min", "scale_max")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


class LlmJudgeConfig(DatasetEvalConfig):
    rubric: str = Field(DEFAULT_RUBRIC, min_length=1,
                        description="the judge's prompt: {question}, {reply}, {reference}, {scale_min} and "
                                    "{scale_max} are filled in; it should ask for a final 'Score: N' line")
    scale_min: int = Field(1, description="the lowest score the judge may give")
    scale_max: int = Field(10, description="the highest score the judge may give")
    judge_model: str | None = Field(None, min_length=1,
                                    description="model name sent to the judge endpoint (default: the adapter's)")
    judge_max_tokens: PositiveInt = Field(512, description="longest judge answer, in tokens (reasoning and score)")
    judge_temperature: NonNegativeFloat = Field(0.0, description="the judge's sampling temperature")
    concurrency: PositiveInt = Field(4, description="judge calls in flight at once")
    max_tokens: PositiveInt = Field(256, description="longest reply of the evaluated model, in tokens")
    temperature: NonNegativeFloat = Field(0.0, description="the evaluated model's temperature (0: greedy)")
    question_field: str | None = Field(
        None, min_length=1,
        description="the row's prompt text (default: its 'messages', else a 'prompt' or 'question' string)")
    reference_field: str = Field("reference", min_length=1,
                                 description="the row's reference answer, when it has one")
    system_prompt: str | None = Field(None, description="a system message before each prompt to the evaluated model")

    @field_validator("rubric")
    @classmethod
    def _asks_about_the_reply(cls, rubric: str) -> str:
        if "{reply}" not in rubric:
            raise ValueError("the rubric never shows the judge the reply: put {reply} in it (and {question}, "
                             "{reference} where they belong)")
        return rubric

    @model_validator(mode="after")
    def _scale(self) -> LlmJudgeConfig:
        if self.scale_min >= self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})")
        return self


def fill_rubric(rubric: str, values: dict[str, str]) -> str:
    """``rubric`` with each ``{placeholder}`` replaced in one pass: a reply that contains ``{reference}``
    stays as written, and other braces (JSON examples in a rubric) are left alone."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], rubric)


_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)(?![0-9A-Za-z_]|\.[0-9])"
_LABELLED = re.compile(r"\b(?:score|rating)\b[*_ \t]*(?:\([^()\n]{0,30}\)[*_ \t]*)?[:=][*_ \t]*\[{0,2}[ \t]*"
                       + _NUMBER, re.IGNORECASE)


def _out_of(scale_max: int) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9A-Za-z_.])" + r"([0-9]+(?:\.[0-9]+)?)[ \t]*(?:/|\bout of\b)[ \t]*"
                      + re.escape(str(scale_max)) + r"(?![0-9])", re.IGNORECASE)


def find_score(text: str, scale_max: int = 10) -> float | None:
    """The judge's last stated score, in or out of range: the number of the last ``Score: N``,
    ``Rating: N`` (``**Score:** 7``, ``Rating: [[7]]``), ``N/scale_max`` or ``N out of scale_max``."""
    matches = [*_LABELLED.finditer(text), *_out_of(scale_max).finditer(text)]
    if not matches:
        return None
    last = max(matches, key=lambda m: (m.start(1), m.end(1)))
    return float(last.group(1))


@dataclass(frozen=True)
class Verdict:
    """A judge's score (``None`` when it gave none usable) and, then, why."""

    score: float | None
    problem: str | None = None


def parse_score(text: str, scale_min: int = 1, scale_max: int = 10) -> Verdict:
    """The judge's last stated score if it is on the scale; never raises, whatever the text."""
    found = find_score(text, scale_max)
    if found is None:
        return Verdict(None, "no score found")
    if not scale_min <= found <= scale_max:
        return Verdict(None, f"score {found:g} is outside the scale {scale_min}..{scale_max}")
    return Verdict(found)


@dataclass(frozen=True)
class JudgePrompt:
    index: int
    messages: list[Message]
    question: str
    reference: str | None


@register_evaluator
class LlmJudgeEvaluator(EvaluatorBase[LlmJudgeConfig]):
    name: ClassVar[str] = "llm_judge"
    Config: ClassVar[type[BaseModel]] = LlmJudgeConfig

    def _prompt(self, index: int, row: dict[str, Any]) -> JudgePrompt:
        cfg = self.config
        given = row.get(cfg.reference_field)
        reference = None if given is None else given if isinstance(given, str) else str(given)
        text_fields = (cfg.question_field,) if cfg.question_field else ("prompt", "question")
        text = next((row[f] for f in text_fields if isinstance(row.get(f), str) and row[f]), None)
        if cfg.question_field is None and isinstance(row.get("messages"), list):
            conversation: list[Message] = [dict(m) for m in validate_conversation(row, index)]
            if conversation[-1]["role"] == "assistant" and len(conversation) > 1:
                reference = reference if reference is not None else get_text_content(conversation[-1])
                conversation = conversation[:-1]
        elif text is not None:
            conversation = [{"role": "user", "content": text}]
        else:
            wanted = repr(cfg.question_field) if cfg.question_field else "'messages', or a 'prompt' or 'question' string"
            raise DatasetError(f"row {index} of {cfg.dataset!r} ({cfg.split}): expected {wanted}; found keys "
                               f"{sorted(row)}. Fix: name the prompt field with question_field=")
        question = get_text_content(conversation[0]) if len(conversation) == 1 else messages_text([*conversation])
        if cfg.system_prompt:
            conversation = [{"role": "system", "content": cfg.system_prompt}, *conversation]
        return JudgePrompt(index, conversation, question, reference)

    def judge_messages(self, prompt: JudgePrompt, reply: str) -> list[ChatMessage]:
        """What the judge is sent about one reply: the rubric, filled in, as one user message."""
        cfg = self.config
        values = {"question": prompt.question, "reply": reply,
                  "reference": prompt.reference if prompt.reference is not None else NO_REFERENCE,
                  "scale_min": str(cfg.scale_min), "scale_max": str(cfg.scale_max)}
        return [{"role": "user", "content": fill_rubric(cfg.rubric, values)}]

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        prompts = [self._prompt(index, row) for index, row in load_rows(cfg, env)]
        judge = env.llm_client  # read (and its adapter built) before any sampling: a missing key fails fast
        renderer = target.renderer
        with env.task(f"{self.name} {target.label}", len(prompts)) as progress:
            samples = [target.sampler.sample(
                renderer.build_generation_prompt(p.messages), 1,
                sampling_params(renderer, cfg.max_tokens, cfg.temperature, example_seed(env.seed, cfg.dataset, p.index)))
                for p in prompts]
            pool = ThreadPoolExecutor(max_workers=min(cfg.concurrency, len(prompts)), thread_name_prefix="llm-judge")
            try:
                judged: list[tuple[JudgePrompt, str, Future[Completion]]] = []
                for prompt, sample in zip(prompts, samples, strict=True):
                    reply = parse_reply(renderer, sample.result().sequences[0].tokens)
                    judged.append((prompt, reply, pool.submit(self._ask, judge, self.judge_messages(prompt, reply))))
                records = []
                for prompt, reply, verdict in judged:
                    records.append(self._record(prompt, reply, self._answer(prompt, verdict)))
                    progress.advance()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return EvalResult(self._metrics(records), records,
                          {"judge_model": cfg.judge_model, "scale": [cfg.scale_min, cfg.scale_max]})

    def _ask(self, judge: LLMClient, messages: Sequence[ChatMessage]) -> Completion:
        cfg = self.config
        return judge.complete(messages, model=cfg.judge_model, max_tokens=cfg.judge_max_tokens,
                              temperature=cfg.judge_temperature)

    def _answer(self, prompt: JudgePrompt, future: Future[Completion]) -> Completion:
        try:
            return future.result()
        except Exception as exc:
            exc.add_note(f"while the {self.name} evaluator asked the judge (the llm_client port) to rate row "
                         f"{prompt.index} of {self.config.dataset!r}")
            raise

    def _record(self, prompt: JudgePrompt, reply: str, completion: Completion) -> dict[str, Any]:
        cfg = self.config
        text = completion.text or ""
        verdict = parse_score(text, cfg.scale_min, cfg.scale_max)
        record: dict[str, Any] = {"index": prompt.index, "prompt": prompt.question, "reference": prompt.reference,
                                  "reply": reply, "score": verdict.score, "reasoning": text}
        if verdict.problem is not None:
            cut = " (the judge's answer was cut at judge_max_tokens)" if completion.finish_reason == "length" else ""
            record["problem"] = verdict.problem + cut
        return record

    def _metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        cfg = self.config
        scores = [float(r["score"]) for r in records if r["score"] is not None]
        mean = metric_mean(scores)
        return {"score": mean, "score_normalized": (mean - cfg.scale_min) / (cfg.scale_max - cfg.scale_min),
                "unparsed": float(len(records) - len(scores)), "examples": float(len(records))}
