"""The transcript stage: a step's rows (``TRANSCRIPT``) into the run folder as ``transcripts/<step>.jsonl``.

A recipe's step stage puts the rows it kept (see ``train/transcripts.py``); this stage,
run every ``transcript_every`` steps after the step, writes them through the blob store
(one atomic put per step, named by the finished step, as ``metrics.jsonl`` counts it).
A resumed run writes a step again with the same rows.
"""

from __future__ import annotations

from typing import Any

from tinkex_cookbook.eval.report import records_jsonl
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import stage
from tinkex_cookbook.ports import BlobStore
from tinkex_cookbook.run_folder import TRANSCRIPTS

TRANSCRIPT: Key[list[dict[str, Any]]] = Key("transcript")
"""The rows a step kept for its transcript (empty when the recipe keeps none)."""


def transcript_key(step: int) -> str:
    return f"{TRANSCRIPTS}/{step:06d}.jsonl"


@stage("write_transcript", reads=(TRANSCRIPT,))
def write_transcript(ctx: Context[object], blob_store: BlobStore) -> None:
    rows = ctx.need(TRANSCRIPT)
    if rows:
        step = int(ctx.state["step"])
        blob_store.write(ctx.artifact_key(transcript_key(step)), records_jsonl({"step": step, **r} for r in rows))
