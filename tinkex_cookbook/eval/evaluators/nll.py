"""``nll``: the mean negative log-likelihood of held-out conversations' trained tokens.

Each conversation is rendered as supervised fine-tuning renders it (the same chat template
and ``train_on_what``), and the sampling client's ``compute_logprobs`` scores every token
given the ones before it. All conversations are submitted before any result is awaited.
``nll`` is per token (the sum over all weighted tokens over their count), the number a
plain ``transformers`` forward pass gives; ``example_nll`` is the mean of per-conversation
means, which is what a training run's ``test_mean_nll`` reports with ``loss_reduction=mean``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.eval.base import (
    DatasetEvalConfig,
    EvalEnv,
    EvalResult,
    EvalTarget,
    EvaluatorBase,
    messages_text,
    register_evaluator,
)
from tinkex_cookbook.eval.evaluators._data import load_rows
from tinkex_cookbook.ports import Datum, ModelInput
from tinkex_cookbook.train.datum import conversations_to_datums
from tinkex_cookbook.train.renderers import TrainOnWhat


class NllConfig(DatasetEvalConfig):
    train_on_what: TrainOnWhat = Field(TrainOnWhat.ALL_ASSISTANT_MESSAGES, description="which tokens are scored")
    max_length: int | None = Field(None, ge=2, description="truncate conversations to this many tokens")


def datum_logprob_sums(logprobs: list[float | None], datum: Datum) -> tuple[float, float]:
    """(sum of -logprob * weight, sum of weights) for one datum, from ``compute_logprobs`` of its whole
    sequence (input tokens then the last target): token ``i + 1`` is target ``i``."""
    weights = datum.loss_fn_inputs["weights"].data.astype(np.float64)
    scored = np.asarray([0.0 if lp is None else lp for lp in logprobs[1:]], dtype=np.float64)
    return float(-(scored * weights).sum()), float(weights.sum())


def full_sequence(datum: Datum) -> ModelInput:
    targets = datum.loss_fn_inputs["target_tokens"].data
    return ModelInput.from_ints([*datum.model_input.to_ints(), int(targets[-1])])


@register_evaluator
class NllEvaluator(EvaluatorBase[NllConfig]):
    name: ClassVar[str] = "nll"
    Config: ClassVar[type[BaseModel]] = NllConfig

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        rows = load_rows(cfg, env)
        datums = conversations_to_datums([row for _, row in rows], target.renderer, cfg.max_length,
                                         TrainOnWhat(cfg.train_on_what), "none", indices=[i for i, _ in rows])
        with env.task(f"nll {target.label}", len(datums)) as progress:
            futures = [target.sampler.compute_logprobs(full_sequence(d)) for d in datums]
            sums = []
            for future, datum in zip(futures, datums, strict=True):
                sums.append(datum_logprob_sums(list(future.result()), datum))
                progress.advance()
        total, count = sum(s for s, _ in sums), sum(w for _, w in sums)
        if count <= 0:
            raise DatasetError(f"dataset {cfg.dataset!r} ({cfg.split}): no token carries weight to score")
        records = [{"index": index, "conversation": messages_text(row.get("messages") or []),
                    "nll": s / w if w else None, "tokens": w}
                   for (index, row), (s, w) in zip(rows, sums, strict=True)]
        per_example = [s / w for s, w in sums if w > 0]
        nll = total / count
        return EvalResult({"nll": nll, "example_nll": sum(per_example) / len(per_example),
                           "perplexity": math.exp(min(nll, 50.0)), "tokens": count, "examples": len(datums)},
                          records)
