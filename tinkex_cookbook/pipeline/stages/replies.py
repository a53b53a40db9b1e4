"""Before and after: held-out NLL of the base model and of the trained one, and their replies side by side.

``evaluate_base`` runs before the first step: the held-out NLL (the adapter starts as the
identity, so this is the base model's) and greedy replies of the base model to a few
held-out prompts, kept in the run folder's ``summary.json`` so a resumed run still has them.
``evaluate_final`` runs after the last step: the same NLL and the same prompts on the final
weights, ``samples.jsonl`` with both replies per prompt, and a ``train.summary`` event.
Both NLLs are also ``train.eval`` rows (step 0, and the last step's), so they bound the run's
loss curve.
"""

from __future__ import annotations

import json
from typing import Any

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.jsonio import parse
from tinkex_cookbook.pipeline.context import Context
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.pipeline.stages.common import RENDERER, TRAINER
from tinkex_cookbook.pipeline.stages.supervised import (
    IN_FLIGHT,
    ROW_FORMATS,
    TEST_DATUMS,
    TEST_INDICES,
    TEST_ROWS,
    TEST_SOURCES,
    evaluate,
    held_out_nll,
)
from tinkex_cookbook.ports import BlobStore, SamplingClient, TrainingService
from tinkex_cookbook.recipes.sl_basic import SlBasicConfig
from tinkex_cookbook.run_folder import SAMPLES, SUMMARY
from tinkex_cookbook.train.formats import chat_row
from tinkex_cookbook.train.replies import Prompt, held_out_prompt, replies, sampling_params

READS = (TRAINER, RENDERER, TEST_ROWS, TEST_INDICES, TEST_DATUMS, ROW_FORMATS)
"""What both stages read: the held-out rows (for prompts) and datums (for the NLL)."""


def _prompts(ctx: Context[SlBasicConfig]) -> list[tuple[int, Prompt]]:
    """Up to ``sample_prompts`` held-out rows with an assistant reply, by dataset index."""
    chosen: list[tuple[int, Prompt]] = []
    rows, indices, formats = ctx.need(TEST_ROWS), ctx.need(TEST_INDICES), ctx.need(ROW_FORMATS)
    sources = ctx.get(TEST_SOURCES) or [ctx.config.dataset] * len(rows)
    for row, index, source in zip(rows, indices, sources, strict=True):
        if len(chosen) >= ctx.config.sample_prompts:
            break
        chat = chat_row(row, formats[source], index)  # None: plain text has no prompt to answer
        prompt = held_out_prompt(chat, index) if chat is not None else None
        if prompt is not None:
            chosen.append((index, prompt))
    return chosen


def _replies(ctx: Context[SlBasicConfig], sampler: SamplingClient, prompts: list[tuple[int, Prompt]], label: str) -> list[str]:
    if not prompts:
        return []
    renderer = ctx.need(RENDERER)
    params = sampling_params(renderer, ctx.config.sample_max_tokens)
    with ctx.task(f"sample {label} replies", len(prompts)) as task:
        texts = replies(sampler, renderer, [p for _, p in prompts], params)
        task.advance(len(prompts))
    return texts


def _read_summary(blob_store: BlobStore, key: str) -> dict[str, Any]:
    """What an earlier attempt of the run measured; a damaged file is named, not a traceback."""
    if not blob_store.exists(key):
        return {}
    summary = parse(blob_store.read(key), blob_store.uri(key), ConfigError)
    if not isinstance(summary, dict):
        raise ConfigError(f"{blob_store.uri(key)} holds a JSON {type(summary).__name__}, not an object. Fix: delete "
                          "it (the run then reports no base model replies), or pick a new log_path")
    return summary


@stage("evaluate_base", reads=READS, optional=(IN_FLIGHT, TEST_SOURCES))
def evaluate_base(ctx: Context[SlBasicConfig], blob_store: BlobStore, training_client: TrainingService) -> None:
    """The base model's held-out NLL and replies, measured by every attempt that starts at step 0; a run
    resumed from a checkpoint reads them back (they were written before its first checkpoint)."""
    key = ctx.artifact_key(SUMMARY)
    if ctx.state["step"] > 0:
        ctx.state["summary"] = _read_summary(blob_store, key)
        return
    prompts = _prompts(ctx)
    evaluate(ctx)
    nll = ctx.state.get("last_eval", {}).get("test_mean_nll")
    sampler = training_client.create_sampling_client(base_model=ctx.config.model_name)
    summary = {"base": {"step": 0, "test_mean_nll": nll, "replies": _replies(ctx, sampler, prompts, "base")}}
    blob_store.write(key, json.dumps(summary, indent=2).encode())
    ctx.state["summary"] = summary


@stage("evaluate_final", reads=READS, optional=(IN_FLIGHT, TEST_SOURCES))
def evaluate_final(ctx: Context[SlBasicConfig], blob_store: BlobStore) -> None:
    """The final weights' held-out NLL and replies beside the base model's (``samples.jsonl``).

    It runs before ``save_final`` records the final checkpoint, so once the record exists its
    files are whole and a resumed finished run only reads them back. Its NLL is the one
    ``evaluate_at_end`` wrote as the last step's metrics row; a run resumed after that row was
    recorded measures it again without writing the row twice.
    """
    key = ctx.artifact_key(SUMMARY)
    if "final_checkpoint" in ctx.state:
        ctx.state["summary"] = _read_summary(blob_store, key)
        return
    prompts = _prompts(ctx)
    last = ctx.state.get("last_eval", {})
    nll = last["test_mean_nll"] if last.get("step") == ctx.state["step"] else held_out_nll(ctx)
    sampler = ctx.need(TRAINER).save_weights_and_get_sampling_client("final")
    final = _replies(ctx, sampler, prompts, "final")
    summary = {**(ctx.state.get("summary") or {}),
               "final": {"step": ctx.state["step"], "test_mean_nll": nll, "replies": final}}
    _write_samples(ctx, blob_store, prompts, summary)
    blob_store.write(key, json.dumps(summary, indent=2).encode())
    ctx.state["summary"] = summary
    base = summary.get("base", {}).get("test_mean_nll")
    if base is not None and nll is not None:
        ctx.emit("train.summary", step=ctx.state["step"], base_test_mean_nll=base, final_test_mean_nll=nll)


def _write_samples(
    ctx: Context[object], blob_store: BlobStore, prompts: list[tuple[int, Prompt]], summary: dict[str, Any]
) -> None:
    base = summary.get("base", {}).get("replies") or [None] * len(prompts)
    final = summary["final"]["replies"]
    lines = [
        json.dumps({"index": index, "messages": prompt.messages, "reference": prompt.reference,
                    "base": before, "final": after})
        for (index, prompt), before, after in zip(prompts, base, final, strict=False)
    ]
    blob_store.write(ctx.artifact_key(SAMPLES), "".join(line + "\n" for line in lines).encode())
