"""Build the shipped chat sample from the `chitchat-dataset` PyPI package (MIT, BYU PCC lab).

    pip download --no-deps chitchat-dataset==0.9.0 && python docs/scripts/make_chitchat_sample.py WHEEL

Takes the first conversations (in the file's order) that have 4 to 10 turns, joins each turn's
messages with newlines, and writes them as NoRobots-style rows: the first speaker is the user,
the other the assistant. 300 rows go to train.jsonl and 40 to test.jsonl.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tinkex_cookbook" / "data" / "chitchat"
TRAIN, TEST = 300, 40


def rows(wheel: str):
    with zipfile.ZipFile(wheel) as archive:
        data = json.loads(archive.read("chitchat_dataset/dataset.json"))
    for key in sorted(data):
        turns = data[key]["messages"]
        if not 4 <= len(turns) <= 10:
            continue
        first = turns[0][0]["sender"]
        messages = [
            {"role": "user" if turn[0]["sender"] == first else "assistant",
             "content": "\n".join(m["text"].strip() for m in turn)}
            for turn in turns
        ]
        if messages[-1]["role"] == "user":
            messages = messages[:-1]
        if all(m["content"] for m in messages) and len(messages) >= 2:
            yield {"prompt_id": key, "category": "Chat", "messages": messages}


def main(wheel: str) -> None:
    picked = []
    for row in rows(wheel):
        picked.append(row)
        if len(picked) == TRAIN + TEST:
            break
    OUT.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", picked[:TRAIN]), ("test", picked[TRAIN:])):
        with open(OUT / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)


if __name__ == "__main__":
    main(sys.argv[1])
