"""Step time of the local_torch backend against a plain torch loop on the same model, LoRA and batch.

A step is ``forward_backward`` + ``optim_step``, awaited, with cross-entropy over
every token. The plain loop is what one would write by hand: decoder, lm_head,
``gather - logsumexp``, backward, AdamW. A second plain loop swaps in the
backend's chunked logprob head, so the ratio against it is the backend's own
overhead (futures, worker thread, batch building). Rounds alternate between
all three so machine noise hits them alike; prints median seconds per step.

    python -m bench.local_backend [--model tiny-llama3] [--batch 8] [--tokens 120] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.local_models import decoder_states, output_head, token_logprobs
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.adapters.training.lora import apply_lora
from tinkex_cookbook.ports import AdamParams, Datum, ModelInput, TensorData

ADAM = AdamParams(learning_rate=1e-4)


def make_batch(batch: int, tokens: int, vocab: int, seed: int = 0) -> list[Datum]:
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(batch):
        ids = rng.integers(0, vocab, tokens + 1)
        data.append(Datum(ModelInput.from_ints(ids[:-1]), {
            "target_tokens": TensorData.from_numpy(ids[1:]),
            "weights": TensorData.from_numpy(np.ones(tokens, np.float32)),
        }))
    return data


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
               targets: torch.Tensor, weights: torch.Tensor) -> None:
    hidden = decoder_states(model, ids)[0].flatten(0, 1)
    logits = model.get_output_embeddings()(hidden)
    logprobs = logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, 1)
    (-(weights * logprobs).sum()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def plain_chunked_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
                       targets: torch.Tensor, weights: torch.Tensor) -> None:
    hidden = decoder_states(model, ids)[0].flatten(0, 1)
    _, grad = token_logprobs(output_head(model), hidden.detach(), targets, lambda lp, span: -weights[span])
    hidden.backward(grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def plain_loop(service: LocalTorchTrainingService, name: str, data: list[Datum], step) -> Callable[[], None]:
    """A closure running ``step`` on a fresh copy of the same base model and LoRA as the backend's."""
    model, _ = service.base_model(name, service.seed)
    optimizer = torch.optim.AdamW(
        apply_lora(model, 32, service.seed), lr=ADAM.learning_rate,
        betas=(ADAM.beta1, ADAM.beta2), eps=ADAM.eps, weight_decay=ADAM.weight_decay,
    )
    ids = torch.tensor([d.model_input.to_ints() for d in data])
    targets = torch.tensor(np.concatenate([d.loss_fn_inputs["target_tokens"].data for d in data]))
    weights = torch.ones(len(targets))
    return lambda: step(model, optimizer, ids, targets, weights)


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama3")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    with LocalTorchTrainingService(MemoryBlobStore(), threads=args.threads) as service:
        client = service.create_lora_training_client(args.model, rank=32)
        data = make_batch(args.batch, args.tokens, client.get_tokenizer().vocab_size)

        def ours() -> None:
            client.forward_backward(data, "cross_entropy").result()
            client.optim_step(ADAM).result()

        loops = {"local_torch": ours, "plain torch": plain_loop(service, args.model, data, plain_step),
                 "plain + chunked head": plain_loop(service, args.model, data, plain_chunked_step)}
        times = {name: [] for name in loops}
        for round_ in range(args.rounds + 1):
            for name, step in loops.items():
                elapsed = timed(step)
                if round_:
                    times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.model}, batch {args.batch}x{args.tokens}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} steps (forward_backward + optim_step):")
    for name, median in medians.items():
        print(f"  {name:<22} {median:.3f} s/step   ours / this = {medians['local_torch'] / median:.2f}x")


if __name__ == "__main__":
    main()
