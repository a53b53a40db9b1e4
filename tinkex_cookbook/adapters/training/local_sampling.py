"""Sampling for the local backend: temperature, top-k/top-p, stop rules, seeded generators."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.local_models import (
    decoder_states,
    output_head,
    token_logprobs,
)
from tinkex_cookbook.ports import (
    ModelInput,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    ThreadFuture,
)
from tinkex_cookbook.train.tokenizers import HFTokenizer

DEFAULT_MAX_TOKENS = 128


@dataclass(frozen=True)
class StopRule:
    """Stop at any of ``token_ids``, or once the decoded tail contains any of ``strings``."""

    token_ids: frozenset[int]
    strings: tuple[str, ...]

    @classmethod
    def from_param(cls, stop: str | Sequence[str] | Sequence[int] | None) -> StopRule:
        items = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return cls(frozenset(int(s) for s in items if not isinstance(s, str)),
                   tuple(s for s in items if isinstance(s, str) and s))

    def hit(self, tokens: Sequence[int], tokenizer: HFTokenizer) -> bool:
        if tokens[-1] in self.token_ids:
            return True
        if not self.strings:
            return False
        window = 4 * max(len(s) for s in self.strings) + 1
        tail = tokenizer.decode(list(tokens[-window:]))
        return any(s in tail for s in self.strings)


def _top_k_top_p(scores: Tensor, top_k: int, top_p: float) -> Tensor:
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return scores


def pick_tokens(logits: Tensor, params: SamplingParams, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Next token per row (greedy at temperature 0) and its logprob under the model itself.

    The logprob ignores temperature, top_k and top_p, so it matches
    ``compute_logprobs`` and the trainer's logprobs for the same tokens.
    """
    logprobs = torch.log_softmax(logits.float(), -1)
    if params.temperature <= 0:
        chosen = logprobs.argmax(-1)
    else:
        scores = _top_k_top_p(logits.float() / params.temperature, params.top_k, params.top_p)
        chosen = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
    return chosen, logprobs.gather(1, chosen[:, None]).squeeze(1)


class LocalTorchSamplingClient:
    """Samples from fixed weights on the service's sampling worker; calls queue up in order."""

    def __init__(
        self, model: nn.Module, tokenizer: HFTokenizer, executor: ThreadPoolExecutor, seed: int
    ) -> None:
        self._model = model
        self._head = output_head(model)
        self._tokenizer = tokenizer
        self._executor = executor
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def model(self) -> nn.Module:
        return self._model

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> ThreadFuture[SampleResponse]:
        tokens = prompt.to_ints()
        if not tokens or num_samples < 1:
            raise ValueError(f"sample needs a non-empty prompt and num_samples >= 1 (got {num_samples})")
        return ThreadFuture(self._executor.submit(self._sample, tokens, num_samples, sampling_params))

    def compute_logprobs(self, prompt: ModelInput) -> ThreadFuture[list[float | None]]:
        return ThreadFuture(self._executor.submit(self._compute_logprobs, prompt.to_ints()))

    @torch.no_grad()
    def _compute_logprobs(self, tokens: list[int]) -> list[float | None]:
        if not tokens:
            return []
        ids = torch.tensor([tokens])
        hidden = decoder_states(self._model, ids)[0][0, :-1]
        logprobs, _ = token_logprobs(self._head, hidden, ids[0, 1:])
        return [None, *logprobs.tolist()]

    @torch.no_grad()
    def _sample(self, prompt: list[int], count: int, params: SamplingParams) -> SampleResponse:
        generator = self._generator if params.seed is None else torch.Generator().manual_seed(params.seed)
        stop = StopRule.from_param(params.stop)
        tokens: list[list[int]] = [[] for _ in range(count)]
        logprobs: list[list[float]] = [[] for _ in range(count)]
        stopped = [False] * count
        hidden, cache = decoder_states(self._model, torch.tensor([prompt] * count), use_cache=True)
        for _ in range(DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens):
            chosen, chosen_logprobs = pick_tokens(self._head(hidden[:, -1]), params, generator)
            for row in (r for r in range(count) if not stopped[r]):
                tokens[row].append(int(chosen[row]))
                logprobs[row].append(float(chosen_logprobs[row]))
                stopped[row] = stop.hit(tokens[row], self._tokenizer)
            if all(stopped):
                break
            hidden, cache = decoder_states(self._model, chosen[:, None], cache)
        return SampleResponse(tuple(
            SampledSequence("stop" if done else "length", tuple(t), tuple(lp))
            for t, lp, done in zip(tokens, logprobs, stopped, strict=True)
        ))
