"""Bring your own data: the row formats SL reads, their column mapping, small datasets, RL columns.

Fixtures are the shipped chitchat conversations converted to each shape, written to a
JSONL file and read by the ``local`` dataset store (``dataset=<path>``), as a user's file is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import ConfigError, DatasetError, Runtime, StageError
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.train.datum import conversation_to_datum
from tinkex_cookbook.train.formats import RowFormat, detect_format, resolve_format, rows_to_datums, to_example
from tinkex_cookbook.train.holdout import hold_out
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer
from tinkex_cookbook.train.rl.envs import final_answer, load_problems
from tinkex_cookbook.train.tokenizers import ByteTokenizer

CHITCHAT = Path(__file__).resolve().parents[1] / "tinkex_cookbook" / "data" / "chitchat" / "train.jsonl"
SHAREGPT_NAMES = {"user": "human", "assistant": "gpt", "system": "system"}
TEXT = st.text(alphabet="abcdefgh ijk.,?!", min_size=1, max_size=30).filter(str.strip)


def chitchat(count: int) -> list[list[dict[str, Any]]]:
    with CHITCHAT.open() as handle:
        return [json.loads(line)["messages"] for _, line in zip(range(count), handle, strict=False)]


def as_shape(messages: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    """A conversation in one of the accepted shapes (alpaca and prompt_completion keep its first exchange)."""
    if shape == "messages":
        return {"messages": messages}
    if shape == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_NAMES[m["role"]], "value": m["content"]} for m in messages]}
    if shape == "alpaca":
        return {"instruction": messages[0]["content"], "input": "", "output": messages[1]["content"]}
    if shape == "prompt_completion":
        return {"prompt": messages[0]["content"], "completion": messages[1]["content"]}
    return {"text": "\n".join(m["content"] for m in messages)}


def write_rows(folder: Path, rows: list[Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run(folder: Path, rows: list[Any], manifest: str = "test", service: Any = None, **cfg: Any) -> Any:
    config = {"dataset": str(write_rows(folder, rows)), "log_path": "run", **cfg}
    ports: dict[str, Any] = {"dataset_store": {"adapter": "local", "root": str(folder)},
                             "blob_store": {"adapter": "local", "root": str(folder / "blobs")}}
    if service is not None:
        ports["training_client"] = service
    return Runtime.run(config.pop("recipe", "sl_basic"), config, manifest=manifest, ports=ports)


def failure(folder: Path, rows: list[Any], **cfg: Any) -> str:
    """The run's ``DatasetError``, raised before any session opened (the training service saw no call)."""
    service = NoopTrainingService()
    with pytest.raises(StageError) as caught:
        run(folder, rows, service=service, **cfg)
    assert isinstance(caught.value.__cause__, DatasetError), repr(caught.value.__cause__)
    assert service.calls == [], "the data was checked only after a session opened"
    return str(caught.value.__cause__)


def dataset_event(result: Any) -> dict[str, Any]:
    return next(e.data for e in result.events if e.name == "train.dataset")


# --- the situations users hit ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["sharegpt", "alpaca"])
def test_a_30_row_sharegpt_or_alpaca_file_trains_with_the_defaults(tmp_path: Path, shape: str) -> None:
    result = run(tmp_path, [as_shape(m, shape) for m in chitchat(30)])
    event = dataset_event(result)
    assert event["format"] == shape and event["rows"] == 30
    assert (event["test_rows"], event["train_rows"]) == (3, 27) and "test_size=" in event["note"]
    assert [m["step"] for m in result.metrics if m["event"] == "train.step"] == [1]
    log = (tmp_path / "blobs" / "run" / "run.log").read_text()
    assert f"train.dataset dataset={tmp_path / 'rows.jsonl'} format={shape}" in log


def test_the_default_hold_out_is_32_when_the_dataset_can_spare_it() -> None:
    assert hold_out(48, None, 16, "d").size == 32 and hold_out(48, None, 16, "d").note is None
    assert hold_out(47, None, 16, "d").size == 4
    assert hold_out(1, None, 16, "d").size == 0
    assert hold_out(30, 3, 16, "d").size == 3


def test_a_test_size_the_dataset_cannot_meet_names_a_value_that_works(tmp_path: Path) -> None:
    message = failure(tmp_path, [as_shape(m, "messages") for m in chitchat(30)], test_size=32)
    assert "has 30 rows, not more than test_size=32" in message and "Fix: set test_size=3" in message


def test_a_batch_size_bigger_than_the_training_rows_names_one_that_works(tmp_path: Path) -> None:
    message = failure(tmp_path, [as_shape(m, "messages") for m in chitchat(30)], test_size=20)
    assert "10 training rows is fewer than batch_size=16" in message and "batch_size=10 or lower" in message


def test_a_row_of_no_known_format_lists_its_keys_the_formats_and_the_keys_to_set(tmp_path: Path) -> None:
    message = failure(tmp_path, [{"dialog": [{"role": "user", "content": "hi"}], "id": 3}] * 20)
    for words in ("row 0", "['dialog', 'id']", "sharegpt", "alpaca", "prompt_completion", "messages_field=dialog",
                  "dataset_format="):
        assert words in message, (words, message)


def test_messages_field_reads_the_list_from_another_column(tmp_path: Path) -> None:
    rows = [{"dialog": m} for m in chitchat(20)]
    result = run(tmp_path, rows, messages_field="dialog", batch_size=4, test_size=2)
    assert dataset_event(result)["format"] == "messages"
    shared = [{"turns": as_shape(m, "sharegpt")["conversations"]} for m in chitchat(20)]
    assert dataset_event(run(tmp_path / "s", shared, messages_field="turns", batch_size=4))["format"] == "sharegpt"
    with pytest.raises(DatasetError, match=r"row 0 has no column messages_field='dialogue'; its keys: \['dialog'\]"):
        detect_format(rows[0], RowFormat(messages_field="dialogue"))


def test_an_ambiguous_row_asks_for_dataset_format(tmp_path: Path) -> None:
    rows = [{**as_shape(m, "messages"), **as_shape(m, "alpaca")} for m in chitchat(20)]
    message = failure(tmp_path, rows)
    assert "row 0 matches several dataset formats (messages, alpaca)" in message
    assert "dataset_format=messages" in message
    result = run(tmp_path / "chosen", rows, dataset_format="alpaca", batch_size=4)
    assert dataset_event(result)["format"] == "alpaca"


def test_a_row_that_breaks_the_detected_format_is_named_by_its_index(tmp_path: Path) -> None:
    rows = [as_shape(m, "sharegpt") for m in chitchat(20)]
    rows[7] = {"conversation": rows[7]["conversations"]}
    message = failure(tmp_path, rows)
    assert "row 7 (dataset_format=sharegpt)" in message and "'conversations'" in message
    assert "['conversation']" in message


def test_an_unknown_speaker_is_mapped_with_role_map(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "customer", "value": "hi"}, {"from": "bot", "value": "hello"}]}] * 20
    message = failure(tmp_path, rows)
    assert "unknown role 'customer'" in message
    assert """role_map='{"customer": "user", "bot": "assistant"}'""" in message, message
    result = run(tmp_path / "mapped", rows, role_map={"customer": "user", "bot": "assistant"}, batch_size=4)
    assert dataset_event(result)["format"] == "sharegpt"
    with pytest.raises(ConfigError, match=r"role_map maps to unknown roles \{'bot': 'helper'\}"):
        run(tmp_path / "typo", rows, role_map={"bot": "helper"})


def test_a_text_column_beside_a_conversation_is_not_ambiguous() -> None:
    row = {"instruction": "a", "input": "", "output": "b", "text": "### Instruction: a ### Response: b"}
    assert detect_format(row, RowFormat()) == "alpaca"
    assert detect_format({"content": "x"}, RowFormat(text_field="content")) == "text"


# --- what each format reads as --------------------------------------------------------------------


def test_each_format_reads_as_a_conversation_or_text() -> None:
    fmt = RowFormat()
    alpaca = to_example({"instruction": "Add", "input": "2 and 2", "output": "4", "system": "Be brief."}, fmt, 0)
    assert alpaca.messages == [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Add\n\n2 and 2"}, {"role": "assistant", "content": "4"}]
    share = to_example({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"},
                                          {"from": "gpt", "value": "a"}, {"from": "observation", "value": "o"}]},
                       fmt, 0)
    assert [m["role"] for m in share.messages or []] == ["system", "user", "assistant", "tool"]
    listed = to_example({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                         "completion": [{"role": "assistant", "content": "a"}]}, fmt, 0)
    assert listed.completion_start == 2 and len(listed.messages or []) == 3
    assert to_example({"text": "plain"}, fmt, 0).text == "plain"


def test_resolve_format_reads_every_row_and_detects_from_the_first() -> None:
    rows = [as_shape(m, "prompt_completion") for m in chitchat(5)]
    assert resolve_format(rows, RowFormat()).name == "prompt_completion"
    rows[3] = {"prompt": "only a prompt"}
    with pytest.raises(DatasetError, match=r"row 3 \(dataset_format=prompt_completion\): 'completion'"):
        resolve_format(rows, RowFormat())


def renderer(name: str = "llama3") -> Any:
    return get_renderer(name, ByteTokenizer())


def datum_of(row: dict[str, Any], mode: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES) -> Any:
    fmt = resolve_format([row], RowFormat())
    return rows_to_datums([row], fmt, renderer(), None, mode, "none")[0]


@st.composite
def exchanges(draw: st.DrawFn) -> list[dict[str, Any]]:
    system = [{"role": "system", "content": draw(TEXT)}] if draw(st.booleans()) else []
    turns = []
    for _ in range(draw(st.integers(1, 3))):
        turns += [{"role": "user", "content": draw(TEXT)}, {"role": "assistant", "content": draw(TEXT)}]
    return system + turns


@given(exchanges(), st.sampled_from(list(TrainOnWhat)[:5]))
@settings(max_examples=40, deadline=None)
def test_a_sharegpt_row_renders_as_its_messages_twin(messages: list[dict[str, Any]], mode: TrainOnWhat) -> None:
    twin, share = datum_of({"messages": messages}, mode), datum_of(as_shape(messages, "sharegpt"), mode)
    assert share.model_input.to_ints() == twin.model_input.to_ints()
    assert share.loss_fn_inputs["weights"].data.tolist() == twin.loss_fn_inputs["weights"].data.tolist()


@given(TEXT, TEXT, TEXT, st.booleans())
@settings(max_examples=40, deadline=None)
def test_alpaca_and_prompt_completion_rows_render_as_their_messages_twin(
    instruction: str, extra: str, output: str, with_input: bool
) -> None:
    alpaca = {"instruction": instruction, "input": extra if with_input else "", "output": output}
    prompt = f"{instruction}\n\n{extra}" if with_input else instruction
    twin = datum_of({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]})
    for row in (alpaca, {"prompt": prompt, "completion": output}):
        datum = datum_of(row)
        assert datum.model_input.to_ints() == twin.model_input.to_ints()
        assert datum.loss_fn_inputs["weights"].data.tolist() == twin.loss_fn_inputs["weights"].data.tolist()


def test_prompt_completion_trains_only_the_completion_whatever_train_on_what_says() -> None:
    prompt = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
              {"role": "user", "content": "q2"}]
    completion = [{"role": "assistant", "content": "a2"}]
    datum = datum_of({"prompt": prompt, "completion": completion}, TrainOnWhat.ALL_MESSAGES)
    expected = conversation_to_datum(prompt + completion, renderer(), None, TrainOnWhat.LAST_ASSISTANT_MESSAGE,
                                     "none")
    assert datum.loss_fn_inputs["weights"].data.tolist() == expected.loss_fn_inputs["weights"].data.tolist()
    several = [{"role": "assistant", "content": "call"}, {"role": "tool", "content": "42"},
               {"role": "assistant", "content": "a2"}]
    datum = datum_of({"prompt": prompt, "completion": several})
    targets, weights = (datum.loss_fn_inputs[k].data.tolist() for k in ("target_tokens", "weights"))
    trained = ByteTokenizer().decode([t for t, w in zip(targets, weights, strict=True) if w > 0])
    assert "call" in trained and "42" in trained and "a2" in trained and "q2" not in trained
    assert "a1" not in trained


def test_a_text_row_trains_every_token_with_the_tokenizers_bos_and_an_eos() -> None:
    tokenizer = ByteTokenizer()
    datum = datum_of({"text": "Tides rise."})
    tokens = [*tokenizer.encode("Tides rise."), tokenizer.eos_token_id]
    assert tokens[0] == tokenizer.bos_token_id
    assert datum.model_input.to_ints() == tokens[:-1]
    assert datum.loss_fn_inputs["target_tokens"].data.tolist() == tokens[1:]
    assert set(datum.loss_fn_inputs["weights"].data.tolist()) == {1.0}
    cut = rows_to_datums([{"text": "x" * 50}], RowFormat("text"), renderer(), 8, TrainOnWhat.ALL_TOKENS, "none")[0]
    assert cut.model_input.length == 7


# --- every format trains on `local` ---------------------------------------------------------------


LOCAL = {"model_name": "tiny-llama3", "batch_size": 2, "train_size": 4, "test_size": 0, "max_length": 48,
         "lora_rank": 2, "learning_rate": 1e-2, "eval_every": 0, "save_every": 0, "sample_prompts": 0}


@pytest.mark.parametrize("shape", ["messages", "sharegpt", "alpaca", "prompt_completion", "text"])
def test_every_format_trains_on_local(tmp_path: Path, shape: str) -> None:
    pytest.importorskip("torch")
    result = run(tmp_path, [as_shape(m, shape) for m in chitchat(4)], manifest="local", **LOCAL)
    assert dataset_event(result)["format"] == shape
    losses = [m["train_mean_nll"] for m in result.metrics if m["event"] == "train.step"]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


# --- RL problems map their columns ----------------------------------------------------------------


MATH_ROWS = [{"problem": f"What is {n} + {n}?", "level": "Level 1",
              "solution": f"Adding, {n} + {n} = {2 * n}, so the answer is $\\boxed{{{2 * n}}}$."} for n in range(8)]
RL = {"recipe": "math_rl", "num_steps": 1, "batch_size": 2, "group_size": 2, "max_tokens": 4, "save_every": 0}


def test_final_answers_come_out_of_whole_solutions() -> None:
    assert final_answer("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert final_answer("48/2 = 24 apples.\n#### 1,024") == "1024"
    assert final_answer("42") == "42"


def test_math_rows_load_with_question_and_answer_fields(tmp_path: Path) -> None:
    result = run(tmp_path, MATH_ROWS, question_field="problem", answer_field="solution", **RL)
    assert result.state["step"] == 1
    from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore

    problems = load_problems(LocalDatasetStore(tmp_path), "rows.jsonl", "train", question_field="problem",
                             answer_field="solution")
    assert problems[3] == ("What is 3 + 3?", "6")


def test_rl_rows_without_the_columns_name_them_before_a_session_opens(tmp_path: Path) -> None:
    message = failure(tmp_path, MATH_ROWS, **RL)
    assert "['level', 'problem', 'solution']" in message and "question_field=" in message
    assert "answer_field=" in message


# --- formats with mixtures and streaming ----------------------------------------------------------


def test_a_mixture_reads_each_dataset_in_its_own_format(tmp_path: Path) -> None:
    conversations = chitchat(60)
    sharegpt = write_rows(tmp_path / "a", [as_shape(m, "sharegpt") for m in conversations[:30]])
    alpaca = write_rows(tmp_path / "b", [as_shape(m, "alpaca") for m in conversations[30:]])
    ports = {"dataset_store": {"adapter": "local", "root": str(tmp_path)},
             "blob_store": {"adapter": "local", "root": str(tmp_path / "blobs")}}
    mixture = [{"dataset": str(sharegpt)}, {"dataset": str(alpaca)}]
    result = Runtime.run("sl_basic", {"mixture": mixture, "batch_size": 4, "test_size": 6, "log_path": "mix"},
                         manifest="test", ports=ports)
    event = dataset_event(result)
    assert event["format"] == f"{sharegpt}:sharegpt,{alpaca}:alpaca"
    assert result.state["step"] > 0


def test_a_streamed_dataset_in_another_format_trains_and_names_it(tmp_path: Path) -> None:
    rows = [as_shape(m, "sharegpt") for m in chitchat(40)]
    result = run(tmp_path, rows, streaming=True, max_steps=3, batch_size=4, test_size=4)
    assert dataset_event(result)["format"] == "sharegpt"
    assert result.state["step"] == 3


def test_a_streamed_dataset_of_no_known_format_fails_before_the_session(tmp_path: Path) -> None:
    message = failure(tmp_path, [{"dialog": "x", "id": i} for i in range(20)], streaming=True, max_steps=2,
                      batch_size=4, test_size=2)
    assert "['dialog', 'id']" in message


def test_a_short_stream_holds_out_a_tenth_by_default_and_a_set_test_size_names_a_fix(tmp_path: Path) -> None:
    rows = [as_shape(m, "sharegpt") for m in chitchat(30)]
    result = run(tmp_path, rows, streaming=True, max_steps=2, batch_size=4, sample_prompts=0)
    event = dataset_event(result)
    assert event["test_rows"] == 3 and "10%" in event["note"]
    message = failure(tmp_path / "big", rows, streaming=True, max_steps=2, batch_size=4, test_size=40)
    assert "test_size=40" in message and "Fix: set test_size=3" in message


def test_a_failed_runs_log_says_why_with_secrets_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tml-" + "s3cr3t" * 6
    monkeypatch.setenv("TINKER_API_KEY", secret)
    with pytest.raises(StageError) as caught:  # the error names the role: the secret, scrubbed
        run(tmp_path, [{"conversations": [{"from": secret, "value": "hi"}]}] * 20)
    assert "unknown role" in str(caught.value) and secret not in str(caught.value)
    log = (tmp_path / "blobs" / "run" / "run.log").read_text()
    assert "workflow.exception" in log and "error: stage 'load_dataset' failed: DatasetError: row 0" in log, log
    assert "unknown role" in log and secret not in log
