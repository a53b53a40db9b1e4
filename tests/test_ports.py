"""Every shipped adapter satisfies its port; the noop backends behave as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.embeddings.noop import NoopEmbeddingClient
from tinkex_cookbook.adapters.hub.noop import NoopHubClient
from tinkex_cookbook.adapters.llm.noop import NoopLLMClient
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.adapters.vectors.memory import MemoryVectorStore
from tinkex_cookbook.ports import (
    PORT_PROTOCOLS,
    AdamParams,
    Datum,
    ModelInput,
    SamplingClient,
    SamplingParams,
    TensorData,
    TrainingClient,
)
from tinkex_cookbook.runtime import ADAPTERS, Settings

SHIPPED = [entry for entry in ADAPTERS.entries() if entry.shipped]


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: f"{e.port}-{e.name}")
def test_shipped_adapter_satisfies_its_port(entry, tmp_path: Path) -> None:
    given = {"root": str(tmp_path), "base_url": "http://127.0.0.1:9", "bucket": "b", "endpoint_url": "http://127.0.0.1:9"}
    options = entry.options(**{k: v for k, v in given.items() if k in entry.options.model_fields})
    needed = {port: MemoryBlobStore() for port in entry.needs}
    adapter = entry.build(options, Settings(tinker_api_key="tml-test"), **needed)
    assert isinstance(adapter, PORT_PROTOCOLS[entry.port])
    close = getattr(adapter, "close", None)
    if callable(close):
        close()


def datum(tokens: list[int]) -> Datum:
    return Datum(
        ModelInput.from_ints(tokens[:-1]),
        {"target_tokens": TensorData.from_list(tokens[1:], "int64"),
         "weights": TensorData.from_list([1.0] * (len(tokens) - 1), "float32")},
    )


@pytest.fixture
def client() -> TrainingClient:
    return NoopTrainingService().create_lora_training_client("base", rank=8)


def loss(client: TrainingClient, tokens: list[int]) -> float:
    return client.forward_backward([datum(tokens)], "cross_entropy").result().metrics["loss:sum"]


def test_noop_loss_depends_on_input_and_falls_with_steps(client: TrainingClient) -> None:
    assert isinstance(client, TrainingClient)
    assert loss(client, [1, 2, 3, 4]) != loss(client, [1, 5, 6, 12])
    before = loss(client, [1, 2, 3, 4])
    client.optim_step(AdamParams(learning_rate=1e-4)).result()
    assert loss(client, [1, 2, 3, 4]) < before


def test_noop_outputs_are_well_formed(client: TrainingClient) -> None:
    out = client.forward([datum([1, 2, 3]), datum([4, 5])], "cross_entropy").result()
    assert [o["logprobs"].shape for o in out.loss_fn_outputs] == [(2,), (1,)]
    assert all((o["logprobs"].to_numpy() < 0).all() for o in out.loss_fn_outputs)


def test_noop_state_round_trips(client: TrainingClient) -> None:
    path = client.save_state("a").result().path
    before = loss(client, [1, 2, 3])
    client.optim_step(AdamParams()).result()
    assert loss(client, [1, 2, 3]) != before
    client.load_state(path).result()
    assert loss(client, [1, 2, 3]) == before


def test_noop_sampling_is_deterministic_per_seed(client: TrainingClient) -> None:
    sampler = client.save_weights_and_get_sampling_client("s")
    assert isinstance(sampler, SamplingClient)
    prompt = ModelInput.from_ints([1, 2, 3])

    def draw(seed: int) -> tuple:
        response = sampler.sample(prompt, 2, SamplingParams(max_tokens=5, seed=seed)).result()
        return tuple(s.tokens for s in response.sequences)

    assert draw(1) == draw(1) != draw(2)
    assert all(len(tokens) == 5 for tokens in draw(1))
    logprobs = sampler.compute_logprobs(prompt).result()
    assert logprobs[0] is None and len(logprobs) == 3


def test_noop_service_records_calls(client: TrainingClient) -> None:
    service = NoopTrainingService()
    trainer = service.create_lora_training_client("m", rank=4)
    trainer.forward_backward([datum([1, 2])], "cross_entropy")
    trainer.optim_step(AdamParams())
    assert [name for name, _ in service.calls] == ["create_lora_training_client", "forward_backward", "optim_step"]


def test_model_input_and_tensor_data() -> None:
    model_input = ModelInput.from_ints([1, 2]).append_int(3)
    assert model_input.to_ints() == [1, 2, 3] and model_input.length == 3
    assert ModelInput.empty().length == 0
    tensor = TensorData.from_numpy(np.arange(6).reshape(2, 3))
    assert tensor.dtype == "int64" and tensor.shape == (2, 3)
    assert np.array_equal(tensor.to_numpy(), np.arange(6).reshape(2, 3))
    assert tensor == TensorData.from_numpy(np.arange(6).reshape(2, 3))
    assert tensor != TensorData.from_list(list(range(6)), "int64")
    assert TensorData.from_list([0.5], "float32").tolist() == [0.5]


def test_noop_llm_embeddings_vectors_hub(tmp_path: Path) -> None:
    assert NoopLLMClient(reply="yes").complete([{"role": "user", "content": "?"}]).text == "yes"
    assert NoopLLMClient().complete([{"role": "user", "content": "hi"}]).text == "noop: hi"
    embed = NoopEmbeddingClient(dimension=8)
    a, b = embed.embed(["cat", "dog"])
    assert embed.embed(["cat"]) == [a] and len(a) == 8 and a != b
    store = MemoryVectorStore()
    store.upsert(["a", "b"], [a, b], [{"k": 1}, {"k": 2}])
    best = store.query(a, k=1)[0]
    assert best.id == "a" and best.score == pytest.approx(1.0) and best.metadata == {"k": 1}
    store.delete(["a"])
    assert [m.id for m in store.query(a, k=5)] == ["b"]
    hub = NoopHubClient(repos={"org/m": {"config.json": b"{}"}})
    assert hub.download("org/m", "config.json").read_bytes() == b"{}"
    assert hub.model_info("org/m").files == ("config.json",)
    with pytest.raises(LookupError, match="org/other"):
        hub.download("org/other", "x")
    (tmp_path / "w.bin").write_bytes(b"w")
    hub.upload(tmp_path / "w.bin", "org/m")
    assert hub.model_info("org/m").files == ("config.json", "w.bin")
