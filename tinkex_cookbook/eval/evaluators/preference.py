"""``preference``: on held-out pairs, how often the model finds the chosen reply likelier than the rejected.

Each side is scored as the sum of its reply tokens' logprobs given the prompt (both rendered
as DPO renders them), with ``compute_logprobs`` on the sampling client. ``accuracy`` counts
pairs whose chosen side scores higher; ``margin`` is the mean difference, per pair. A DPO
run's own ``dpo_evaluate`` measures the same against its frozen reference; this one needs
no reference, so it compares a base model and a checkpoint on the same footing.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

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
from tinkex_cookbook.eval.evaluators.nll import datum_logprob_sums, full_sequence
from tinkex_cookbook.train.datum import conversation_to_datum
from tinkex_cookbook.train.preference_data import parse_preference_row
from tinkex_cookbook.train.renderers import TrainOnWhat, get_text_content


class PreferenceConfig(DatasetEvalConfig):
    max_length: int | None = Field(1024, ge=2, description="truncate each side to this many tokens")


@register_evaluator
class PreferenceEvaluator(EvaluatorBase[PreferenceConfig]):
    name: ClassVar[str] = "preference"
    Config: ClassVar[type[BaseModel]] = PreferenceConfig

    def evaluate(self, target: EvalTarget, env: EvalEnv) -> EvalResult:
        cfg = self.config
        pairs = [(index, parse_preference_row(row, index)) for index, row in load_rows(cfg, env)]
        renderer, sampler = target.renderer, target.sampler
        with env.task(f"preference {target.label}", len(pairs)) as progress:
            submitted = []
            for index, pair in pairs:
                sides = [conversation_to_datum(conversation, renderer, cfg.max_length,
                                               TrainOnWhat.LAST_ASSISTANT_MESSAGE, "none")
                         for conversation in (pair.chosen_conversation, pair.rejected_conversation)]
                submitted.append((index, pair, sides, [sampler.compute_logprobs(full_sequence(d)) for d in sides]))
            records, wins, margins = [], [], []
            for index, pair, sides, futures in submitted:
                chosen, rejected = (-datum_logprob_sums(list(f.result()), d)[0] for f, d in zip(futures, sides,
                                                                                               strict=True))
                wins.append(chosen > rejected)
                margins.append(chosen - rejected)
                records.append({"index": index, "prompt": messages_text(list(pair.prompt)),
                                "chosen": get_text_content(pair.chosen[0]), "rejected": get_text_content(pair.rejected[0]),
                                "chosen_logprob": chosen, "rejected_logprob": rejected, "correct": chosen > rejected})
                progress.advance()
        return EvalResult({"accuracy": sum(wins) / len(wins), "margin": sum(margins) / len(margins),
                           "examples": float(len(records))}, records)
