"""Throughput of build_supervised_example: ours against tinker-cookbook's, side by side.

Needs the reference installed next to this project (see docs/renderers.md). Both
renderers get the same conversations and the same tokenizer file; rounds
alternate between them so machine noise hits both alike. Prints examples per
second for each and the ratio. The reference has no ``chatml``: it is measured
against what a transformers user writes instead, ``apply_chat_template`` on
SmolLM2's own tokenizer for the conversation and for its prompt.

    python -m bench.renderers [--rounds 7] [renderer ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.goldens.golden_tokenizers import golden_tokenizer
from tests.goldens.make_renderer_goldens import reference_renderer, to_reference
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer

CONVERSATIONS = Path(__file__).resolve().parents[1] / "tests" / "goldens" / "conversations.json"


def renderable(renderer, conversations: list[list[dict]], mode: str) -> list[list[dict]]:
    kept = []
    for messages in conversations:
        try:
            renderer.build_supervised_example(messages, TrainOnWhat(mode))
            kept.append(messages)
        except Exception:  # noqa: BLE001 - skip what the renderer refuses
            continue
    return kept


def time_round(build, conversations: list[list[dict]], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for messages in conversations:
            build(messages)
    return len(conversations) * repeat / (time.perf_counter() - started)


def chatml_pair(mode: str) -> tuple:
    """Ours over SmolLM2's tokenizer, and what a transformers user writes for the same example: the
    template applied to the conversation and to its prompt (``add_generation_prompt``), weight 1 on
    what the reply adds, as TRL's completion-only collators do (SmolLM2's template has no
    ``{% generation %}`` markers for ``return_assistant_tokens_mask``)."""
    from tests.goldens.smollm2 import convert

    with tempfile.TemporaryDirectory() as folder:
        smol = convert(Path(folder))
    ours = get_renderer("chatml", smol.tokenizer)
    template = smol.reference.apply_chat_template

    def theirs(messages: list[dict]) -> tuple[list[int], list[float]]:
        full = template(messages, tokenize=True, return_dict=False)
        prompt = template(messages[:-1], tokenize=True, return_dict=False, add_generation_prompt=True)
        return full, [0.0] * len(prompt) + [1.0] * (len(full) - len(prompt))

    return ours, theirs


def bench(name: str, rounds: int, repeat: int, mode: str) -> None:
    if name == "chatml":
        ours, theirs_fn = chatml_pair(mode)
        conversations = [c for c in renderable(ours, json.loads(CONVERSATIONS.read_text()), mode) if len(c) > 1]
        ref_conversations, reference = conversations, theirs_fn
    else:
        from tinker_cookbook.renderers import TrainOnWhat as RefMode

        ours = get_renderer(name, golden_tokenizer(name))
        theirs = reference_renderer(name)
        conversations = renderable(ours, json.loads(CONVERSATIONS.read_text()), mode)
        ref_conversations = [[to_reference(m) for m in c] for c in conversations]

        def reference(m: list[dict]) -> object:
            return theirs.build_supervised_example(m, train_on_what=RefMode(mode))

    ours_rates, ref_rates = [], []
    for _ in range(rounds):
        ours_rates.append(time_round(lambda m: ours.build_supervised_example(m, TrainOnWhat(mode)), conversations, repeat))
        ref_rates.append(time_round(reference, ref_conversations, repeat))
    ours_rate, ref_rate = statistics.median(ours_rates), statistics.median(ref_rates)
    print(f"{name:<24} ours {ours_rate:9.0f}/s   reference {ref_rate:9.0f}/s   ratio {ours_rate / ref_rate:5.2f}x"
          f"   ({len(conversations)} conversations, {mode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("renderers", nargs="*", default=["llama3", "role_colon", "qwen3", "deepseekv3", "chatml"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mode", default="last_assistant_message")
    args = parser.parse_args()
    for name in args.renderers:
        bench(name, args.rounds, args.repeat, args.mode)


if __name__ == "__main__":
    main()
