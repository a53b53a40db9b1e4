"""Adapter building and the noop backends, beyond the conformance checks in ``test_ports.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import AdapterUnavailableError
from tinkex_cookbook.adapters.datasets.noop import SyntheticChatDatasetStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.ports import (
    PORT_NAMES,
    AdamParams,
    DatasetStore,
    Datum,
    ModelInput,
    SamplingParams,
    TensorData,
)
from tinkex_cookbook.runtime import ADAPTERS, Runtime, Settings

UNSHIPPED = [entry for entry in ADAPTERS.entries() if not entry.shipped]


def datum(tokens: list[int], weights: list[float] | None = None) -> Datum:
    return Datum(
        ModelInput.from_ints(tokens[:-1]),
        {"target_tokens": TensorData.from_list(tokens[1:], "int64"),
         "weights": TensorData.from_list(weights or [1.0] * (len(tokens) - 1), "float32")},
    )


def fresh_client():
    service = NoopTrainingService()
    return service, service.create_lora_training_client("base-model", rank=4)


# --- building adapters ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", UNSHIPPED, ids=lambda e: f"{e.port}-{e.name}")
def test_unshipped_adapter_refuses_to_build_and_says_which(entry) -> None:
    with pytest.raises(AdapterUnavailableError) as caught:  # its factory would raise AssertionError
        entry.build(entry.options(), Settings())
    assert repr(entry.name) in str(caught.value) and repr(entry.port) in str(caught.value)


def test_local_adapters_fall_back_to_the_settings_directories(tmp_path: Path) -> None:
    settings = Settings(log_dir=str(tmp_path / "logs"), data_dir=str(tmp_path / "data"))
    blobs = ADAPTERS.get("blob_store", "local")
    datasets = ADAPTERS.get("dataset_store", "local")
    assert blobs.build(blobs.options(), settings).root == tmp_path / "logs"
    assert datasets.build(datasets.options(), settings).root == tmp_path / "data"
    assert list(tmp_path.iterdir()) == []  # nothing is created until something is written


def test_ports_bundle_gets_each_port_by_name() -> None:
    with Runtime.open("test") as ports:
        assert [type(ports.get(name)).__name__ for name in PORT_NAMES] == [
            "NoopTrainingService", "SyntheticChatDatasetStore", "MemoryBlobStore", "NoopHubClient",
            "NoopLLMClient", "NoopEmbeddingClient", "MemoryVectorStore",
        ]


# --- noop training --------------------------------------------------------------------------


def test_zero_weights_give_zero_loss() -> None:
    _, client = fresh_client()
    out = client.forward_backward([datum([5, 6, 7], [0.0, 0.0])], "cross_entropy").result()
    assert out.metrics["loss:sum"] == 0.0


def test_forward_and_forward_backward_agree_and_forward_trains_nothing() -> None:
    _, client = fresh_client()
    batch = [datum([1, 2, 3, 4]), datum([9, 10])]
    first = client.forward(batch, "cross_entropy").result()
    again = client.forward_backward(batch, "cross_entropy").result()
    assert first.metrics == again.metrics
    assert [o["logprobs"] for o in first.loss_fn_outputs] == [o["logprobs"] for o in again.loss_fn_outputs]


def test_loss_sum_is_additive_over_the_batch() -> None:
    _, client = fresh_client()
    a, b = datum([1, 2, 3]), datum([4, 8, 15, 16])
    total = client.forward([a, b], "cross_entropy").result().metrics["loss:sum"]
    parts = [client.forward([d], "cross_entropy").result().metrics["loss:sum"] for d in (a, b)]
    assert total == pytest.approx(sum(parts))


def test_loss_keeps_falling_step_after_step() -> None:
    _, client = fresh_client()
    losses = []
    for _ in range(5):
        losses.append(client.forward_backward([datum([3, 1, 4, 1, 5])], "cross_entropy").result().metrics["loss:sum"])
        client.optim_step(AdamParams()).result()
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == 5


def test_loading_an_unknown_checkpoint_fails_and_keeps_the_state() -> None:
    _, client = fresh_client()
    client.optim_step(AdamParams()).result()
    before = client.forward([datum([1, 2])], "cross_entropy").result().metrics
    with pytest.raises(FileNotFoundError, match="noop://nowhere"):
        client.load_state("noop://nowhere")
    assert client.forward([datum([1, 2])], "cross_entropy").result().metrics == before


def test_sampler_of_trained_weights_scores_tokens_higher_than_the_base() -> None:
    service, client = fresh_client()
    prompt = ModelInput.from_ints([10, 20, 30])
    base = service.create_sampling_client(base_model="base-model").compute_logprobs(prompt).result()
    for _ in range(3):
        client.optim_step(AdamParams()).result()
    trained = client.save_weights_and_get_sampling_client("t").compute_logprobs(prompt).result()
    assert base[0] is None and trained[0] is None
    assert all(t > b for t, b in zip(trained[1:], base[1:]))


def test_samples_have_the_requested_shape_and_differ_by_index() -> None:
    _, client = fresh_client()
    sampler = client.save_weights_and_get_sampling_client("s")
    response = sampler.sample(ModelInput.from_ints([1]), 3, SamplingParams()).result()
    assert len(response.sequences) == 3
    assert all(len(s.tokens) == 16 == len(s.logprobs) for s in response.sequences)  # default max_tokens
    assert len({s.tokens for s in response.sequences}) == 3
    assert all(32 <= t < 127 for s in response.sequences for t in s.tokens)


def test_sample_depends_on_the_prompt() -> None:
    _, client = fresh_client()
    sampler = client.save_weights_and_get_sampling_client("s")
    params = SamplingParams(max_tokens=8, seed=0)
    one = sampler.sample(ModelInput.from_ints([1, 2]), 1, params).result().sequences[0].tokens
    two = sampler.sample(ModelInput.from_ints([2, 1]), 1, params).result().sequences[0].tokens
    assert one != two


def test_model_info_names_the_base_model_and_rank() -> None:
    _, client = fresh_client()
    info = client.get_info()
    assert (info.base_model, info.lora_rank) == ("base-model", 4)


# --- noop datasets --------------------------------------------------------------------------


def test_synthetic_store_is_deterministic_and_sized_by_its_option() -> None:
    store = SyntheticChatDatasetStore(rows=10)
    assert isinstance(store, DatasetStore)
    first, again = store.load_dataset("d").to_list(), store.load_dataset("d").to_list()
    assert first == again and len(first) == 10
    assert store.load_dataset("d", "test").to_list() != first


def test_synthetic_store_honours_limit_like_the_other_stores() -> None:
    store = SyntheticChatDatasetStore(rows=10)
    assert len(store.load_dataset("d", limit=3)) == 3


# --- value types ----------------------------------------------------------------------------


@given(st.lists(st.integers(0, 2**40), max_size=30), st.integers(0, 2**40))
@settings(max_examples=100)
def test_model_input_round_trips_ints_and_appends(tokens: list[int], extra: int) -> None:
    model_input = ModelInput.from_ints(tokens)
    assert model_input.to_ints() == tokens and model_input.length == len(tokens)
    longer = model_input.append_int(extra)
    assert longer.to_ints() == [*tokens, extra] and longer.length == len(tokens) + 1
    assert model_input.to_ints() == tokens  # frozen: append returns a new input


@given(st.integers(0, 5), st.integers(1, 5), st.data())
@settings(max_examples=100)
def test_tensor_data_round_trips_through_numpy(rows: int, cols: int, data) -> None:
    values = data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=rows * cols, max_size=rows * cols))
    array = np.asarray(values, dtype=np.int64).reshape(rows, cols)
    tensor = TensorData.from_numpy(array)
    assert tensor.dtype == "int64" and tensor.shape == (rows, cols)
    assert np.array_equal(tensor.to_numpy(), array) and tensor == TensorData.from_numpy(array.copy())
    assert tensor.tolist() == array.tolist()


def test_tensor_data_dtype_shape_and_equality_rules() -> None:
    floats = TensorData.from_numpy(np.array([[0.5, 1.5]], dtype=np.float64))
    assert floats.dtype == "float32" and floats.shape == (1, 2) and floats.data.dtype == np.float32
    assert floats != TensorData.from_list([0.5, 1.5], "float32")  # same data, other shape
    assert TensorData.from_list([1, 2], "int64") != TensorData.from_list([1, 2], "float32")
    assert TensorData.from_numpy(np.array(7)).to_numpy().shape == ()
    assert floats.__eq__([0.5, 1.5]) is NotImplemented
    with pytest.raises(TypeError):
        hash(floats)


def test_datum_defaults_to_no_loss_inputs() -> None:
    assert Datum(ModelInput.from_ints([1])).loss_fn_inputs == {}
