"""Stronger training-domain properties than ``test_train.py``: text with special tokens in it,
how TrainOnWhat modes relate to each other, schedule end points, checkpoint files."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import TrainOnWhat, UnknownNameError
from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.errors import BlobStoreError
from tinkex_cookbook.ports import ModelInput
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint, load_checkpoints
from tinkex_cookbook.train.datum import datum_from_model_input_weights
from tinkex_cookbook.train.renderers import get_renderer, renderer_names, validate_conversation
from tinkex_cookbook.train.schedules import lr_multiplier
from tinkex_cookbook.train.tokenizers import CHAT_SPECIAL_TOKENS, LLAMA3_SPECIAL_TOKENS, ByteTokenizer

TOKENIZER = ByteTokenizer()
# Text that is likely to contain special tokens, their fragments and multi-byte characters.
pieces = st.sampled_from([*LLAMA3_SPECIAL_TOKENS, "<|", "|>", "<|eot", "_id|>", "é", "😀", "\n", "{x}", "\x00"])
tricky_text = st.lists(pieces | st.text(max_size=3), max_size=10).map("".join)


# --- tokenizer ------------------------------------------------------------------------------


@given(tricky_text)
@settings(max_examples=200)
def test_tokenizer_round_trips_text_containing_special_tokens(text: str) -> None:
    ids = TOKENIZER.encode(text, add_special_tokens=False)
    assert TOKENIZER.decode(ids) == text
    with_bos = TOKENIZER.encode(text)
    assert with_bos == [TOKENIZER.bos_token_id, *ids]
    assert TOKENIZER.decode(with_bos) == "<|begin_of_text|>" + text


def test_special_tokens_have_distinct_ids_after_the_bytes() -> None:
    ids = [TOKENIZER.encode(tok, add_special_tokens=False) for tok in CHAT_SPECIAL_TOKENS]
    assert ids == [[256 + i] for i in range(len(CHAT_SPECIAL_TOKENS))]
    assert TOKENIZER.vocab_size == 256 + len(CHAT_SPECIAL_TOKENS)
    assert CHAT_SPECIAL_TOKENS[: len(LLAMA3_SPECIAL_TOKENS)] == LLAMA3_SPECIAL_TOKENS
    assert TOKENIZER.eos_token_id == TOKENIZER.encode("<|end_of_text|>", add_special_tokens=False)[0]


@given(st.text(max_size=40))
@settings(max_examples=100)
def test_tokenizer_without_special_tokens_is_plain_utf8(text: str) -> None:
    plain = ByteTokenizer(special_tokens=(), bos_token=None, eos_token=None)
    assert plain.encode(text) == list(text.encode("utf-8"))
    assert plain.decode(plain.encode(text)) == text
    assert plain.eos_token_id is None and plain.vocab_size == 256


# --- renderers ------------------------------------------------------------------------------


RENDERERS = st.sampled_from(["llama3", "role_colon"])
T = TrainOnWhat
# Each content starts with a unique marker, so a message's text can be found in a decoded rendering.
conversations = st.lists(
    st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text("abc xyz", max_size=8)),
    min_size=1, max_size=5,
).map(lambda pairs: [{"role": role, "content": f"[{role}{i}]{text}"} for i, (role, text) in enumerate(pairs)])


def render(name: str, messages: list[dict], mode: TrainOnWhat) -> tuple[list[int], list[float]]:
    model_input, weights = get_renderer(name, TOKENIZER).build_supervised_example(messages, mode)
    assert len(weights) == model_input.length and set(weights) <= {0.0, 1.0}
    return model_input.to_ints(), weights


@given(RENDERERS, conversations)
@settings(max_examples=150, deadline=None)
def test_modes_change_weights_never_tokens_and_nest(name: str, messages: list) -> None:
    modes = [T.LAST_ASSISTANT_MESSAGE, T.LAST_ASSISTANT_TURN, T.ALL_ASSISTANT_MESSAGES, T.ALL_MESSAGES, T.ALL_TOKENS]
    rendered = [render(name, messages, mode) for mode in modes]
    assert len({tuple(tokens) for tokens, _ in rendered}) == 1
    weights = [w for _, w in rendered]
    for narrow, wide in zip(weights, weights[1:]):
        assert all(n <= w for n, w in zip(narrow, wide))


@given(RENDERERS, conversations)
@settings(max_examples=150, deadline=None)
def test_assistant_and_user_system_modes_partition_all_messages(name: str, messages: list) -> None:
    _, assistant = render(name, messages, T.ALL_ASSISTANT_MESSAGES)
    _, others = render(name, messages, T.ALL_USER_AND_SYSTEM_MESSAGES)
    _, everything = render(name, messages, T.ALL_MESSAGES)
    assert [a + o for a, o in zip(assistant, others)] == everything


@given(RENDERERS, conversations)
@settings(max_examples=150, deadline=None)
def test_customized_flags_reproduce_the_assistant_mode(name: str, messages: list) -> None:
    flagged = [{**m, "trainable": m["role"] == "assistant"} for m in messages]
    assert render(name, flagged, T.CUSTOMIZED) == render(name, messages, T.ALL_ASSISTANT_MESSAGES)


@given(RENDERERS, conversations)
@settings(max_examples=150, deadline=None)
def test_weighted_text_holds_the_assistant_contents_and_only_those(name: str, messages: list) -> None:
    tokens, weights = render(name, messages, T.ALL_ASSISTANT_MESSAGES)
    weighted = TOKENIZER.decode([t for t, w in zip(tokens, weights) if w])
    unweighted = TOKENIZER.decode([t for t, w in zip(tokens, weights) if not w])
    for message in messages:
        trained = message["role"] == "assistant"
        assert (message["content"] in weighted) is trained
        assert (message["content"] in unweighted) is not trained


def test_unknown_renderer_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownNameError) as caught:
        get_renderer("nope", TOKENIZER)
    assert "'nope'" in str(caught.value)
    assert all(repr(name) in str(caught.value) for name in renderer_names())
    assert {"llama3", "role_colon"} <= set(renderer_names())


@given(st.integers(0, 10_000))
@settings(max_examples=50)
def test_conversation_errors_name_whatever_index_they_get(index: int) -> None:
    with pytest.raises(ValueError, match=f"^row {index}[:,]"):
        validate_conversation({"messages": [{"role": "user", "content": None}]}, index)


def test_valid_conversation_is_returned_as_is() -> None:
    messages = [{"role": "user", "content": "hi", "extra": 1}]
    assert validate_conversation({"messages": messages}, 0) is messages


# --- datums ---------------------------------------------------------------------------------


@given(st.lists(st.floats(0, 4, width=32), min_size=2, max_size=30), st.integers(2, 40))
@settings(max_examples=100)
def test_datum_keeps_fractional_weights_and_long_limits_change_nothing(weights: list[float], limit: int) -> None:
    tokens = ModelInput.from_ints(range(len(weights)))
    datum = datum_from_model_input_weights(tokens, weights, max_length=max(limit, len(weights)))
    assert datum == datum_from_model_input_weights(tokens, weights)
    assert datum.loss_fn_inputs["weights"].tolist() == weights[1:]
    assert datum.loss_fn_inputs["weights"].dtype == "float32"
    assert datum.loss_fn_inputs["target_tokens"].tolist() == list(range(1, len(weights)))


# --- schedules ------------------------------------------------------------------------------


@given(st.sampled_from(["linear", "cosine", "constant"]), st.integers(2, 300), st.data())
@settings(max_examples=100)
def test_warmup_reaches_exactly_one_then_decay_starts_from_one(schedule: str, total: int, data) -> None:
    warmup = data.draw(st.integers(1, total - 1))
    assert lr_multiplier(schedule, 0, total, warmup) == pytest.approx(1 / warmup)
    assert lr_multiplier(schedule, warmup - 1, total, warmup) == 1.0
    assert lr_multiplier(schedule, warmup, total, warmup) == 1.0


@given(st.integers(1, 300), st.integers(0, 600))
@settings(max_examples=100)
def test_linear_and_cosine_end_at_zero_and_agree_at_the_midpoint(total: int, extra: int) -> None:
    for schedule in ("linear", "cosine"):
        assert lr_multiplier(schedule, total + extra, total) == 0.0
    if total % 2 == 0:
        assert lr_multiplier("linear", total // 2, total) == 0.5
        assert math.isclose(lr_multiplier("cosine", total // 2, total), 0.5)


def test_unknown_schedule_is_rejected_during_warmup_too() -> None:
    with pytest.raises(ValueError, match="'linaer'"):
        lr_multiplier("linaer", 0, 100, warmup_steps=10)


# --- checkpoints ----------------------------------------------------------------------------

records = st.builds(
    CheckpointRecord,
    name=st.text(min_size=1, max_size=12), step=st.integers(0, 10**9), epoch=st.integers(0, 1000),
    state_path=st.none() | st.text(max_size=20), sampler_path=st.none() | st.text(max_size=20),
    final=st.booleans(),
)


@given(st.lists(records, max_size=6))
@settings(max_examples=100)
def test_checkpoint_file_round_trips_any_records(drawn: list[CheckpointRecord]) -> None:
    """Any records a run can write: its steps grow from one record to the next."""
    history = [replace(record, step=sum(r.step % 1000 + 1 for r in drawn[: i + 1])) for i, record in enumerate(drawn)]
    store = MemoryBlobStore()
    for record in history:
        append_checkpoint(store, "run/checkpoints.jsonl", record)
    assert load_checkpoints(store, "run/checkpoints.jsonl") == history


@given(st.lists(st.tuples(st.integers(0, 12), st.booleans()), min_size=1, max_size=6), st.none() | st.integers(0, 12))
@settings(max_examples=100)
def test_checkpoint_steps_that_do_not_fit_the_run_are_a_damaged_line(
    steps: list[tuple[int, bool]], total: int | None
) -> None:
    """Whatever the steps, a file either reads back whole (steps grow, a final one may repeat the step before
    it, none beyond ``total``) or is a ``BlobStoreError`` naming the first line that breaks the order."""
    store = MemoryBlobStore()
    history = [CheckpointRecord(f"c{i}", step, 0, "noop://s", final=final) for i, (step, final) in enumerate(steps)]
    for record in history:
        append_checkpoint(store, "r/checkpoints.jsonl", record)
    first_bad, last = None, None
    for lineno, record in enumerate(history, start=1):
        fits = (total is None or record.step <= total) and (last is None or record.step > last.step or (
            record.step == last.step and record.final and not last.final))
        if fits:
            last = record
        elif first_bad is None:
            first_bad = lineno
    if first_bad is None:
        assert load_checkpoints(store, "r/checkpoints.jsonl", total) == history
    else:
        with pytest.raises(BlobStoreError, match=f"is damaged: line {first_bad} has field 'step'"):
            load_checkpoints(store, "r/checkpoints.jsonl", total)


def test_checkpoint_file_on_disk_is_one_sorted_json_object_per_line(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    append_checkpoint(store, "r/checkpoints.jsonl", CheckpointRecord("000002", 2, 0, "noop://a"))
    append_checkpoint(store, "r/checkpoints.jsonl", CheckpointRecord("final", 4, 1, "noop://b", "noop://s", True))
    lines = (tmp_path / "r" / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["000002", "final"]
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)
    assert load_checkpoints(LocalBlobStore(tmp_path), "r/checkpoints.jsonl")[-1].final is True
