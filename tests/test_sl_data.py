"""Supervised data: named datasets, weighted mixtures, streaming with per-batch rendering, and packing.

Nothing is downloaded: named sets are written in the layouts the stores read (``NAME/SPLIT.jsonl``
and ``HUB_ID/CONFIG/SPLIT.jsonl`` for the local store; the hf store's cache is in
``tests/adapters/test_named_datasets_hf.py``), and the streaming run reads a store whose
datasets refuse every way of being held whole.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.faults import CrashAfter, local_blobs, metric_rows
from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.datasets.lazy import LazyDataset
from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore
from tinkex_cookbook.adapters.datasets.memory import MemoryDatasetStore
from tinkex_cookbook.adapters.datasets.noop import SyntheticChatDatasetStore, synthetic_conversation
from tinkex_cookbook.errors import ConfigError, DatasetError, DatasetNotFoundError
from tinkex_cookbook.ports import Datum, ModelInput, Row, TensorData
from tinkex_cookbook.recipes.base import parse_config, parse_overrides
from tinkex_cookbook.recipes.sl_basic import SlBasicConfig
from tinkex_cookbook.train.named_datasets import (
    MATH_SUBJECTS,
    NAMED_DATASETS,
    helpsteer_pairs,
    load_preference_rows,
    open_source,
)
from tinkex_cookbook.train.sl_data import Part, concat_datums, load_rows, open_stream, pack_datums
from tinkex_cookbook.train.streams import buffer_shuffle, interleave

FAST = {"batch_size": 4, "test_size": 4, "save_every": 0, "eval_every": 0, "sample_prompts": 0}


def write_jsonl(path: Path, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def gsm8k_rows(n: int, start: int = 0) -> list[Row]:
    return [{"question": f"What is {i} + 1?", "answer": f"{i} plus one.\n#### {i + 1}"} for i in range(start, start + n)]


def steps(result: Any) -> list[dict[str, Any]]:
    return [e.data for e in result.events if e.name == "train.step"]


# --- named datasets -------------------------------------------------------------------------------


def test_a_named_set_reads_your_export_under_its_short_name(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", gsm8k_rows(40))
    result = Runtime.run(SlBasic, {**FAST, "dataset": "gsm8k"}, manifest="test",
                         ports={"dataset_store": LocalDatasetStore(tmp_path)})
    assert result.state["rows_by_source"] == {"train": {"gsm8k": 36}, "test": {"gsm8k": 4}}
    source = open_source(LocalDatasetStore(tmp_path), "gsm8k", "train")
    first = source.to_list()[0]
    assert first["messages"] == [{"role": "user", "content": "What is 0 + 1?"},
                                 {"role": "assistant", "content": "0 plus one.\n#### 1"}]


def test_a_named_set_falls_back_to_the_hub_layout_with_its_configs(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "openai" / "gsm8k" / "main" / "train.jsonl", gsm8k_rows(3))
    assert len(open_source(LocalDatasetStore(tmp_path), "gsm8k", "train").to_list()) == 3
    for number, subject in enumerate(MATH_SUBJECTS):
        write_jsonl(tmp_path / "EleutherAI" / "hendrycks_math" / subject / "test.jsonl",
                    [{"problem": f"{subject} {number}", "solution": f"\\boxed{{{number}}}"}])
    rows = open_source(LocalDatasetStore(tmp_path), "MATH", "test").to_list()
    assert [r["messages"][0]["content"] for r in rows] == [f"{s} {n}" for n, s in enumerate(MATH_SUBJECTS)]


def test_split_names_map_to_the_hub_ones_and_preference_sets_train_on_the_chosen_reply(tmp_path: Path) -> None:
    prompt = [{"role": "user", "content": "Name a colour."}]
    write_jsonl(tmp_path / "UltraFeedback" / "train_prefs.jsonl", [
        {"prompt": "Name a colour.", "chosen": [*prompt, {"role": "assistant", "content": "Blue."}],
         "rejected": [*prompt, {"role": "assistant", "content": "No."}]}])
    write_jsonl(tmp_path / "hh-rlhf" / "train.jsonl", [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}])
    store = LocalDatasetStore(tmp_path)
    (uf,) = open_source(store, "UltraFeedback", "train").to_list()
    assert uf["messages"][-1] == {"role": "assistant", "content": "Blue."}
    (hh,) = open_source(store, "hh-rlhf", "train").to_list()
    assert hh["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert load_preference_rows(store, "hh-rlhf", "train")[0]["rejected"].endswith("Go away.")


def test_helpsteer_pairs_the_most_and_least_helpful_answer_to_each_prompt() -> None:
    rows = [{"prompt": "p", "response": r, "helpfulness": h} for r, h in (("ok", 2), ("best", 4), ("worst", 0))]
    rows += [{"prompt": "tie", "response": r, "helpfulness": 3} for r in ("a", "b")]
    rows += [{"prompt": "alone", "response": "x", "helpfulness": 1}]
    assert helpsteer_pairs(rows) == [{"prompt": "p", "chosen": "best", "rejected": "worst"}]
    with pytest.raises(DatasetError, match="row 0 of HelpSteer, field 'helpfulness'"):
        helpsteer_pairs([{"prompt": "p", "response": "r"}])


def test_a_missing_named_set_says_how_to_download_or_export_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        open_source(LocalDatasetStore(tmp_path), "gsm8k", "train")
    message = str(info.value)
    assert "datasets.load_dataset(\"openai/gsm8k\", \"main\")" in message
    assert "save it as gsm8k/train.jsonl under the local dataset store's root" in message
    assert "License: MIT" in message
    with pytest.raises(DatasetNotFoundError, match="To train on UltraFeedback"):
        open_source(MemoryDatasetStore({}), "UltraFeedback", "train")


def test_a_broken_export_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text("{not json\n")
    write_jsonl(tmp_path / "openai" / "gsm8k" / "main" / "train.jsonl", gsm8k_rows(3))
    with pytest.raises(DatasetError, match="line 1: the line is not JSON") as info:
        open_source(LocalDatasetStore(tmp_path), "gsm8k", "train")
    assert not isinstance(info.value, DatasetNotFoundError)


def test_a_row_a_named_set_cannot_convert_names_its_index_and_field(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [*gsm8k_rows(2), {"question": "q?"}])
    with pytest.raises(DatasetError, match=r"row 2 of gsm8k, field 'answer'"):
        open_source(LocalDatasetStore(tmp_path), "gsm8k", "train").to_list()


def test_every_named_set_has_a_hub_id_and_license() -> None:
    assert set(NAMED_DATASETS) == {"no_robots", "tulu3-sft-mixture", "gsm8k", "MATH", "hh-rlhf", "UltraFeedback",
                                   "HelpSteer"}
    assert all("/" in d.hub_id and d.license for d in NAMED_DATASETS.values())


# --- mixtures -------------------------------------------------------------------------------------


def mixture_store() -> MemoryDatasetStore:
    chat = [synthetic_conversation("chat", "train", i) for i in range(300)]
    return MemoryDatasetStore({"chat": chat, "gsm8k": gsm8k_rows(300)})


def test_a_mixture_interleaves_by_weight_reproducibly() -> None:
    parts = [Part("chat", "train", 3.0), Part("gsm8k", "train", 1.0)]
    split = load_rows(mixture_store(), parts, seed=0, test_size=20, train_size=None, batch_size=1)
    again = load_rows(mixture_store(), parts, seed=0, test_size=20, train_size=None, batch_size=1)
    other = load_rows(mixture_store(), parts, seed=1, test_size=20, train_size=None, batch_size=1)
    assert [(p.source, p.index) for p in split.test] == [(p.source, p.index) for p in again.test]
    assert [(p.source, p.index) for p in split.test] != [(p.source, p.index) for p in other.test]
    counts = split.counts()
    total = {name: counts["train"].get(name, 0) + counts["test"].get(name, 0) for name in ("chat", "gsm8k")}
    assert total["chat"] == 300  # it ends when the drawn dataset runs out: here the heavier one
    assert 0.2 < total["gsm8k"] / sum(total.values()) < 0.3
    assert all("messages" in p.row for p in split.train)


def test_a_mixture_run_reports_rows_per_dataset(tmp_path: Path) -> None:
    pair = 'mixture=[{"dataset": "chat", "weight": 0.7}, {"dataset": "gsm8k", "weight": 0.3}]'
    cfg = {**FAST, "mixture": parse_overrides([pair])["mixture"]}
    result = Runtime.run(SlBasic, cfg, manifest="test", ports={"dataset_store": mixture_store()})
    counts = result.state["rows_by_source"]
    assert set(counts["train"]) == {"chat", "gsm8k"} and sum(counts["test"].values()) == 4
    assert result.experiment.config["dataset"] == "chat+gsm8k"
    data = next(e for e in result.events if e.name == "train.data")
    assert data.data["rows_by_source"] == counts


def test_a_mixture_render_error_names_its_dataset() -> None:
    store = MemoryDatasetStore({"chat": [synthetic_conversation("c", "train", i) for i in range(50)],
                                "bad": [{"messages": [{"role": "user", "content": "no reply"}]}] * 50})
    cfg = {**FAST, "mixture": [{"dataset": "chat"}, {"dataset": "bad"}]}
    with pytest.raises(StageError, match="dataset 'bad': row \\d+: no token carries loss weight"):
        Runtime.run(SlBasic, cfg, manifest="test", ports={"dataset_store": store})


def test_dataset_and_mixture_together_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="either dataset or mixture"):
        parse_config(SlBasicConfig, {"dataset": "gsm8k", "mixture": [{"dataset": "chat"}]})


# --- streaming ------------------------------------------------------------------------------------


class Unheld:
    """A dataset that can only be iterated: holding it whole (``len``, ``select``, ``to_list``) fails the test."""

    def __init__(self, rows: int, counter: list[int]) -> None:
        self._rows, self._counter = rows, counter

    def __iter__(self) -> Iterator[Row]:
        for i in range(self._rows):
            self._counter[0] += 1
            yield synthetic_conversation("big", "train", i)

    def __len__(self) -> int:
        raise AssertionError("a streamed dataset was asked for its length")

    def select(self, indices: Sequence[int]) -> Any:
        raise AssertionError("a streamed dataset was indexed")

    def to_list(self) -> list[Row]:
        raise AssertionError("a streamed dataset was materialised")

    def shuffle(self, seed: int) -> Any:
        raise AssertionError("the run shuffles a stream itself, through a buffer")

    def take(self, n: int) -> Any:
        raise AssertionError("not used")

    def skip(self, n: int) -> Any:
        raise AssertionError("not used")

    def batches(self, batch_size: int, drop_last: bool = True) -> Any:
        raise AssertionError("not used")


class UnheldStore:
    """Serves a "dataset larger than memory" and counts the rows the run pulls from it."""

    def __init__(self, rows: int = 10**9) -> None:
        self.pulled = [0]
        self.options: list[dict[str, Any]] = []
        self._rows = rows

    def load_dataset(self, name: str, split: str = "train", **options: Any) -> Unheld:
        self.options.append(options)
        return Unheld(self._rows, self.pulled)


def test_a_streamed_run_trains_without_holding_the_dataset() -> None:
    store = UnheldStore()
    cfg = {**FAST, "streaming": True, "max_steps": 6, "shuffle_buffer": 8, "dataset": "big"}
    result = Runtime.run(SlBasic, cfg, manifest="test", ports={"dataset_store": store})
    assert [s["step"] for s in steps(result)] == list(range(1, 7))
    assert all(s["num_sequences"] == 4 for s in steps(result)) and result.state["total_steps"] == 6
    assert store.options == [{"streaming": True}]
    # held out 4 (read again, to skip them, when training starts), 6 x 4 trained, 8 in the shuffle buffer
    assert store.pulled[0] <= 4 + 4 + 6 * 4 + 8 + 1
    assert result.state["rows_by_source"] == {"test": {"big": 4}, "train": {"big": 24}}


def test_streaming_renders_each_batch_when_it_is_taken() -> None:
    store = UnheldStore()
    cfg = {**FAST, "streaming": True, "max_steps": 3, "shuffle_buffer": 2, "dataset": "big",
           "pipeline_depth": 0}
    seen: list[int] = []

    class Watching(CrashAfter):
        def __init__(self) -> None:
            super().__init__(10**6)

        def create_lora_training_client(self, *args: Any, **kwargs: Any) -> Any:
            client = super().create_lora_training_client(*args, **kwargs)
            forward_backward = client.forward_backward

            def watch(data: Any, loss_fn: str, *rest: Any, **kw: Any) -> Any:
                seen.append(store.pulled[0])
                return forward_backward(data, loss_fn, *rest, **kw)

            client.forward_backward = watch
            return client

    Runtime.run(SlBasic, cfg, manifest="test", ports={"dataset_store": store, "training_client": Watching()})
    assert seen == [4 + 4 + 2 + 4 * step for step in range(1, 4)]


def test_streaming_needs_max_steps_and_refuses_epochs() -> None:
    with pytest.raises(ConfigError, match="set max_steps"):
        parse_config(SlBasicConfig, {"streaming": True})
    with pytest.raises(ConfigError, match="num_epochs does not apply"):
        parse_config(SlBasicConfig, {"streaming": True, "max_steps": 3, "num_epochs": 2})
    with pytest.raises(ConfigError, match="max_steps applies to streaming=true"):
        parse_config(SlBasicConfig, {"max_steps": 3})
    with pytest.raises(ConfigError, match="packing=true fills sequences up to max_length"):
        parse_config(SlBasicConfig, {"packing": True, "max_length": None})


@pytest.mark.parametrize("extra", [{}, {"packing": True, "max_length": 300},
                                   {"mixture": [{"dataset": "a", "weight": 2}, {"dataset": "b"}]}],
                         ids=["rows", "packed", "mixture"])
@pytest.mark.parametrize("crash_at", [3, 12])
def test_a_resumed_stream_continues_at_the_next_batch(tmp_path: Path, extra: dict[str, Any], crash_at: int) -> None:
    # 96 noop rows, 8 held out: a pass is 88 rows (11 batches), so the run crosses into a second pass
    cfg = {**FAST, "batch_size": 8, "test_size": 8, "save_every": 2, "streaming": True, "max_steps": 14,
           "shuffle_buffer": 16, "log_path": "run", **extra}
    whole = Runtime.run(SlBasic, cfg, manifest="test", ports=local_blobs(tmp_path / "a"))
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, cfg, manifest="test",
                    ports={**local_blobs(tmp_path / "b"), "training_client": CrashAfter(crash_at)})
    resumed = Runtime.run(SlBasic, cfg, manifest="test", ports=local_blobs(tmp_path / "b"))

    def rows(root: Path) -> list[dict[str, Any]]:
        return metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines())

    assert rows(tmp_path / "b") == rows(tmp_path / "a")
    assert resumed.state["final_checkpoint"] == whole.state["final_checkpoint"]
    assert resumed.state["rows_by_source"]["train"] == whole.state["rows_by_source"]["train"]


def test_the_local_store_streams_jsonl_line_by_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "big" / "train.jsonl", [synthetic_conversation("big", "train", i) for i in range(200)])
    dataset = LocalDatasetStore(tmp_path).load_dataset("big", streaming=True)
    assert isinstance(dataset, LazyDataset)
    with pytest.raises(DatasetError, match="no length"):
        len(dataset)
    assert [r["id"] for r in dataset.take(2)] == ["big-train-0", "big-train-1"]
    result = Runtime.run(SlBasic, {**FAST, "dataset": "big", "streaming": True, "max_steps": 3}, manifest="test",
                         ports={"dataset_store": LocalDatasetStore(tmp_path)})
    assert len(steps(result)) == 3


def test_held_out_rows_are_the_streams_first_and_never_trained_on() -> None:
    store = SyntheticChatDatasetStore(rows=40)
    held, stream = open_stream(store, [Part("s", "train")], seed=3, test_size=5, buffer_size=4)
    assert [p.index for p in held] == [0, 1, 2, 3, 4]
    trained = stream.take(35 * 2)
    assert {p.index for p in trained} == set(range(5, 40)) and stream.position == (1, 35)
    assert [p.index for p in trained[:35]] != [p.index for p in trained[35:]]  # a new shuffle per pass


@settings(max_examples=25, deadline=None)
@given(first=st.integers(0, 60), then=st.integers(1, 20), seed=st.integers(0, 5))
def test_seeking_a_stream_gives_the_same_rows_as_reading_on(first: int, then: int, seed: int) -> None:
    parts = [Part("a", "train", 2.0), Part("b", "train", 1.0)]
    store = SyntheticChatDatasetStore(rows=20)
    _, reading = open_stream(store, parts, seed, test_size=3, buffer_size=5)
    reading.take(first)
    position = reading.position
    expected = reading.take(then)
    _, seeking = open_stream(store, parts, seed, test_size=3, buffer_size=5)
    seeking.seek(*position)
    assert seeking.take(then) == expected


# --- packing --------------------------------------------------------------------------------------


def datum(tokens: list[int], weight: float) -> Datum:
    return Datum(model_input=ModelInput.from_ints(tokens[:-1]), loss_fn_inputs={
        "target_tokens": TensorData.from_numpy(np.asarray(tokens[1:], dtype=np.int64)),
        "weights": TensorData.from_numpy(np.full(len(tokens) - 1, weight, dtype=np.float32))})


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(2, 30), min_size=1, max_size=30), max_length=st.integers(30, 90))
def test_packing_keeps_every_token_and_weight_in_order_within_the_budget(lengths: list[int], max_length: int) -> None:
    datums = [datum([k * 100 + i for i in range(n)], 1.0 / (n - 1)) for k, n in enumerate(lengths)]
    packs = pack_datums(datums, max_length)
    assert sum(p.examples for p in packs) == len(datums)
    assert all(p.datum.model_input.length <= max_length for p in packs)
    tokens = [t for p in packs for t in p.datum.model_input.to_ints()]
    assert tokens == [t for d in datums for t in d.model_input.to_ints()]
    targets = np.concatenate([p.datum.loss_fn_inputs["target_tokens"].to_numpy() for p in packs])
    assert targets.tolist() == [t for d in datums for t in d.loss_fn_inputs["target_tokens"].tolist()]
    weights = np.concatenate([p.datum.loss_fn_inputs["weights"].to_numpy() for p in packs])
    assert np.isclose(weights.sum(), len(datums))  # each example's weights still sum to 1


def test_a_packed_run_counts_sequences_and_examples() -> None:
    result = Runtime.run(SlBasic, {**FAST, "packing": True, "max_length": 600}, manifest="test")
    packing = result.state["packing"]
    assert packing["sequences"] < packing["examples"]
    assert all(s["num_sequences"] == 4 and s["num_examples"] > 4 for s in steps(result))
    assert concat_datums([datum([1, 2, 3], 0.5)]).model_input.to_ints() == [1, 2]


# --- stream tools ---------------------------------------------------------------------------------


@given(items=st.lists(st.integers(), max_size=50), buffer=st.integers(1, 10), seed=st.integers())
def test_buffer_shuffle_is_a_permutation(items: list[int], buffer: int, seed: int) -> None:
    assert sorted(buffer_shuffle(iter(items), buffer, random.Random(seed))) == sorted(items)


def test_interleave_stops_when_the_drawn_stream_runs_out() -> None:
    out = list(interleave([iter(range(3)), iter(range(100, 200))], [1.0, 1.0], random.Random(0)))
    assert [x for k, x in out if k == 0] == [0, 1, 2] and len(out) < 103


def test_dpo_trains_on_a_named_preference_set(tmp_path: Path) -> None:
    from tinkex_cookbook.recipes.dpo import Dpo

    rows = [{"prompt": f"Question {i}?", "response": r, "helpfulness": h}
            for i in range(12) for r, h in ((f"A careful answer {i}.", 4), (f"Dunno {i}.", 1))]
    write_jsonl(tmp_path / "HelpSteer" / "train.jsonl", rows)
    result = Runtime.run(Dpo, {"dataset": "HelpSteer", "batch_size": 2, "test_size": 2, "save_every": 0},
                         manifest="test", ports={"dataset_store": LocalDatasetStore(tmp_path)})
    assert len(steps(result)) == 5
    with pytest.raises(StageError, match="'gsm8k' .* has no preference pairs"):
        write_jsonl(tmp_path / "gsm8k" / "train.jsonl", gsm8k_rows(4))
        Runtime.run(Dpo, {"dataset": "gsm8k", "batch_size": 2, "test_size": 2}, manifest="test",
                    ports={"dataset_store": LocalDatasetStore(tmp_path)})
