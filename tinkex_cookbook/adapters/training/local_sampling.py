"""Sampling for the local backend: the sampling client, temperature, top-k/top-p, stop rules, seeded generators.

The batched decoding itself is ``local_generation``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import torch
from torch import Tensor

from tinkex_cookbook.adapters.training.local_generation import (
    SAMPLE_BATCH_TOKENS,
    Request,
    generate,
    plan_batches,
)
from tinkex_cookbook.adapters.training.local_models import (
    decoder_states,
    output_head,
    token_logprobs,
)
from tinkex_cookbook.ports import (
    ModelInput,
    SampleResponse,
    SamplingParams,
    ThreadFuture,
)
from tinkex_cookbook.train.tokenizers import HFTokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService

T = TypeVar("T")


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


class _Deferred(Generic[T]):
    """A sampling future that hands its batch to the torch thread the first time anyone looks at it."""

    def __init__(self, future: Future[T], flush: Callable[[], None]) -> None:
        self._future = future
        self._flush = flush

    def result(self, timeout: float | None = None) -> T:
        self._flush()
        return self._future.result(timeout)

    def done(self) -> bool:
        self._flush()
        return self._future.done()


class LocalTorchSamplingClient:
    """Samples from fixed weights on the service's torch thread.

    ``sample`` queues its request; the queue goes to the torch thread the first time any of its
    futures is awaited (or polled), as batches of at most ``SAMPLE_BATCH_TOKENS`` cache tokens
    in call order (``plan_batches``). A caller that submits several prompts and then waits (an
    RL step, an evaluation's prompts) gets them decoded together, one forward pass per token for
    the whole batch, and which requests share a batch depends only on its calls, never on
    timing, so the same calls give the same samples. Greedy replies do not depend on the batch
    either, up to float rounding: padding is masked, and another batch shape changes only the
    order of float sums (on SmolLM2, logprobs within 3e-5 of each prompt decoded alone), which
    can flip a choice only between two tokens tied that closely.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: HFTokenizer, service: LocalTorchTrainingService, seed: int
    ) -> None:
        self._model = model
        self._head = output_head(model)
        self._tokenizer = tokenizer
        self._service = service
        self._device = service.device
        self._generator = torch.Generator().manual_seed(seed)
        self._queue: list[Request] = []
        self.batch_tokens = SAMPLE_BATCH_TOKENS
        """Cache tokens per batch (``plan_batches``)."""
        self._lock = threading.Lock()

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> _Deferred[SampleResponse]:
        tokens = prompt.to_ints()
        if not tokens or num_samples < 1:
            raise ValueError(f"sample needs a non-empty prompt and num_samples >= 1 (got {num_samples})")
        seed = sampling_params.seed
        generator = self._generator if seed is None else torch.Generator().manual_seed(seed)
        request = Request(tokens, num_samples, sampling_params, generator, StopRule.from_param(sampling_params.stop))
        with self._lock:
            self._queue.append(request)
        return _Deferred(request.future, self._flush)

    def _flush(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        for part in plan_batches(batch, self.batch_tokens):
            self._service.submit(self._run_batch, part)

    @torch.inference_mode()
    def _run_batch(self, batch: list[Request]) -> None:
        try:
            responses = generate(self._model, self._head, self._tokenizer, batch, self._device, pick_tokens)
        except BaseException as exc:  # every request of the batch learns why
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, response in zip(batch, responses, strict=True):
            request.future.set_result(response)

    def compute_logprobs(self, prompt: ModelInput) -> ThreadFuture[list[float | None]]:
        return ThreadFuture(self._service.submit(self._compute_logprobs, prompt.to_ints()))

    def get_tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @torch.no_grad()
    def _compute_logprobs(self, tokens: list[int]) -> list[float | None]:
        if not tokens:
            return []
        ids = torch.tensor([tokens], device=self._device)
        hidden = decoder_states(self._model, ids)[0][0, :-1]
        logprobs, _ = token_logprobs(self._head, hidden.float(), ids[0, 1:])
        return [None, *logprobs.tolist()]
