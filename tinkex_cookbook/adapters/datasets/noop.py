"""Noop dataset store: synthetic rows for any dataset name, in every shape the recipes read.

Each row is a chat conversation (``messages``, for SL and distillation prompts),
a question with an integer answer (``question``/``answer``, for RL problems) and
a preference pair (``prompt``/``chosen``/``rejected``, for DPO), so every recipe
runs on the ``test`` manifest with its defaults. Rows vary in length and content
with their index and the dataset name, so losses differ from batch to batch and
tests can see which rows were used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tinkex_cookbook.adapters.datasets.memory import ListDataset, parse_limit

TOPICS = ("tides", "bread", "comets", "chess", "maple syrup", "lighthouses", "bees", "glaciers")


def synthetic_conversation(name: str, split: str, index: int) -> dict[str, Any]:
    digest = hashlib.sha256(f"{name}|{split}|{index}".encode()).digest()
    topic = TOPICS[digest[0] % len(TOPICS)]
    detail = " ".join(["Here is one more detail."] * (digest[1] % 4))
    question = f"Question {index}: what should I know about {topic}?"
    answer = f"A short note on {topic}. {detail}".strip()
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        "id": f"{name}-{split}-{index}",
        "question": f"What is {index} + {digest[2]}?", "answer": str(index + digest[2]),
        "prompt": question, "chosen": answer, "rejected": f"I know nothing about {topic}.",
    }


@dataclass
class SyntheticChatDatasetStore:
    rows: int = 96

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> ListDataset:
        limit = parse_limit(name, options)
        count = self.rows if limit is None else min(limit, self.rows)
        return ListDataset([synthetic_conversation(name, split, i) for i in range(count)])
