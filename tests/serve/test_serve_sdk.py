"""The official Tinker SDK against `serve`: what it trains, saves, loads and samples matches the backend it wraps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tinker
from tinker import types

from tests.serve.conftest import API_KEY
from tinkex_cookbook.adapters.training.tinker_types import to_tinker_datum
from tinkex_cookbook.ports import AdamParams, Datum, ModelInput, SamplingParams, TensorData
from tinkex_cookbook.serve import Fault, LocalTinker

TOKENS = list(range(100, 140))
ADAM = AdamParams(learning_rate=1e-2)


def _datum(offset: int = 0) -> Datum:
    tokens = [t + offset for t in TOKENS]
    return Datum(ModelInput.from_ints(tokens[:-1]), {
        "target_tokens": TensorData.from_list(tokens[1:], "int64"),
        "weights": TensorData.from_list([1.0] * (len(tokens) - 1), "float32"),
    })


BATCH = [_datum(0), _datum(7)]


@pytest.fixture
def sdk(server: LocalTinker) -> Iterator[tinker.ServiceClient]:
    client = tinker.ServiceClient(api_key=API_KEY, base_url=server.base_url)
    yield client
    client.close("success").result()


def _sdk_step(client: tinker.TrainingClient) -> tuple[float, dict[str, float]]:
    fwd = client.forward_backward([to_tinker_datum(d) for d in BATCH], "cross_entropy")
    optim = client.optim_step(types.AdamParams(learning_rate=ADAM.learning_rate))
    return fwd.result().metrics["loss:sum"], optim.result().metrics or {}


def _direct_losses(server: LocalTinker, steps: int) -> list[float]:
    """The same steps straight on the backend the server wraps (same seed, same data)."""
    client = server.api.service.create_lora_training_client("tiny-llama3", rank=4)
    losses = []
    for _ in range(steps):
        fwd = client.forward_backward(BATCH, "cross_entropy")
        client.optim_step(ADAM).result()
        losses.append(fwd.result().metrics["loss:sum"])
    return losses


def test_training_through_the_sdk_matches_the_backend(server: LocalTinker, sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    losses = [_sdk_step(client)[0] for _ in range(3)]
    assert losses == pytest.approx(_direct_losses(server, 3), rel=1e-6)
    assert losses[2] < losses[0]
    info = client.get_info()
    assert (info.model_name, info.lora_rank) == ("tiny-llama3", 4)
    assert info.model_data.tokenizer_id == "meta-llama/Llama-3.2-1B"


def test_forward_output_carries_per_token_logprobs(sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    out = client.forward([to_tinker_datum(d) for d in BATCH], "cross_entropy").result()
    assert len(out.loss_fn_outputs) == 2
    logprobs = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert logprobs.shape == (len(TOKENS) - 1,)
    assert out.metrics["loss:sum"] == pytest.approx(
        -sum(float(o["logprobs"].to_numpy().sum()) for o in out.loss_fn_outputs), rel=1e-5)


def test_save_and_resume_from_state_continues_exactly(sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    _sdk_step(client)
    path = client.save_state("resume-me").result().path
    assert path.startswith("tinker://") and path.endswith("/weights/resume-me")
    expected = _sdk_step(client)
    resumed = sdk.create_training_client_from_state_with_optimizer(path).result()
    assert _sdk_step(resumed) == expected


def test_sampling_from_saved_weights(server: LocalTinker, sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    _sdk_step(client)
    path = client.save_weights_for_sampler("for-sampling").result().path
    sampler = sdk.create_sampling_client(model_path=path).result()
    prompt = types.ModelInput.from_ints(TOKENS[:6])
    params = types.SamplingParams(max_tokens=4, seed=3, temperature=1.0)
    response = sampler.sample(prompt=prompt, num_samples=2, sampling_params=params).result()
    assert [len(s.tokens) for s in response.sequences] == [4, 4]
    assert all(len(s.logprobs) == 4 for s in response.sequences)
    assert len({s.sequence_id for s in response.sequences}) == 2

    backend_path = server.api.resolve(path)["path"]
    direct = server.api.service.create_sampling_client(model_path=backend_path)
    expected = direct.sample(ModelInput.from_ints(TOKENS[:6]), 2, SamplingParams(max_tokens=4, seed=3)).result()
    assert [list(s.tokens) for s in response.sequences] == [list(s.tokens) for s in expected.sequences]

    logprobs = sampler.compute_logprobs(prompt).result()
    assert logprobs[0] is None and len(logprobs) == 6
    assert logprobs[1:] == pytest.approx(list(direct.compute_logprobs(ModelInput.from_ints(TOKENS[:6])).result())[1:],
                                         rel=1e-5)


def test_save_weights_and_get_sampling_client(sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    sampler = client.save_weights_and_get_sampling_client().result()
    response = sampler.sample(prompt=types.ModelInput.from_ints(TOKENS[:4]), num_samples=1,
                              sampling_params=types.SamplingParams(max_tokens=2, seed=0)).result()
    assert len(response.sequences[0].tokens) == 2


def test_a_wrong_key_is_rejected_before_any_work(server: LocalTinker) -> None:
    with pytest.raises(tinker.AuthenticationError):
        tinker.ServiceClient(api_key="tml-wrong", base_url=server.base_url).create_lora_training_client(
            base_model="tiny-llama3", rank=4)


def test_unknown_checkpoint_is_a_clear_error(sdk: tinker.ServiceClient) -> None:
    with pytest.raises(tinker.NotFoundError, match="unknown checkpoint"):
        sdk.create_training_client_from_state_with_optimizer("tinker://nobody:train:0/weights/missing").result()


@pytest.mark.parametrize("fault", [
    Fault("/api/v1/forward_backward", "status", status=503, times=2, retry_after_ms=10),
    Fault("/api/v1/forward_backward", "status", status=429, times=2, retry_after_ms=10),
    Fault("/api/v1/optim_step", "lose_response", status=502, times=1, retry_after_ms=10),
    Fault("/api/v1/forward_backward", "lose_response", status=500, times=1, retry_after_ms=10),
    Fault("/api/v1/forward_backward", "reset", times=1),
    Fault("/api/v1/retrieve_future", "status", status=503, times=2, retry_after_ms=10),
], ids=["503-burst", "429-burst", "optim-reply-lost", "fwdbwd-reply-lost", "connection-reset", "poll-503"])
def test_transient_faults_are_retried_without_applying_work_twice(
    server: LocalTinker, sdk: tinker.ServiceClient, fault: Fault
) -> None:
    expected = _direct_losses(server, 2)
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    server.faults.add(fault)
    results = [_sdk_step(client) for _ in range(2)]
    assert fault.fired == fault.times
    assert [loss for loss, _ in results] == pytest.approx(expected, rel=1e-6)
    assert [metrics["optim_steps"] for _, metrics in results] == [1.0, 2.0]


def test_a_request_the_backend_refuses_fails_at_once_as_a_user_error(sdk: tinker.ServiceClient) -> None:
    client = sdk.create_lora_training_client(base_model="tiny-llama3", rank=4).result()
    future = client.forward_backward([to_tinker_datum(d) for d in BATCH], "no_such_loss")
    with pytest.raises(tinker.RequestFailedError, match="no_such_loss") as caught:
        future.result(timeout=30)
    assert caught.value.category == types.RequestErrorCategory.User
