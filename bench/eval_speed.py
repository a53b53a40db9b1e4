"""Evaluation speed: our ``generation`` evaluator on the local backend against a transformers loop, on SmolLM2.

The task: the shipped ``math_word_problems`` test questions, answered greedily in at most
``--new-tokens`` tokens and graded ``numeric``. Ours is the ``generation`` evaluator on the
local backend (every prompt submitted before any is awaited, so they decode as batches). Against
it, what a user would otherwise write with transformers on the same weights (float32): the
model's own chat template (``apply_chat_template``), ``model.generate`` greedy with the same
``max_new_tokens`` stopping at ``<|im_end|>``, one prompt at a time; and, for honesty, the same
prompts in one left-padded ``generate`` call. Replies are graded with the same grader.

Each side runs in a child process of its own (torch work on a second thread slows a whole
process), children alternate round by round so machine noise hits every side alike; figures are
medians. Prints examples/s of each side, the ratios, the accuracy, whether the prompts are the
same tokens, and how many replies agree with the one-at-a-time loop's.

    python -m bench.eval_speed [--rounds 3] [--prompts 16] [--new-tokens 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATASET, GRADER = "math_word_problems", "numeric"
CHILDREN = ("ours", "generate:one", "generate:batched")


def questions(count: int) -> list[dict[str, str]]:
    from pathlib import Path

    from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore

    return LocalDatasetStore(Path(".")).load_dataset(DATASET, "test").to_list()[:count]


def ours(count: int, new_tokens: int, threads: int) -> dict[str, Any]:
    """The ``generation`` evaluator on the local backend; its prompts as the chatml renderer writes them."""
    from tinkex_cookbook import Runtime
    from tinkex_cookbook.eval import EvalEnv, EvalTarget, resolve_tasks, run_tasks
    from tinkex_cookbook.train.renderers import get_renderer

    task = {"name": "word_problems", "evaluator": "generation", "dataset": DATASET, "grader": GRADER,
            "max_tokens": new_tokens, "limit": count}
    training = {"adapter": "local_torch", "threads": threads}
    with Runtime.open("local", {"blob_store": "noop", "training_client": training}) as ports:
        sampler = ports.training_client.create_sampling_client(base_model=MODEL)
        renderer = get_renderer("chatml", sampler.get_tokenizer())
        warm = {**task, "name": "warm-up", "limit": 1, "max_tokens": 2}
        run_tasks(resolve_tasks([warm]), [EvalTarget("base", sampler, renderer)], EvalEnv(ports))
        started = time.perf_counter()
        [outcome] = run_tasks(resolve_tasks([task]), [EvalTarget("base", sampler, renderer)], EvalEnv(ports))
        seconds = time.perf_counter() - started
        prompts = [renderer.build_generation_prompt([{"role": "user", "content": row["question"]}]).to_ints()
                   for row in questions(count)]
    return {"seconds": seconds, "replies": [r["replies"][0] for r in outcome.result.records],
            "accuracy": outcome.result.metrics["accuracy"], "prompts": prompts}


def generate(count: int, new_tokens: int, threads: int, batched: bool) -> dict[str, Any]:
    """transformers alone: chat template, greedy ``generate`` to ``<|im_end|>``, one prompt at a time or all
    in one left-padded batch; the reply decoded without special tokens, graded with the same grader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinkex_cookbook.adapters.training.model_files import ModelSources, ensure_model_folder
    from tinkex_cookbook.train.rl.graders import get_grader

    torch.set_num_threads(threads)
    folder = ensure_model_folder(MODEL, ModelSources.of())
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = questions(count)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": row["question"]}], tokenize=False,
                                           add_generation_prompt=True) for row in rows]
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    options = {"do_sample": False, "max_new_tokens": new_tokens, "eos_token_id": stop,
               "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop}

    def run(batch: list[str]) -> list[str]:
        inputs = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**inputs, **options)
        return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    with torch.inference_mode():
        model.generate(**tokenizer(texts[:1], return_tensors="pt", add_special_tokens=False),
                       **{**options, "max_new_tokens": 2})
        started = time.perf_counter()
        replies = run(texts) if batched else [reply for text in texts for reply in run([text])]
        seconds = time.perf_counter() - started
    grader = get_grader(GRADER)
    correct = [bool(grader.grade(reply.strip(), row["answer"])) for reply, row in zip(replies, rows, strict=True)]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return {"seconds": seconds, "replies": replies, "accuracy": sum(correct) / len(correct), "prompts": prompts}


def child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    if kind == "ours":
        return ours(args.prompts, args.new_tokens, args.threads)
    return generate(args.prompts, args.new_tokens, args.threads, batched=kind == "generate:batched")


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.eval_speed", "--child", kind, "--prompts", str(args.prompts),
               "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(replies: list[str], reference: list[str]) -> str:
    same = sum(a.strip() == b.strip() for a, b in zip(replies, reference, strict=True))
    return f"{same}/{len(reference)}"


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    rates = {kind: statistics.median(args.prompts / r["seconds"] for r in runs) for kind, runs in results.items()}
    first = {kind: runs[0] for kind, runs in results.items()}
    reference = first["generate:one"]
    threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    print(f"{MODEL}, {threads}, float32; {args.prompts} {DATASET} test questions, greedy, at most "
          f"{args.new_tokens} new tokens, graded {GRADER}; median of {args.rounds} rounds")
    print(f"prompt tokens identical (chatml renderer vs the model's chat template): "
          f"{first['ours']['prompts'] == reference['prompts']}")
    for kind in CHILDREN:
        print(f"  {kind:<17} {rates[kind]:6.2f} examples/s   {rates[kind] / rates['generate:one']:5.2f}x one-at-a-time"
              f"   {rates[kind] / rates['generate:batched']:5.2f}x batched   accuracy {first[kind]['accuracy']:.3f}"
              f"   replies equal to one-at-a-time: {agreement(first[kind]['replies'], reference['replies'])}")
    stable = all(r["replies"] == first["ours"]["replies"] for r in results["ours"])
    print(f"our replies the same in every round: {stable}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CHILDREN}
    for _ in range(args.rounds):
        for kind in CHILDREN:
            results[kind].append(run_child(kind, args))
    report(args, results)


if __name__ == "__main__":
    main()
