"""Batched decoding for the local backend: several sampling requests in one forward pass per token.

Each request's prompt is prefilled once (left-padded beside the others, with an attention
mask and positions, only when lengths differ) and its KV cache rows are then repeated for its
``num_samples``, so eight samples of one prompt cost one prefill. Every decode step runs one
token for every live row; a request whose rows have all stopped leaves the batch. Each request
keeps its own sampling parameters, stop rule and random generator, so what it samples depends
only on its own inputs and on which requests share its batch (a fixed set; see the client).
A queue of requests is cut into batches of at most ``SAMPLE_BATCH_TOKENS`` cache tokens
(``plan_batches``), so a thousand-prompt evaluation never holds a thousand KV caches at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tinkex_cookbook.adapters.training.local_models import decoder_states
from tinkex_cookbook.ports import SampledSequence, SampleResponse, SamplingParams
from tinkex_cookbook.train.tokenizers import HFTokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFAULT_MAX_TOKENS = 128

SAMPLE_BATCH_TOKENS = 16384
"""KV-cache tokens per sampling batch: rows (samples) x (longest prompt + longest reply budget). The bound
is for memory: 0.75 GB of cache on SmolLM2-135M (46 KB a token in float32), 1 GB on Llama-3.2-1B, where
the whole queue of a thousand-prompt evaluation would need tens of GB. Larger batches are faster per
token on CPU too (SmolLM2 on 2 cores: 64 rows decoded 1.4x the tokens/s of 16), hence a bound this high."""


@dataclass
class Request:
    """One ``sample`` call: what to continue, how many times, how, and where its answer goes."""

    prompt: list[int]
    count: int
    params: SamplingParams
    generator: torch.Generator
    stop: Any
    future: Future[SampleResponse] = field(default_factory=Future)

    @property
    def budget(self) -> int:
        return DEFAULT_MAX_TOKENS if self.params.max_tokens is None else self.params.max_tokens


@dataclass
class _Batch:
    """The live rows: their requests, the mask and next positions of a padded batch (``None`` unpadded)."""

    owners: list[int]
    cache: Any
    mask: Tensor | None
    positions: Tensor | None

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in ``rows`` (indices into the current batch) from the cache and the mask."""
        index = torch.tensor(rows, device=self.mask.device if self.mask is not None else None)
        self.cache.batch_select_indices(index.to(_cache_device(self.cache)))
        self.owners = [self.owners[r] for r in rows]
        if self.mask is not None and self.positions is not None:
            self.mask, self.positions = self.mask[index], self.positions[index]


def plan_batches(requests: Sequence[Request], budget: int) -> list[list[Request]]:
    """Consecutive runs of ``requests``, in call order, whose rows x (longest prompt + longest reply budget)
    stays within ``budget`` tokens; a request larger than the budget alone runs alone. Which requests
    share a batch depends only on the requests, never on timing."""
    batches: list[list[Request]] = []
    rows = prompt = reply = 0
    for request in requests:
        grown = (max(prompt, len(request.prompt)), max(reply, request.budget))
        if batches and (rows + request.count) * sum(grown) <= budget:
            batches[-1].append(request)
            rows += request.count
            prompt, reply = grown
        else:
            batches.append([request])
            rows, prompt, reply = request.count, len(request.prompt), request.budget
    return batches


def _cache_device(cache: Any) -> torch.device:
    layers = getattr(cache, "layers", None)
    keys = getattr(layers[0], "keys", None) if layers else None
    return keys.device if isinstance(keys, Tensor) else torch.device("cpu")


def _prefill(model: PreTrainedModel, requests: Sequence[Request], device: torch.device) -> tuple[Tensor, _Batch]:
    """Every prompt once, left-padded to the longest; the cache rows then repeated per sample."""
    longest = max(len(r.prompt) for r in requests)
    padded = any(len(r.prompt) != longest for r in requests)
    ids = torch.tensor([[0] * (longest - len(r.prompt)) + r.prompt for r in requests], device=device)
    mask = positions = None
    if padded:
        mask = torch.tensor([[0] * (longest - len(r.prompt)) + [1] * len(r.prompt) for r in requests], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden, cache = decoder_states(model, ids, use_cache=True, attention_mask=mask, position_ids=positions)
    owners = [i for i, r in enumerate(requests) for _ in range(r.count)]
    batch = _Batch(list(range(len(requests))), cache, mask, None if positions is None else positions[:, -1])
    if owners != batch.owners:
        batch.keep(owners)
    return hidden[torch.tensor(owners, device=hidden.device), -1], batch


def generate(
    model: PreTrainedModel, head: nn.Module, tokenizer: HFTokenizer, requests: Sequence[Request], device: torch.device,
    pick: Any,
) -> list[SampleResponse]:
    """Sample every request together; ``pick(logits, params, generator) -> (tokens, logprobs)`` chooses."""
    tokens: list[list[list[int]]] = [[[] for _ in range(r.count)] for r in requests]
    logprobs: list[list[list[float]]] = [[[] for _ in range(r.count)] for r in requests]
    stopped: list[list[bool]] = [[False] * r.count for r in requests]
    live = [i for i, r in enumerate(requests) if r.budget > 0]
    if live:
        _decode(model, head, tokenizer, [requests[i] for i in live], device, pick,
                [tokens[i] for i in live], [logprobs[i] for i in live], [stopped[i] for i in live])
    return [
        SampleResponse(tuple(SampledSequence("stop" if done else "length", tuple(t), tuple(lp))
                             for t, lp, done in zip(tokens[i], logprobs[i], stopped[i], strict=True)))
        for i in range(len(requests))
    ]


def _decode(
    model: PreTrainedModel, head: nn.Module, tokenizer: HFTokenizer, requests: Sequence[Request], device: torch.device,
    pick: Any, tokens: list[list[list[int]]], logprobs: list[list[list[float]]], stopped: list[list[bool]],
) -> None:
    last, batch = _prefill(model, requests, device)
    for step in range(max(r.budget for r in requests)):
        logits = head(last.float())
        chosen = torch.empty(len(batch.owners), dtype=torch.long)
        start = 0
        for owner in dict.fromkeys(batch.owners):
            request, rows = requests[owner], batch.owners.count(owner)
            picked, picked_logprobs = pick(logits[start : start + rows].cpu(), request.params, request.generator)
            chosen[start : start + rows] = picked
            _record(request, tokenizer, picked, picked_logprobs, tokens[owner], logprobs[owner], stopped[owner])
            start += rows
        done = {o for o in set(batch.owners) if all(stopped[o]) or step + 1 >= requests[o].budget}
        if len(done) == len(set(batch.owners)):
            return
        if done:
            keep = [j for j, owner in enumerate(batch.owners) if owner not in done]
            chosen = chosen[keep]
            batch.keep(keep)
        last = _step(model, batch, chosen.to(device))


def _record(
    request: Request, tokenizer: HFTokenizer, picked: Tensor, picked_logprobs: Tensor,
    tokens: list[list[int]], logprobs: list[list[float]], stopped: list[bool],
) -> None:
    for row in (r for r in range(request.count) if not stopped[r]):
        tokens[row].append(int(picked[row]))
        logprobs[row].append(float(picked_logprobs[row]))
        stopped[row] = request.stop.hit(tokens[row], tokenizer)


def _step(model: PreTrainedModel, batch: _Batch, chosen: Tensor) -> Tensor:
    """One token for every live row; a padded batch's mask grows by a column and its positions by one."""
    positions = None
    if batch.mask is not None and batch.positions is not None:
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(chosen), 1)], 1)
        batch.positions = batch.positions + 1
        positions = batch.positions[:, None]
    hidden, batch.cache = decoder_states(model, chosen[:, None], batch.cache, attention_mask=batch.mask,
                                         position_ids=positions)
    return hidden[:, -1]
