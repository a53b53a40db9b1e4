"""The local backend against what a user would otherwise write, side by side in one run, on SmolLM2.

Training: a step of ours (``forward_backward`` + ``optim_step``) against the same step written
with transformers + peft + AdamW: same model (float32), same batch of chitchat conversations
rendered with ``chatml``, LoRA rank 8 with alpha 32 on the same modules (every decoder linear and
the head), same threads; with ``--bf16`` also ours in bfloat16 (LoRA and Adam stay float32; fast
only where the CPU has bf16 instructions, slower than float32 elsewhere). Sampling: ours
against ``model.generate``, greedy with the KV cache, the same number of new tokens (no early
stop), identical tokens checked; once for one prompt x 8 samples, once for 8 different prompts.

Each measurement runs in a child process of its own (peak RSS is per process, and torch work on
a second thread slows a whole process), children alternate round by round so machine noise hits
every side alike; the figures are medians. Prints seconds, tokens/s, peak RSS and the ratios.

    python -m bench.local_backend [--rounds 3] [--steps 3] [--threads 2] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
RANK, ALPHA, LR = 8, 32.0, 5e-4
TRAIN_CHILDREN = ("train:ours", "train:peft")
SAMPLE_CHILDREN = ("sample:ours", "sample:generate")


# --- data --------------------------------------------------------------------------------------


def chitchat_batch(size: int) -> list[dict[str, Any]]:
    """``size`` shipped chitchat conversations as datums (tokens, targets, weights), rendered with chatml."""
    from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore
    from tinkex_cookbook.adapters.training.model_files import ModelSources, resolve_tokenizer
    from tinkex_cookbook.train.datum import conversations_to_datums
    from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer

    rows = LocalDatasetStore(Path(".")).load_dataset("chitchat", "train").to_list()[:size]
    renderer = get_renderer("chatml", resolve_tokenizer(MODEL, ModelSources.of()))
    datums = conversations_to_datums(rows, renderer, 256, TrainOnWhat.ALL_ASSISTANT_MESSAGES, "mean")
    return [{"tokens": d.model_input.to_ints(), "targets": d.loss_fn_inputs["target_tokens"].to_numpy().tolist(),
             "weights": d.loss_fn_inputs["weights"].to_numpy().tolist()} for d in datums]


def prompts(count: int) -> list[list[int]]:
    from tinkex_cookbook.adapters.training.model_files import ModelSources, resolve_tokenizer
    from tinkex_cookbook.train.renderers import get_renderer

    renderer = get_renderer("chatml", resolve_tokenizer(MODEL, ModelSources.of()))
    questions = ["What is the capital of France?", "Name three colors.", "How do I boil an egg?",
                 "Tell me a joke about cats.", "What is 12 times 7?", "Write a haiku about rain.",
                 "Why is the sky blue?", "Give me a tip for sleeping well."]
    return [renderer.build_generation_prompt([{"role": "user", "content": q}]).to_ints() for q in questions[:count]]


# --- children ----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_ours(batch: list[dict[str, Any]], steps: int, threads: int, dtype: str) -> list[float]:
    from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService, LocalTrainerOptions
    from tinkex_cookbook.ports import AdamParams, Datum, ModelInput, TensorData

    data = [Datum(ModelInput.from_ints(d["tokens"]), {
        "target_tokens": TensorData.from_list(d["targets"], "int64"),
        "weights": TensorData.from_list(d["weights"], "float32")}) for d in batch]
    options = LocalTrainerOptions(dtype=dtype, lora_alpha=ALPHA)
    with LocalTorchTrainingService(MemoryBlobStore(), threads=threads, options=options) as service:
        client = service.create_lora_training_client(MODEL, rank=RANK)
        times = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            client.forward_backward(data, "cross_entropy").result()
            client.optim_step(AdamParams(learning_rate=LR)).result()
            times.append(time.perf_counter() - started)
    return times[1:]


def hf_model() -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from tinkex_cookbook.adapters.training.model_files import ModelSources, ensure_model_folder

    folder = ensure_model_folder(MODEL, ModelSources.of())
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def train_peft(batch: list[dict[str, Any]], steps: int, threads: int) -> list[float]:
    """The step as a transformers + peft user writes it: padded batch, full logits, weighted NLL, AdamW."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(threads)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    model = get_peft_model(hf_model(), LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=(0.9, 0.95),
                                  eps=1e-8, weight_decay=0.0)
    longest = max(len(d["tokens"]) for d in batch)
    pad = lambda key, fill: torch.tensor([d[key] + [fill] * (longest - len(d[key])) for d in batch])  # noqa: E731
    ids, labels, weights = pad("tokens", 0), pad("targets", 0), pad("weights", 0.0)
    mask = torch.tensor([[1] * len(d["tokens"]) + [0] * (longest - len(d["tokens"])) for d in batch])
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits
        logprobs = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None]).squeeze(-1)
        (-(weights * logprobs).sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times[1:]


def sample_ours(prompt_ids: list[list[int]], samples: int, new_tokens: int, threads: int) -> tuple[float, list]:
    from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
    from tinkex_cookbook.ports import ModelInput, SamplingParams

    params = SamplingParams(max_tokens=new_tokens, temperature=0.0)
    with LocalTorchTrainingService(MemoryBlobStore(), threads=threads) as service:
        sampler = service.create_sampling_client(base_model=MODEL)
        sampler.sample(ModelInput.from_ints(prompt_ids[0]), 1, SamplingParams(max_tokens=2, temperature=0)).result()
        started = time.perf_counter()
        futures = [sampler.sample(ModelInput.from_ints(p), samples, params) for p in prompt_ids]
        tokens = [[list(s.tokens) for s in f.result().sequences] for f in futures]
        return time.perf_counter() - started, tokens


def sample_generate(prompt_ids: list[list[int]], samples: int, new_tokens: int, threads: int) -> tuple[float, list]:
    import torch

    torch.set_num_threads(threads)
    model = hf_model().eval()
    longest = max(len(p) for p in prompt_ids)
    rows = [p for p in prompt_ids for _ in range(samples)]
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in rows])
    options = {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "pad_token_id": 0,
               "eos_token_id": None}
    with torch.inference_mode():
        model.generate(input_ids=ids[:1, -4:], attention_mask=mask[:1, -4:], **{**options, "max_new_tokens": 2,
                                                                                 "min_new_tokens": 2})
        started = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, **options)
        seconds = time.perf_counter() - started
    new = out[:, longest:].tolist()
    return seconds, [new[i * samples:(i + 1) * samples] for i in range(len(prompt_ids))]


def child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = json.loads(Path(args.data).read_text())
    if kind.startswith("train:"):
        if kind == "train:peft":
            times = train_peft(spec["batch"], args.steps, args.threads)
        else:
            times = train_ours(spec["batch"], args.steps, args.threads, "bfloat16" if "bf16" in kind else "float32")
        return {"seconds": statistics.median(times), "rss_mb": peak_rss_mb()}
    case = spec["cases"][args.case]
    run = sample_ours if kind == "sample:ours" else sample_generate
    seconds, tokens = run(case["prompts"], case["samples"], args.new_tokens, args.threads)
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), "tokens": tokens}


# --- parent ------------------------------------------------------------------------------------


def run_child(kind: str, args: argparse.Namespace, data: Path, case: str = "") -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.local_backend", "--child", kind, "--data", str(data),
               "--steps", str(args.steps), "--threads", str(args.threads), "--new-tokens", str(args.new_tokens),
               "--case", case or "one"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, data: Path) -> tuple[dict[str, list[dict]], dict[str, dict[str, list[dict]]]]:
    kinds = (*TRAIN_CHILDREN, "train:ours-bf16") if args.bf16 else TRAIN_CHILDREN
    train: dict[str, list[dict]] = {kind: [] for kind in kinds}
    sample: dict[str, dict[str, list[dict]]] = {case: {kind: [] for kind in SAMPLE_CHILDREN} for case in ("one", "many")}
    for _ in range(args.rounds):
        for kind in kinds:
            train[kind].append(run_child(kind, args, data))
        for case in ("one", "many"):
            for kind in SAMPLE_CHILDREN:
                sample[case][kind].append(run_child(kind, args, data, case))
    return train, sample


def report(args: argparse.Namespace, batch: list[dict], train: dict, sample: dict) -> None:
    real = sum(len(d["tokens"]) for d in batch)
    padded = len(batch) * max(len(d["tokens"]) for d in batch)
    print(f"{MODEL}, {args.threads} threads, LoRA rank {RANK} alpha {ALPHA:g} on every linear and the head")
    print(f"training step: {len(batch)} chitchat conversations, {real} real tokens ({padded} padded), "
          f"median of {args.steps} steps per child x {args.rounds} rounds")
    peft = {k: statistics.median(r[k] for r in train["train:peft"]) for k in ("seconds", "rss_mb")}
    for kind in train:
        seconds = statistics.median(r["seconds"] for r in train[kind])
        rss = statistics.median(r["rss_mb"] for r in train[kind])
        print(f"  {kind:<16} {seconds:6.2f} s/step  peak RSS {rss:6.0f} MB   time {seconds / peft['seconds']:.2f}x "
              f"peft's, memory {rss / peft['rss_mb']:.2f}x")
    for case, label in (("one", "1 prompt x 8 samples"), ("many", "8 prompts x 1 sample")):
        results = sample[case]
        same = all(r["tokens"] == g["tokens"] for r, g in zip(results["sample:ours"], results["sample:generate"]))
        rates = {k: statistics.median(8 * args.new_tokens / r["seconds"] for r in v) for k, v in results.items()}
        print(f"sampling, {label}, greedy, {args.new_tokens} new tokens each (identical tokens: {same}):")
        for kind, rate in rates.items():
            print(f"  {kind:<16} {rate:7.1f} tokens/s   {rate / rates['sample:generate']:.2f}x generate's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--bf16", action="store_true",
                        help="also ours in bfloat16 (fast only on CPUs with bf16 instructions, e.g. AVX512-BF16/AMX)")
    parser.add_argument("--child", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--case", default="one")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    batch = chitchat_batch(args.batch)
    many = prompts(8)
    cases = {"one": {"prompts": many[:1], "samples": 8}, "many": {"prompts": many, "samples": 1}}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.json"
        data.write_text(json.dumps({"batch": batch, "cases": cases}))
        train, sample = measure(args, data)
    report(args, batch, train, sample)


if __name__ == "__main__":
    main()
