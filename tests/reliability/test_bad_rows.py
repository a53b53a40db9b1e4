"""Bad dataset rows through the real dataset path: a ``DatasetError`` naming the row index and the field.

Rows are written to a JSONL file and read by the ``local`` dataset store (``dataset=<path>``), then
go through the recipe's own loading stage on the `test` manifest, exactly as a user's file would.
Hypothesis builds valid rows and breaks one of them, at a random position, in one way: a missing,
mistyped or unknown role; content that is not text; malformed content parts; an empty, missing or
mistyped ``messages``; a conversation with nothing to train on; and, for DPO, every malformed
preference shape; for RL, problems without a usable question or answer. The run must stop with
``StageError`` whose cause is ``DatasetError`` naming that row's index (its 0-based position in the
file, whatever the shuffle) and the field, with the fix where there is one.

Rows longer than ``max_length`` are not errors: they are truncated, as the reference does (see
``tinkex_cookbook.train.datum``); a test pins that down. A preference pair is the exception: cut
before either reply, it could only add a constant to the DPO loss, so it is an error naming its row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinkex_cookbook import DatasetError, Runtime, StageError
from tinkex_cookbook.train.datum import KNOWN_ROLES, conversations_to_datums
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer
from tinkex_cookbook.train.tokenizers import ByteTokenizer

SHORT = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(alphabet="abcdefgh ijk.,?!", min_size=1, max_size=20).filter(str.strip)
NOT_TEXT = st.one_of(st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
NOT_A_ROLE = st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
UNKNOWN_ROLES = st.one_of(st.sampled_from(["Assistant", "USER", " user", "human", "bot", "", "gpt"]),
                          st.text(max_size=10)).filter(lambda role: role not in KNOWN_ROLES)

RECIPE_SIZES: dict[str, dict[str, Any]] = {
    "sl_basic": {"batch_size": 2, "test_size": 1, "eval_every": 0, "save_every": 0, "max_length": 256},
    "dpo": {"batch_size": 2, "test_size": 1, "eval_every": 0, "save_every": 0, "max_length": 256},
    "math_rl": {"num_steps": 1, "batch_size": 2, "group_size": 2, "max_tokens": 4, "save_every": 0},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 1, "batch_size": 2, "eval_size": 1,
                     "eval_every": 0, "save_every": 0, "max_tokens": 4},
}


def run_rows(folder: Path, recipe: str, rows: list[Any], **cfg: Any) -> Any:
    """Write ``rows`` as JSONL and run ``recipe`` on it through the local dataset store."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {"dataset": str(path), "renderer_name": "role_colon", "log_path": "run", **RECIPE_SIZES[recipe], **cfg}
    ports = {"dataset_store": {"adapter": "local", "root": str(folder)},
             "blob_store": {"adapter": "local", "root": str(folder / "blobs")}}
    return Runtime.run(recipe, config, manifest="test", ports=ports)


def dataset_error(folder: Path, recipe: str, rows: list[Any], **cfg: Any) -> str:
    with pytest.raises(StageError) as caught:
        run_rows(folder, recipe, rows, **cfg)
    assert isinstance(caught.value.__cause__, DatasetError), repr(caught.value.__cause__)
    return str(caught.value.__cause__)


def check(message: str, words: list[str]) -> None:
    assert all(word in message for word in words), (words, message)


# --- supervised conversations ---------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    turns = draw(st.integers(1, 3))
    messages = [{"role": "system", "content": draw(TEXT)}] if draw(st.booleans()) else []
    for _ in range(turns):
        messages += [{"role": "user", "content": draw(TEXT)}, {"role": "assistant", "content": draw(TEXT)}]
    return messages


@st.composite
def broken_conversations(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A row with one mistake, and the words its error must hold (besides the row index)."""
    messages = draw(conversations())
    p = draw(st.integers(0, len(messages) - 1))
    at = f"message {p}"
    kind = draw(st.sampled_from(["drop_role", "role_type", "unknown_role", "content_type", "bad_part", "empty",
                                 "not_list", "no_assistant", "not_a_message", "tool_calls"]))
    if kind == "drop_role":
        del messages[p]["role"]
        return {"messages": messages}, [at, "'role'"]
    if kind == "role_type":
        messages[p]["role"] = draw(NOT_A_ROLE)
        return {"messages": messages}, [at, "'role'"]
    if kind == "unknown_role":
        messages[p]["role"] = draw(UNKNOWN_ROLES)
        return {"messages": messages}, [at, "field 'role'", "unknown role", "valid roles: 'assistant'"]
    if kind == "content_type":
        messages[p]["content"] = draw(NOT_TEXT)
        return {"messages": messages}, [at, "'content'"]
    if kind == "bad_part":
        part = draw(st.sampled_from([5, "text", {"text": "x"}, {"type": "text"}, {"type": "text", "text": 3},
                                     {"type": 1}, {"type": "thinking", "thinking": None}]))
        messages[p]["content"] = [part]
        return {"messages": messages}, [at, "'content[0]'", "Fix:"]
    if kind == "empty":
        return {"messages": []}, ["'messages'"]
    if kind == "not_list":
        return draw(st.sampled_from([{}, {"messages": "hi"}, {"messages": {"role": "user"}}, {"messages": 3},
                                     {"conversation": messages}])), ["'messages'"]
    if kind == "no_assistant":
        return {"messages": [m for m in messages if m["role"] != "assistant"]}, [
            "no token carries loss weight", "no assistant message", "Fix:"]
    if kind == "not_a_message":
        messages[p] = draw(st.sampled_from(["hello", 3, None, ["user", "hi"]]))
        return {"messages": messages}, [at, "'role'"]
    messages[p]["tool_calls"] = draw(st.sampled_from([3, "call", {"name": "f"}]))
    return {"messages": messages}, [at, "'tool_calls'"]


def check_sl_row(folder: Path, good: list[list[dict[str, Any]]], broken: tuple[dict[str, Any], list[str]],
                 position: int) -> None:
    rows: list[Any] = [{"messages": m} for m in good]
    index = position % (len(rows) + 1)
    rows.insert(index, broken[0])
    message = dataset_error(folder, "sl_basic", rows, seed=position)
    check(message, [f"row {index}", *broken[1]])


@given(st.lists(conversations(), min_size=4, max_size=8), broken_conversations(), st.integers(0, 100))
@SHORT
def test_a_broken_conversation_names_its_row_and_field(
    tmp_path_factory: pytest.TempPathFactory, good: list, broken: tuple, position: int
) -> None:
    check_sl_row(tmp_path_factory.mktemp("sl"), good, broken, position)


@pytest.mark.long
@given(st.lists(conversations(), min_size=4, max_size=20), broken_conversations(), st.integers(0, 100))
@LONG
def test_a_broken_conversation_long(
    tmp_path_factory: pytest.TempPathFactory, good: list, broken: tuple, position: int
) -> None:
    check_sl_row(tmp_path_factory.mktemp("sl"), good, broken, position)


GOOD = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(6)]


@pytest.mark.parametrize(
    ("mode", "messages", "words"),
    [
        ("last_assistant_message", [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}],
         ["its last message is a 'user' message"]),
        ("all_user_and_system_messages", [{"role": "assistant", "content": "a"}], ["roles: assistant"]),
        ("customized", [{"role": "user", "content": "q", "trainable": False},
                        {"role": "assistant", "content": "a", "trainable": False}], ["roles: user, assistant"]),
    ],
)
def test_rows_with_nothing_to_train_on_under_the_chosen_mode(
    tmp_path: Path, mode: str, messages: list, words: list[str]
) -> None:
    rows = [{"messages": [{**m, "trainable": True} for m in r["messages"]]} if mode == "customized" else r
            for r in GOOD]
    message = dataset_error(tmp_path, "sl_basic", [*rows, {"messages": messages}], train_on_what=mode)
    check(message, ["row 6", f"train_on_what={mode!r}", *words])


def test_a_typo_in_a_role_gets_the_role_it_meant(tmp_path: Path) -> None:
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "Assistant", "content": "a"}]}
    check(dataset_error(tmp_path, "sl_basic", [*GOOD, row]), ["row 6, message 1", "Fix: write 'assistant'"])


@given(st.integers(8, 40), st.integers(1, 6), st.integers(0, 400))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rows_longer_than_max_length_are_truncated_not_rejected(
    tmp_path_factory: pytest.TempPathFactory, max_length: int, batch_size: int, extra: int
) -> None:
    """Deliberate, as the reference: every datum keeps at most ``max_length`` tokens; none is an error,
    even when the cut leaves a row nothing to train on (its weights are then all zero)."""
    rows = [{"messages": [{"role": "user", "content": "u" * (extra + i)}, {"role": "assistant", "content": "a" * i}]}
            for i in range(1, batch_size + 3)]
    result = run_rows(tmp_path_factory.mktemp("long"), "sl_basic", rows, max_length=max_length,
                      batch_size=batch_size)
    steps = [m for m in result.metrics if m["event"] == "train.step"]
    assert steps and all(m["num_tokens"] <= batch_size * (max_length - 1) for m in steps)
    renderer = get_renderer("role_colon", ByteTokenizer())
    datums = conversations_to_datums(rows, renderer, max_length, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    for row, datum in zip(rows, datums, strict=True):
        full, _ = renderer.build_supervised_example(row["messages"], TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        kept = [*datum.model_input.to_ints(), int(datum.loss_fn_inputs["target_tokens"].to_numpy()[-1])]
        assert kept == full.to_ints()[:max_length]


# --- the dataset file itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [(b"{not json\n", ["line 4", "is not JSON"]), (b"[1, 2]\n", ["line 4", "expected a JSON object, got list"]),
     (b'{"messages": "caf\xe9"}\n', ["line 4", "column 18", "not UTF-8", "Fix:"]), (b"3\n", ["line 4"])],
)
def test_a_malformed_line_in_the_file_names_the_file_and_line(tmp_path: Path, line: bytes, words: list[str]) -> None:
    path = tmp_path / "rows.jsonl"
    good = b"".join(json.dumps(row).encode() + b"\n" for row in GOOD[:3])
    path.write_bytes(good + line + good)
    with pytest.raises(StageError) as caught:
        Runtime.run("sl_basic", {"dataset": str(path), "renderer_name": "role_colon", **RECIPE_SIZES["sl_basic"]},
                    manifest="test", ports={"dataset_store": {"adapter": "local", "root": str(tmp_path)},
                                            "blob_store": {"adapter": "local", "root": str(tmp_path / "b")}})
    assert isinstance(caught.value.__cause__, DatasetError)
    check(str(caught.value.__cause__), [str(path), *words])


# --- DPO preference rows --------------------------------------------------------------------------

pairs = st.builds(lambda prompt, chosen, rejected: {"prompt": prompt, "chosen": chosen, "rejected": rejected + "!"},
                  TEXT, TEXT, TEXT)


@st.composite
def broken_pairs(draw: st.DrawFn) -> tuple[Any, list[str]]:
    row = draw(pairs)
    side = draw(st.sampled_from(["chosen", "rejected"]))
    kind = draw(st.sampled_from(["missing", "type", "blank", "same", "prompt_type", "role", "content", "no_prefix",
                                 "prompt_ends_with_assistant", "not_an_object"]))
    if kind == "missing":
        del row[side]
        return row, [f"field '{side}'", "is missing", "Fix:"]
    if kind == "type":
        row[side] = draw(NOT_TEXT)
        return row, [f"field '{side}'", "Fix:"]
    if kind == "blank":
        row[side] = draw(st.sampled_from(["", "   ", "\n"]))
        return row, [f"field '{side}'", "is empty"]
    if kind == "same":
        row["rejected"] = row["chosen"]
        return row, ["field 'rejected'", "identical to 'chosen'"]
    if kind == "prompt_type":
        row["prompt"] = draw(NOT_TEXT)
        return row, ["field 'prompt'"]
    if kind == "role":
        row[side] = [{"role": draw(UNKNOWN_ROLES), "content": row[side]}]
        return row, [f"field '{side}[0].role'"]
    if kind == "content":
        row[side] = [{"role": "assistant", "content": draw(NOT_TEXT)}]
        return row, [f"field '{side}[0].content'", "must be a string"]
    if kind == "no_prefix":
        return {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
                "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}]}, [
            "field 'chosen'", "shares no leading message"]
    if kind == "prompt_ends_with_assistant":
        row["prompt"] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        return row, ["field 'prompt'", "ends with an assistant message"]
    return draw(st.sampled_from([3, "text", [row], None])), ["expected a JSON object"]


def check_dpo_row(folder: Path, good: list[dict[str, Any]], broken: tuple[Any, list[str]], position: int) -> None:
    rows: list[Any] = list(good)
    index = position % (len(rows) + 1)
    rows.insert(index, broken[0])
    if not isinstance(broken[0], dict):  # the local store refuses non-object lines first, by line number
        check(dataset_error(folder, "dpo", rows), [f"line {index + 1}", "expected a JSON object"])
        return
    check(dataset_error(folder, "dpo", rows, seed=position), [f"row {index}", *broken[1]])


@given(st.lists(pairs, min_size=4, max_size=8), broken_pairs(), st.integers(0, 100))
@SHORT
def test_a_broken_preference_pair_names_its_row_and_field(
    tmp_path_factory: pytest.TempPathFactory, good: list, broken: tuple, position: int
) -> None:
    check_dpo_row(tmp_path_factory.mktemp("dpo"), good, broken, position)


@pytest.mark.long
@given(st.lists(pairs, min_size=4, max_size=20), broken_pairs(), st.integers(0, 100))
@LONG
def test_a_broken_preference_pair_long(
    tmp_path_factory: pytest.TempPathFactory, good: list, broken: tuple, position: int
) -> None:
    check_dpo_row(tmp_path_factory.mktemp("dpo"), good, broken, position)


def test_a_pair_truncated_to_no_reply_is_an_error(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(5)]
    rows.append({"prompt": "q" * 300, "chosen": "yes", "rejected": "no"})
    check(dataset_error(tmp_path, "dpo", rows, max_length=64), ["row 5", "max_length=64", "Fix: raise max_length"])


# --- RL problems and distillation prompts ---------------------------------------------------------

problems = st.builds(lambda q, a: {"question": q, "answer": a}, TEXT, st.integers(0, 99).map(str))


@st.composite
def broken_problems(draw: st.DrawFn) -> dict[str, Any]:
    row = draw(problems)
    kind = draw(st.sampled_from(["no_question", "question_type", "blank_question", "no_answer", "null_answer"]))
    if kind == "no_question":
        del row["question"]
    elif kind == "question_type":
        row["question"] = draw(NOT_TEXT)
    elif kind == "blank_question":
        row["question"] = ""
    elif kind == "no_answer":
        del row["answer"]
    else:
        row["answer"] = None
    return row


@given(st.lists(problems, min_size=3, max_size=6), broken_problems(), st.integers(0, 100))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_broken_rl_problem_names_its_row(
    tmp_path_factory: pytest.TempPathFactory, good: list, broken: dict, position: int
) -> None:
    rows: list[Any] = list(good)
    index = position % (len(rows) + 1)
    rows.insert(index, broken)
    message = dataset_error(tmp_path_factory.mktemp("rl"), "math_rl", rows)
    check(message, [f"row {index} ", "'question'", "'answer'"])


@pytest.mark.parametrize("answer", [[1], {"value": 1}, True, "", "  ", float("nan"), float("inf")])
def test_an_rl_answer_that_is_not_a_scalar_is_an_error(tmp_path: Path, answer: Any) -> None:
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    rows.append({"question": "What is 1 + 1?", "answer": answer})
    check(dataset_error(tmp_path, "math_rl", rows), ["row 4", "'answer'", "Fix:"])


def test_an_rl_answer_may_be_a_number(tmp_path: Path) -> None:
    rows = [{"question": f"What is {i} + 1?", "answer": answer} for i, answer in enumerate([1, 2.5, "3", 4])]
    assert run_rows(tmp_path, "math_rl", rows).metrics


@pytest.mark.parametrize(
    ("row", "words"),
    [({"messages": [{"role": "assistant", "content": "hi"}]}, ["row 6 has no prompt"]),
     ({"prompt": 5}, ["row 6 has no prompt", "'prompt'"]), ({}, ["row 6 has no prompt"])],
)
def test_a_distillation_row_without_a_prompt_names_its_row(tmp_path: Path, row: dict, words: list[str]) -> None:
    good = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(6)]
    check(dataset_error(tmp_path, "distillation", [*good, row]), words)


@pytest.mark.parametrize("messages", [[5, {"role": "user", "content": "q"}], [{"role": "user", "content": 5}]])
def test_a_distillation_prompt_with_a_malformed_message_names_its_row(tmp_path: Path, messages: list) -> None:
    good = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(6)]
    check(dataset_error(tmp_path, "distillation", [*good, {"messages": messages}]), ["row 6", "message"])
