"""Regenerate the renderer goldens from the reference cookbook (tinker-cookbook 0.6.1).

Run in an environment that has the reference next to this project (see
docs/renderers.md for the install), from the repository root:

    python -m tests.goldens.make_renderer_goldens [renderer ...]

For every conversation in conversations.json and every TrainOnWhat mode it
records the reference's tokens and weights (or that it refused), the
generation prompt before the last assistant turn, the stop sequences, and how
the reference parses that turn's tokens, whole and cut short.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from tests.goldens.golden_tokenizers import GOLDEN_DATE, RENDERER_TOKENIZER, golden_tokenizer

HERE = Path(__file__).parent
MODES = [
    "last_assistant_message", "last_assistant_turn", "all_assistant_messages", "all_messages",
    "all_tokens", "all_user_and_system_messages", "customized",
]


def reference_tokenizer(renderer_name: str) -> PreTrainedTokenizerFast:
    ours = golden_tokenizer(renderer_name)
    return PreTrainedTokenizerFast(
        tokenizer_object=ours._backend, bos_token=ours.bos_token, eos_token=ours.eos_token,
        clean_up_tokenization_spaces=False,
    )


def to_reference(message: dict) -> dict:
    from tinker_cookbook.renderers import ToolCall

    converted = dict(message)
    if "tool_calls" in converted:
        converted["tool_calls"] = [ToolCall.model_validate(c) for c in converted["tool_calls"]]
    return converted


def prompt_tokens(renderer, history: list[dict], prefill: str | None = None) -> list[int] | dict:
    try:
        return renderer.build_generation_prompt([to_reference(m) for m in history], prefill=prefill).to_ints()
    except Exception as exc:  # noqa: BLE001 - the golden records that the reference refused
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def with_trainable(messages: list[dict]) -> list[dict]:
    return [dict(m, trainable=(i % 2 == 1 or m["role"] == "assistant")) for i, m in enumerate(messages)]


def example(renderer, messages: list[dict], mode: str) -> dict:
    from tinker_cookbook.renderers import TrainOnWhat

    source = with_trainable(messages) if mode == "customized" else messages
    try:
        model_input, weights = renderer.build_supervised_example(
            [to_reference(m) for m in source], train_on_what=TrainOnWhat(mode)
        )
    except Exception as exc:  # noqa: BLE001 - the golden records that the reference refused
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"tokens": model_input.to_ints(), "weights": "".join(str(int(w)) for w in weights.tolist())}


def parse_case(renderer, messages: list[dict]) -> dict | None:
    from tinker_cookbook.renderers import TrainOnWhat
    from tinker_cookbook.renderers.base import message_to_jsonable

    if messages[-1]["role"] != "assistant":
        return None
    prompt = prompt_tokens(renderer, messages[:-1])
    if isinstance(prompt, dict):
        return None
    try:
        full, _ = renderer.build_supervised_example(
            [to_reference(m) for m in messages], train_on_what=TrainOnWhat.LAST_ASSISTANT_MESSAGE
        )
    except Exception:  # noqa: BLE001
        return None
    tokens = full.to_ints()
    if tokens[: len(prompt)] != prompt:
        return None
    response = tokens[len(prompt) :]
    cases = {}
    for label, sample in (("whole", response), ("cut", response[:-1])):
        try:
            message, termination = renderer.parse_response(list(sample))
            cases[label] = {"tokens": sample, "message": message_to_jsonable(message), "termination": str(termination)}
        except Exception as exc:  # noqa: BLE001
            cases[label] = {"tokens": sample, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return cases


def reference_renderer(name: str):
    from tinker_cookbook.renderers import get_renderer
    from tinker_cookbook.renderers.gpt_oss import GptOssRenderer

    tokenizer = reference_tokenizer(name)
    if name == "gpt_oss_medium_reasoning":
        return GptOssRenderer(tokenizer, use_system_prompt=True, reasoning_effort="medium", current_date=GOLDEN_DATE)
    return get_renderer(name, tokenizer, model_name=RENDERER_TOKENIZER[name])


def golden_for(name: str, conversations: list[list[dict]]) -> dict:
    renderer = reference_renderer(name)
    cases = []
    for messages in conversations:
        history = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        cases.append({
            "messages": messages,
            "examples": {mode: example(renderer, messages, mode) for mode in MODES},
            "prompt": prompt_tokens(renderer, history),
            "prompt_prefill": prompt_tokens(renderer, history, prefill="Sure,"),
            "parse": parse_case(renderer, messages),
        })
    return {
        "renderer": name,
        "tokenizer": RENDERER_TOKENIZER[name],
        "reference": "tinker-cookbook 0.6.1",
        "stop_sequences": renderer.get_stop_sequences(),
        "cases": cases,
    }


def main(names: list[str]) -> None:
    conversations = json.loads((HERE / "conversations.json").read_text())
    out = HERE / "renderers"
    out.mkdir(exist_ok=True)
    for name in names or list(RENDERER_TOKENIZER):
        golden = golden_for(name, conversations)
        (out / f"{name}.json").write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")))
        refused = sum("error" in e for c in golden["cases"] for e in c["examples"].values())
        print(f"{name}: {len(golden['cases'])} conversations, {refused} refused examples")


if __name__ == "__main__":
    main(sys.argv[1:])
