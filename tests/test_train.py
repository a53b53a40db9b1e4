"""Training-domain invariants: schedules, datum shift/truncation, renderer weights, tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import DatasetError, TrainOnWhat
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.errors import RendererError
from tinkex_cookbook.ports import ModelInput
from tinkex_cookbook.train.checkpoints import CheckpointRecord, append_checkpoint, load_checkpoints
from tinkex_cookbook.train.datum import datum_from_model_input_weights
from tinkex_cookbook.train.renderers import get_renderer, validate_conversation
from tinkex_cookbook.train.schedules import LR_SCHEDULES, lr_multiplier
from tinkex_cookbook.train.tokenizers import ByteTokenizer


@given(st.sampled_from(LR_SCHEDULES), st.integers(1, 500), st.data())
@settings(max_examples=300, deadline=None)
def test_lr_multiplier_stays_in_unit_interval_and_never_rises(schedule: str, total: int, data) -> None:
    warmup = data.draw(st.integers(0, total - 1))
    values = [lr_multiplier(schedule, step, total, warmup) for step in range(total)]
    assert all(0.0 <= v <= 1.0 for v in values)
    after = values[warmup:]
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))
    assert all(a <= b for a, b in zip(values[:warmup], values[1:warmup + 1]))


def test_lr_schedule_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        lr_multiplier("linear", 0, 0)
    with pytest.raises(ValueError, match="'nope'"):
        lr_multiplier("nope", 0, 10)


@given(st.lists(st.integers(0, 300), min_size=2, max_size=60), st.data())
@settings(max_examples=300, deadline=None)
def test_datum_shifts_and_truncates(tokens: list[int], data) -> None:
    weights = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(tokens), max_size=len(tokens)))
    max_length = data.draw(st.none() | st.integers(2, 80))
    datum = datum_from_model_input_weights(ModelInput.from_ints(tokens), weights, max_length)
    kept = tokens[:max_length] if max_length else tokens
    assert datum.model_input.to_ints() == kept[:-1]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == kept[1:]
    assert datum.loss_fn_inputs["weights"].tolist() == weights[1 : len(kept)]


def test_datum_needs_matching_lengths_and_two_tokens() -> None:
    with pytest.raises(ValueError, match="weights"):
        datum_from_model_input_weights(ModelInput.from_ints([1, 2]), [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        datum_from_model_input_weights(ModelInput.from_ints([1, 2, 3]), [1.0] * 3, max_length=1)


roles = st.sampled_from(["system", "user", "assistant"])
conversations = st.lists(
    st.fixed_dictionaries({"role": roles, "content": st.text(max_size=20)}), min_size=1, max_size=6,
)
MODES = [m for m in TrainOnWhat if m is not TrainOnWhat.CUSTOMIZED]


@given(st.sampled_from(["llama3", "role_colon"]), st.sampled_from(MODES), conversations)
@settings(max_examples=300, deadline=None)
def test_renderer_weights_align_with_tokens(name: str, mode: TrainOnWhat, messages: list) -> None:
    renderer = get_renderer(name, ByteTokenizer())
    model_input, weights = renderer.build_supervised_example(messages, mode)
    assert len(weights) == model_input.length and set(weights) <= {0.0, 1.0}
    assert weights[0] == 0.0
    if mode is TrainOnWhat.ALL_TOKENS:
        assert all(w == 1.0 for w in weights[1:])


@given(st.sampled_from(["llama3", "role_colon"]), conversations, st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_generation_prompt_is_a_prefix_of_the_supervised_example(name: str, history: list, reply: str) -> None:
    renderer = get_renderer(name, ByteTokenizer())
    prompt = renderer.build_generation_prompt(history).to_ints()
    full, weights = renderer.build_supervised_example(
        [*history, {"role": "assistant", "content": reply}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    assert full.to_ints()[: len(prompt)] == prompt
    assert not any(weights[: len(prompt)]) and all(weights[len(prompt) :])


def test_trainable_field_belongs_to_customized_mode() -> None:
    renderer = get_renderer("llama3", ByteTokenizer())
    flagged = [{"role": "user", "content": "q", "trainable": True}, {"role": "assistant", "content": "a", "trainable": False}]
    _, weights = renderer.build_supervised_example(flagged, TrainOnWhat.CUSTOMIZED)
    assert any(weights) and weights[-1] == 0.0
    with pytest.raises(RendererError, match="only train_on_what=customized"):
        renderer.build_supervised_example(flagged, TrainOnWhat.ALL_MESSAGES)
    with pytest.raises(RendererError, match="needs a 'trainable' field"):
        renderer.build_supervised_example([{"role": "user", "content": "q"}], TrainOnWhat.CUSTOMIZED)


def test_llama3_generation_prompt_ends_with_the_assistant_header() -> None:
    tokenizer = ByteTokenizer()
    renderer = get_renderer("llama3", tokenizer)
    prompt = renderer.build_generation_prompt([{"role": "user", "content": "hi"}])
    text = tokenizer.decode(prompt.to_ints())
    assert text == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>" \
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert renderer.get_stop_sequences() == [tokenizer.encode("<|eot_id|>", add_special_tokens=False)[0]]


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_byte_tokenizer_round_trips_text(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < tokenizer.vocab_size for i in ids)


def test_special_tokens_are_single_ids() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.encode("<|eot_id|>", add_special_tokens=False) == [260]
    assert tokenizer.encode("a")[0] == tokenizer.bos_token_id


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({}, "row 7: expected a non-empty 'messages'"),
        ({"messages": []}, "row 7: expected a non-empty"),
        ({"messages": [{"content": "x"}]}, "row 7, message 0: missing string 'role'"),
        ({"messages": [{"role": "user", "content": 3}]}, "row 7, message 0: 'content' must be a string or a list"),
        ("not a dict", "row 7"),
    ],
)
def test_conversation_errors_name_the_row(row: object, words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        validate_conversation(row, 7)


def test_checkpoint_records_append_and_load() -> None:
    store = MemoryBlobStore()
    assert load_checkpoints(store, "r/checkpoints.jsonl") == []
    first, second = CheckpointRecord("000002", 2, 0, "p2"), CheckpointRecord("final", 4, 0, "p4", "s4", True)
    append_checkpoint(store, "r/checkpoints.jsonl", first)
    append_checkpoint(store, "r/checkpoints.jsonl", second)
    assert load_checkpoints(store, "r/checkpoints.jsonl") == [first, second]


def test_a_checkpoint_record_that_would_not_read_back_is_refused_before_it_is_written() -> None:
    """The record is checked by the same definition that reads it back (``record_problems``)."""
    store = MemoryBlobStore()
    bad = CheckpointRecord("000002", 2, 0, "p2", extra={"sampler_path": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="field 'extra' must be an object of strings, got"):
        append_checkpoint(store, "r/checkpoints.jsonl", bad)
    assert not store.exists("r/checkpoints.jsonl")
