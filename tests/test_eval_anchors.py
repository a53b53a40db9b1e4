"""Evaluation anchors: our numbers are the ones plain ``transformers`` gives, and queued prompts share passes.

The NLL anchor runs the ``nll`` evaluator (``chitchat_nll``) on the local backend, then computes
the same by hand: ``AutoModelForCausalLM`` on the same weights in float32, the conversations
rendered with the renderer's ``build_supervised_example`` (tokens and 0/1 weights), one forward
pass each, ``log_softmax``, the target tokens gathered, the weighted mean over loss tokens. The
log-softmax of the float32 logits is taken in float64: torch's float32 one over SmolLM2's 49k
vocabulary is itself about 2e-5 per token off (ours is within 1e-6), which would eat the margin. The
tokenization is shared (renderer tests pin it); what is anchored is the model and NLL arithmetic:
the decoder, the chunked log-softmax of ``token_logprobs``, the shift from tokens to targets, the
weighting. tiny-llama3 runs in the default suite; SmolLM2-135M-Instruct (the packaged GGUF) is
marked ``long``, as the other real-model tests are.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tinkex_cookbook import Runtime
from tinkex_cookbook.adapters.training.local_sampling import LocalTorchSamplingClient
from tinkex_cookbook.eval import EvalEnv, EvalResult, EvalTarget, resolve_tasks, run_tasks
from tinkex_cookbook.ports import Ports, SamplingClient
from tinkex_cookbook.train.renderers import Renderer, TrainOnWhat, get_renderer

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONVERSATIONS = 4
TOLERANCE = 1e-4


def our_nll(ports: Ports, sampler: SamplingClient, renderer: Renderer) -> EvalResult:
    tasks = resolve_tasks([{"task": "chitchat_nll", "limit": CONVERSATIONS}])
    [outcome] = run_tasks(tasks, [EvalTarget("base", sampler, renderer)], EvalEnv(ports))
    return outcome.result


def plain_nll(folder: Path, conversations: list[Any], renderer: Renderer) -> tuple[float, float]:
    """(per-token NLL, weighted token count), as a transformers user computes them."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    total = count = 0.0
    for messages in conversations:
        tokens, weights = renderer.build_supervised_example(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        ids = torch.tensor([tokens.to_ints()])
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
        logprobs = torch.log_softmax(logits.double(), -1).gather(1, ids[0, 1:, None]).squeeze(1)
        loss_weights = torch.tensor(weights[1:], dtype=torch.float64)
        total += float(-(logprobs * loss_weights).sum())
        count += float(loss_weights.sum())
    return total / count, count


def chitchat(ports: Ports) -> list[Any]:
    rows = ports.dataset_store.load_dataset("chitchat", "test").to_list()[:CONVERSATIONS]
    return [row["messages"] for row in rows]


def check_anchor(ports: Ports, sampler: SamplingClient, renderer: Renderer, folder: Path) -> None:
    ours = our_nll(ports, sampler, renderer).metrics
    plain, tokens = plain_nll(folder, chitchat(ports), renderer)
    assert ours["examples"] == CONVERSATIONS and ours["tokens"] == tokens
    assert abs(ours["nll"] - plain) <= TOLERANCE, (ours["nll"], plain)


@pytest.fixture
def tiny() -> Iterator[tuple[Ports, LocalTorchSamplingClient, Renderer]]:
    with Runtime.open("local", {"blob_store": "noop"}) as ports:
        sampler = ports.training_client.create_sampling_client(base_model="tiny-llama3")
        assert isinstance(sampler, LocalTorchSamplingClient)
        yield ports, sampler, get_renderer("llama3", sampler.get_tokenizer())


def test_nll_of_tiny_llama3_equals_a_plain_transformers_forward(
    tiny: tuple[Ports, LocalTorchSamplingClient, Renderer], tmp_path: Path,
) -> None:
    ports, sampler, renderer = tiny
    sampler.model.save_pretrained(tmp_path)  # the weights the backend built, loaded back by transformers alone
    check_anchor(ports, sampler, renderer, tmp_path)


@pytest.mark.long
@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs gguf: pip install -e '.[local]'")
def test_nll_of_smollm2_equals_a_plain_transformers_forward(tmp_path: Path) -> None:
    cache = tmp_path / "models-cache"
    training = {"adapter": "local_torch", "models_cache": str(cache), "threads": 2}
    with Runtime.open("local", {"blob_store": "noop", "training_client": training}) as ports:
        sampler = ports.training_client.create_sampling_client(base_model=SMOLLM2)
        renderer = get_renderer("chatml", sampler.get_tokenizer())
        check_anchor(ports, sampler, renderer, cache / "HuggingFaceTB--SmolLM2-135M-Instruct")


# --- batching ------------------------------------------------------------------------------------


def test_generation_prompts_share_forward_passes_and_batches_change_no_reply(
    tiny: tuple[Ports, LocalTorchSamplingClient, Renderer],
) -> None:
    """The generation evaluator submits every prompt before awaiting one; the local backend decodes them
    as one batch (one forward pass per token for all of them, not one per prompt and token). A smaller
    batch budget cuts the same queue into several batches, each within the budget, and changes no
    greedy reply."""
    ports, sampler, renderer = tiny
    prompts, new_tokens = 8, 6
    task = {"name": "chitchat_replies", "evaluator": "generation", "dataset": "chitchat", "limit": prompts,
            "max_tokens": new_tokens}
    passes: list[tuple[int, int]] = []
    model: Any = sampler.model
    hook = model.base_model.register_forward_hook(
        lambda module, args, kwargs, out: passes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)

    def replies() -> list[list[str]]:
        passes.clear()
        [outcome] = run_tasks(resolve_tasks([task]), [EvalTarget("base", sampler, renderer)], EvalEnv(ports))
        assert outcome.result.metrics["examples"] == prompts
        return [record["replies"] for record in outcome.result.records]

    try:
        together = replies()
        assert passes[0][0] == prompts  # one prefill of every prompt
        assert len(passes) <= new_tokens < prompts * new_tokens
        budget = sampler.batch_tokens = 3 * (passes[0][1] + new_tokens)  # three of the longest prompts
        assert replies() == together
    finally:
        hook.remove()
    prefills = [(rows, length) for rows, length in passes if length > 1]
    assert sum(rows for rows, _ in prefills) == prompts and len(prefills) >= 2
    assert all(rows * (length + new_tokens) <= budget for rows, length in prefills)
    assert len(passes) <= len(prefills) * new_tokens
