"""Preference rows for DPO (``tinkex_cookbook.train.preference_data``) and the shipped ``preference_pairs`` set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook.adapters.datasets.local import SHIPPED, LocalDatasetStore, shipped_names
from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.train.preference_data import PreferencePair, parse_preference_row, parse_preference_rows

ROOT = Path(__file__).resolve().parents[1]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def pair(prompt: list, chosen: list, rejected: list) -> PreferencePair:
    return PreferencePair(tuple(prompt), tuple(chosen), tuple(rejected))


# --- shapes -----------------------------------------------------------------------------------


def test_shape_1_strings() -> None:
    row = {"prompt": "What is 17 + 25?", "chosen": "17 + 25 = 42.", "rejected": "I don't know."}
    assert parse_preference_row(row, 0) == pair(
        [user("What is 17 + 25?")], [bot("17 + 25 = 42.")], [bot("I don't know.")]
    )


def test_shape_2_full_conversations_with_a_string_prompt() -> None:
    # HuggingFaceH4/ultrafeedback_binarized: the prompt string, then chosen/rejected repeat it
    row = {
        "prompt": "Name a prime.",
        "prompt_id": "abc123",
        "chosen": [user("Name a prime."), bot("7 is prime.")],
        "rejected": [user("Name a prime."), bot("9 is prime.")],
        "messages": [user("Name a prime."), bot("7 is prime.")],
        "score_chosen": 8.0,
        "score_rejected": 3.5,
    }
    assert parse_preference_row(row, 0) == pair([user("Name a prime.")], [bot("7 is prime.")], [bot("9 is prime.")])


def test_shape_2_with_a_message_prompt_and_mixed_full_and_continuation_sides() -> None:
    prompt = [system("Be brief."), user("Hi"), bot("Hello!"), user("Capital of Peru?")]
    row = {
        "prompt": prompt,
        "chosen": [*prompt, bot("Lima."), user("Thanks"), bot("You're welcome.")],
        "rejected": [bot("Cusco.")],
    }
    assert parse_preference_row(row, 0) == pair(
        prompt, [bot("Lima."), user("Thanks"), bot("You're welcome.")], [bot("Cusco.")]
    )


def test_shape_2_string_replies_with_a_message_prompt() -> None:
    row = {"prompt": [user("Hi")], "chosen": "Hello!", "rejected": "Go away."}
    assert parse_preference_row(row, 0) == pair([user("Hi")], [bot("Hello!")], [bot("Go away.")])


def test_a_side_that_starts_with_the_prompt_is_read_as_the_full_conversation() -> None:
    prompt = [bot("Welcome!"), user("Hi")]
    row = {"prompt": prompt, "chosen": [*prompt, bot("Hello.")], "rejected": [bot("Go away.")]}
    assert parse_preference_row(row, 0) == pair(prompt, [bot("Hello.")], [bot("Go away.")])


def test_shape_3_longest_common_prefix_is_the_prompt() -> None:
    shared = [system("Be kind."), user("Hi"), bot("Hello!"), user("Tell me a joke.")]
    row = {"chosen": [*shared, bot("Why did the chicken...")], "rejected": [*shared, bot("No."), user("Please"), bot("No.")]}
    assert parse_preference_row(row, 0) == pair(
        shared, [bot("Why did the chicken...")], [bot("No."), user("Please"), bot("No.")]
    )


def test_shape_4_hh_rlhf_text() -> None:
    row = {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.\n\nHuman:  And 3+3? \n\nAssistant: 6.",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.\n\nHuman:  And 3+3? \n\nAssistant: 7.",
    }
    assert parse_preference_row(row, 0) == pair(
        [user("What is 2+2?"), bot("It is 4."), user("And 3+3?")], [bot("6.")], [bot("7.")]
    )


def test_hh_text_only_splits_on_marker_lines() -> None:
    # the reference splits on "Human:" anywhere; here a mid-line "Human:" is content
    row = {
        "chosen": "\n\nHuman: Quote: 'Human: hi'\n\nAssistant: Done.",
        "rejected": "\n\nHuman: Quote: 'Human: hi'\n\nAssistant: No.",
    }
    parsed = parse_preference_row(row, 0)
    assert parsed.prompt == (user("Quote: 'Human: hi'"),)


def test_messages_are_copied_and_extra_message_keys_kept() -> None:
    prompt = [{"role": "user", "content": "Hi", "name": "ann"}]
    row = {"prompt": prompt, "chosen": [bot("a")], "rejected": [bot("b")]}
    parsed = parse_preference_row(row, 0)
    prompt[0]["content"] = "changed"
    assert parsed.prompt == ({"role": "user", "content": "Hi", "name": "ann"},)


def test_conversations_and_rows() -> None:
    rows = [
        {"prompt": "a?", "chosen": "yes", "rejected": "no"},
        {"chosen": [user("b?"), bot("yes")], "rejected": [user("b?"), bot("no")]},
    ]
    first, second = parse_preference_rows(rows)
    assert first.chosen_conversation == [user("a?"), bot("yes")]
    assert second.rejected_conversation == [user("b?"), bot("no")]
    assert parse_preference_rows([]) == []


def test_the_pair_itself_enforces_its_shape() -> None:
    with pytest.raises(DatasetError, match="'prompt': ends with an assistant"):
        PreferencePair((bot("x"),), (bot("a"),), (bot("b"),))
    with pytest.raises(DatasetError, match="'chosen': must start with an assistant"):
        PreferencePair((user("x"),), (user("a"),), (bot("b"),))
    with pytest.raises(DatasetError, match="identical"):
        PreferencePair((user("x"),), (bot("a"),), (bot("a"),))
    assert PreferencePair([user("x")], [bot("a")], [bot("b")]).prompt == (user("x"),)  # lists become tuples


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "q", "rejected": "no"}, "chosen", ["is missing", "Fix:"]),
        ({"prompt": "q", "chosen": "yes"}, "rejected", ["is missing", "'chosen'"]),
        ({"chosen": [user("q"), bot("a")]}, "rejected", ["is missing"]),
        ({"prompt": "q", "chosen": 5, "rejected": "no"}, "chosen", ["string or a list", "int 5"]),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", ["string or a list", "int 3"]),
        ({"prompt": "q", "chosen": [{"role": "assistant", "content": 7}], "rejected": "no"},
         "chosen[0].content", ["must be a string", "int 7"]),
        ({"prompt": [{"role": "user", "content": [{"type": "text", "text": "q"}]}], "chosen": "a", "rejected": "b"},
         "prompt[0].content", ["must be a string", "list"]),
        ({"chosen": [user("q"), {"content": "a"}], "rejected": [user("q"), bot("b")]}, "chosen[1].role",
         ["non-empty string"]),
        ({"chosen": [user("q"), "a"], "rejected": [user("q"), bot("b")]}, "chosen[1]", ["message object"]),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "prompt", ["is empty"]),
        ({"prompt": [], "chosen": "a", "rejected": "b"}, "prompt", ["is empty"]),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", ["is empty"]),
        ({"chosen": [], "rejected": [user("q"), bot("b")]}, "chosen", ["is empty"]),
        ({"prompt": "q", "chosen": "same", "rejected": "same"}, "rejected", ["identical to 'chosen'", "drop the row"]),
        ({"chosen": [user("q"), bot("a")], "rejected": [user("q"), bot("a")]}, "rejected", ["identical"]),
        ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: a"}, "rejected",
         ["identical"]),
        ({"prompt": [user("q")], "chosen": [user("other"), bot("a")], "rejected": [bot("b")]}, "chosen",
         ["must start with an assistant message", "'user'", "full conversation"]),
        ({"prompt": [user("q")], "chosen": [bot("a")], "rejected": [system("b"), bot("c")]}, "rejected",
         ["must start with an assistant message", "'system'"]),
        ({"prompt": [user("q"), bot("a")], "chosen": "x", "rejected": "y"}, "prompt",
         ["ends with an assistant message", "'assistant'"]),
        # shape 3 where the conversations only part after the assistant reply: the prefix ends with it
        ({"chosen": [user("q"), bot("a"), user("x"), bot("1")], "rejected": [user("q"), bot("a"), user("y"), bot("2")]},
         "prompt", ["ends with an assistant message"]),
        ({"chosen": [user("q"), bot("a")], "rejected": [user("r"), bot("b")]}, "chosen",
         ["shares no leading message", "'q'", "'r'", "same prompt"]),
        ({"chosen": [user("q"), bot("a")], "rejected": [user("q"), bot("a"), user("more"), bot("b")]}, "chosen",
         ["no reply after the shared prompt"]),
        ({"prompt": [user("q")], "chosen": [user("q")], "rejected": "b"}, "chosen", ["no reply after the prompt"]),
        ({"chosen": "a plain answer", "rejected": "another"}, "chosen", ["not HH-RLHF text", "'prompt'"]),
        ({"chosen": "Intro\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}, "chosen",
         ["not HH-RLHF text"]),
        ({"chosen": {"role": "user"}, "rejected": "x"}, "chosen", ["list of messages or HH-RLHF text", "dict"]),
    ],
)
def test_malformed_rows_name_the_index_and_field(row: dict[str, Any], field: str, words: list[str]) -> None:
    with pytest.raises(DatasetError) as caught:
        parse_preference_row(row, 41)
    message = str(caught.value)
    assert message.startswith(f"row 41, field {field!r}: "), message
    assert "Fix:" in message
    for word in words:
        assert word in message, (word, message)


def test_non_object_rows_and_the_index_in_bulk_parsing() -> None:
    with pytest.raises(DatasetError, match=r"^row 2: expected a JSON object.*got list"):
        parse_preference_row(["chosen", "rejected"], 2)  # type: ignore[arg-type]
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}] * 3 + [{"prompt": "q", "chosen": "a"}]
    with pytest.raises(DatasetError, match=r"^row 3, field 'rejected': is missing"):
        parse_preference_rows(rows)
    assert issubclass(DatasetError, ValueError)


# --- properties -------------------------------------------------------------------------------

text = st.text(alphabet="abc xyz.?!", min_size=0, max_size=8)
any_role = st.sampled_from(["system", "user", "assistant", "tool"])
message = st.builds(lambda role, content: {"role": role, "content": content}, any_role, text)
prompts = st.tuples(st.lists(message, max_size=3), st.sampled_from(["system", "user", "tool"]), text).map(
    lambda t: [*t[0], {"role": t[1], "content": t[2]}]
)
continuations = st.tuples(text, st.lists(message, max_size=3)).map(lambda t: [bot(t[0]), *t[1]])


@settings(max_examples=150, deadline=None)
@given(prompts, continuations, continuations)
def test_shape_3_rows_split_back_into_their_parts(prompt: list, chosen: list, rejected: list) -> None:
    if chosen[0] == rejected[0]:
        rejected = [bot(rejected[0]["content"] + "!"), *rejected[1:]]
    row = {"chosen": prompt + chosen, "rejected": prompt + rejected}
    assert parse_preference_row(row, 0) == pair(prompt, chosen, rejected)
    # and the same pair given with an explicit prompt, full or continuation-only sides
    assert parse_preference_row({"prompt": prompt, **row}, 0) == pair(prompt, chosen, rejected)
    if prompt not in (chosen[: len(prompt)], rejected[: len(prompt)]):  # else read as a full conversation
        assert parse_preference_row({"prompt": prompt, "chosen": chosen, "rejected": rejected}, 0) == pair(
            prompt, chosen, rejected
        )


hh_text = st.text(alphabet="abc xyz.?:\n", max_size=12).map(str.strip)


def hh(messages: list[dict[str, str]]) -> str:
    return "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(hh_text, hh_text), max_size=3), hh_text, hh_text, hh_text)
def test_hh_text_round_trips_from_messages(turns: list, question: str, good: str, bad: str) -> None:
    if good == bad:
        bad += "!"
    prompt = [m for q, a in turns for m in (user(q), bot(a))] + [user(question)]
    row = {"chosen": hh(prompt + [bot(good)]), "rejected": hh(prompt + [bot(bad)])}
    assert parse_preference_row(row, 0) == pair(prompt, [bot(good)], [bot(bad)])


# --- the shipped preference_pairs set ---------------------------------------------------------


def load_generator():
    path = ROOT / "docs" / "scripts" / "make_preference_pairs.py"
    spec = importlib.util.spec_from_file_location("make_preference_pairs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preference_pairs_load_from_any_root_and_parse() -> None:
    store = LocalDatasetStore(Path("/nonexistent"))
    train = list(store.load_dataset("preference_pairs", "train"))
    test = list(store.load_dataset("preference_pairs", "test"))
    assert (len(train), len(test)) == (200, 40)
    assert "preference_pairs" in shipped_names()
    prompts = [row["prompt"] for row in train + test]
    assert len(set(prompts)) == len(prompts)  # unique, so test is disjoint from train
    for row in train + test:
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert all(isinstance(v, str) and 0 < len(v) < 80 for v in row.values())
    for parsed in parse_preference_rows(train) + parse_preference_rows(test):
        assert len(parsed.prompt) == len(parsed.chosen) == len(parsed.rejected) == 1


def test_generator_reproduces_the_shipped_files() -> None:
    built = load_generator().build()
    for split in ("train", "test"):
        lines = (SHIPPED / "preference_pairs" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == built[split]


def test_shipped_arithmetic_answers_are_right_and_rejections_wrong() -> None:
    rows = list(LocalDatasetStore(Path("/nonexistent")).load_dataset("preference_pairs", "train"))
    checked = 0
    for row in rows:
        question = row["prompt"].removeprefix("What is ").removesuffix("?")
        if row["prompt"].startswith("What is ") and question.replace(" ", "").replace("+", "").replace("-", "").isdigit():
            a, op, b = question.split()
            value = int(a) + int(b) if op == "+" else int(a) - int(b)
            assert row["chosen"] == f"{question} = {value}."
            assert row["rejected"] != row["chosen"]
            checked += 1
    assert checked > 20
