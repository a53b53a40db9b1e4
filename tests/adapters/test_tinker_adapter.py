"""The ``tinker`` training adapter, against hand-written fakes of the SDK's clients (no server).

The fakes speak the SDK 0.38 duck type: ``create_*`` return futures of clients, every
training and sampling call returns a future whose ``future()`` is a
``concurrent.futures.Future``, and the values are the SDK's own types. Exceptions are
real SDK exceptions built on httpx requests and responses.
"""

from __future__ import annotations

import inspect
import logging
import pickle
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

tinker = pytest.importorskip("tinker")
httpx = pytest.importorskip("httpx")

from tinker.lib.backcompat_concurrent_future import _AwaitableFutureCompatWrapper
from tinker.lib.public_interfaces.api_future import AwaitableConcurrentFuture
from tinker.lib.public_interfaces.backcompat_training_client_future import (
    BackcompatTrainingClientFuture,
)

from tinkex_cookbook import MissingSecretError, Runtime, Settings
from tinkex_cookbook.adapters.training.tinker import (
    TinkerFuture,
    TinkerSamplingClient,
    TinkerTrainingClient,
    TinkerTrainingService,
)
from tinkex_cookbook.errors import (
    ConfigError,
    ManifestError,
    TrainingBackendError,
    UnknownNameError,
)
from tinkex_cookbook.ports import (
    AdamParams,
    APIFuture,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SamplingClient,
    SamplingParams,
    SaveStateResponse,
    TensorData,
    TrainingClient,
    TrainingService,
)

KEY = "tml-SECRET-0123456789abcdef"
BASE = "https://tinker.example.test/services/tinker-test"
MODEL_ID = "sess-1:train:0"
BASE_MODEL = "meta-llama/Llama-3.2-1B"
INFO = tinker.types.GetInfoResponse(
    model_id=MODEL_ID, lora_rank=8,
    model_data=tinker.types.ModelData(model_name=BASE_MODEL, tokenizer_id="thinkingmachineslabinc/llama-3-tok"),
)
LOGPROBS = tinker.TensorData.from_numpy(np.array([-1.0, -0.5], dtype=np.float32))
FWD_BWD = tinker.types.ForwardBackwardOutput(
    loss_fn_output_type="cross_entropy", loss_fn_outputs=[{"logprobs": LOGPROBS}], metrics={"loss:sum": 1.5},
)
SAMPLE = tinker.types.SampleResponse(
    sequences=[tinker.types.SampledSequence(stop_reason="stop", sequence_id="s0", tokens_np=np.array([4, 5]),
                                            logprobs_np=np.array([-0.25, -0.5]))],
)
ANSWERS: dict[str, Any] = {
    "forward_backward": FWD_BWD,
    "forward": FWD_BWD,
    "optim_step": tinker.types.OptimStepResponse(metrics={"grad_norm": 0.5}),
    "save_state": tinker.types.SaveWeightsResponse(path=f"tinker://{MODEL_ID}/weights/step-1"),
    "save_weights_for_sampler": tinker.types.SaveWeightsForSamplerResponse(
        path=f"tinker://{MODEL_ID}/sampler_weights/step-1"),
    "load_state": tinker.types.LoadWeightsResponse(path=f"tinker://{MODEL_ID}/weights/step-1"),
    "sample": SAMPLE,
    "compute_logprobs": [None, -0.5],
}
DATUM = Datum(
    ModelInput.from_ints([1, 2, 3]),
    {"target_tokens": TensorData.from_list([2, 3, 4], "int64"), "weights": TensorData.from_list([0, 1, 1], "float32")},
)


# -- fakes -------------------------------------------------------------------------------------------


class FakeFuture:
    """Like the SDK's futures: ``future()`` is the ``concurrent.futures.Future`` that completes."""

    def __init__(self, value: Any = inspect.Parameter.empty) -> None:
        self._future: Future[Any] = Future()
        if value is not inspect.Parameter.empty:
            self._future.set_result(value)

    def future(self) -> Future[Any]:
        return self._future

    def result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout)


class Fail:
    """An answer that makes the request's future fail with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class FakeSDK:
    """Shared by the fake clients: records calls, answers each with a future.

    An answer that is an exception is raised at submission; ``Fail(e)`` fails the future;
    anything else is the future's value, at once, or when ``release()`` runs if ``hold``.
    """

    def __init__(self, answers: dict[str, Any] | None = None, hold: bool = False) -> None:
        self.answers = {**ANSWERS, **(answers or {})}
        self.hold = hold
        self.calls: list[tuple[str, tuple, dict]] = []
        self.held: list[tuple[Future[Any], Any]] = []

    def _answer(self, name: str, *args: Any, **kwargs: Any) -> FakeFuture:
        self.calls.append((name, args, kwargs))
        answer = self.answers[name]
        if isinstance(answer, BaseException):
            raise answer
        future = FakeFuture()
        if isinstance(answer, Fail):
            future.future().set_exception(answer.error)
        elif self.hold:
            self.held.append((future.future(), answer))
        else:
            future.future().set_result(answer)
        return future

    def release(self) -> None:
        for future, answer in self.held:
            future.set_result(answer)
        self.held.clear()


class FakeTrainingClient(FakeSDK):
    def __init__(self, info: Any = INFO, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.info = info

    def get_info(self) -> Any:
        return self.info

    def forward_backward(self, data: list, loss_fn: str, loss_fn_config: dict | None = None) -> FakeFuture:
        return self._answer("forward_backward", data, loss_fn, loss_fn_config)

    def forward(self, data: list, loss_fn: str, loss_fn_config: dict | None = None) -> FakeFuture:
        return self._answer("forward", data, loss_fn, loss_fn_config)

    def optim_step(self, optim_params: Any) -> FakeFuture:
        return self._answer("optim_step", optim_params)

    def save_state(self, name: str) -> FakeFuture:
        return self._answer("save_state", name)

    def save_weights_for_sampler(self, name: str) -> FakeFuture:
        return self._answer("save_weights_for_sampler", name)

    def _load_state_impl(self, path: str, optimizer: bool, weights_access_token: str | None) -> FakeFuture:
        return self._answer("load_state", path, optimizer=optimizer, weights_access_token=weights_access_token)


class FakeSamplingClient(FakeSDK):
    def sample(self, prompt: Any, num_samples: int, sampling_params: Any) -> FakeFuture:
        return self._answer("sample", prompt, num_samples, sampling_params)

    def compute_logprobs(self, prompt: Any) -> FakeFuture:
        return self._answer("compute_logprobs", prompt)


class FakeServiceClient:
    """``tinker.ServiceClient``'s duck type. Each ``create_lora_training_client`` takes the next
    outcome (the last one repeats): an exception is raised, a ``FakeFuture`` returned as it is,
    anything else returned as a finished future of it."""

    def __init__(self, *outcomes: Any, sampler: Any = None, close_error: Exception | None = None) -> None:
        self.outcomes = list(outcomes) or [FakeTrainingClient()]
        self.sampler = sampler or FakeSamplingClient()
        self.close_error = close_error
        self.creates: list[tuple[str, int, int | None]] = []
        self.samplers: list[tuple[str | None, str | None]] = []
        self.closed: list[str] = []

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        self.creates.append((base_model, rank, seed))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if isinstance(outcome, FakeFuture | tinker.APIFuture) else FakeFuture(outcome)

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None) -> FakeFuture:
        self.samplers.append((model_path, base_model))
        return FakeFuture(self.sampler)

    def close(self, status: str) -> FakeFuture:
        self.closed.append(status)
        if self.close_error is not None:
            raise self.close_error
        return FakeFuture(None)


def make_service(fake: FakeServiceClient | None = None, **kwargs: Any) -> TinkerTrainingService:
    kwargs.setdefault("backoff", 0.0)
    return TinkerTrainingService(KEY, BASE, service_client=fake or FakeServiceClient(), **kwargs)


def make_client(sdk: FakeTrainingClient | None = None, **kwargs: Any) -> TinkerTrainingClient:
    return make_service(FakeServiceClient(sdk or FakeTrainingClient()), **kwargs).create_lora_training_client(
        BASE_MODEL, rank=8, seed=3)


def http_error(cls: type, status: int, path: str = "/api/v1/create_model", body: Any = None) -> Exception:
    """A real SDK status error, as the SDK's HTTP client raises it."""
    body = {"detail": "nope"} if body is None else body
    request = httpx.Request("POST", BASE + path)
    return cls(f"Error code: {status} - {body}", response=httpx.Response(status, request=request, json=body),
               body=body)


def connection_error(cls: type = tinker.APIConnectionError) -> Exception:
    return cls(request=httpx.Request("POST", BASE + "/api/v1/create_session"))


def polled(error: Exception) -> ValueError:
    """How the SDK reports a fatal status while polling a future: a ValueError from the HTTP error."""
    try:
        raise ValueError(f"Error retrieving result: {error} with status {error.status_code}") from error
    except ValueError as exc:
        return exc


def user_failure() -> Exception:
    return tinker.RequestFailedError("Request failed: target_tokens is too long", request_id="req-9",
                                     category=tinker.types.RequestErrorCategory.User)


# -- the key ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-SECRET-0123456789", "tml_SECRET", " tml-SECRET-1", "tml-SECRET-1\n", ""])
def test_a_key_the_sdk_would_refuse_is_a_config_error_that_does_not_show_it(key: str) -> None:
    fake = FakeServiceClient()
    with pytest.raises(ConfigError, match="TINKER_API_KEY") as caught:
        TinkerTrainingService(key, BASE, service_client=fake)
    if key.strip():
        assert key.strip() not in str(caught.value) and "SECRET" not in repr(caught.value)
    assert "tml-" in str(caught.value) and caught.value.__cause__ is None and fake.creates == []


def test_tinker_keys_and_tinker_issued_jwts_are_accepted() -> None:
    for key in (KEY, "eyJhbGciOiJFUzI1NiJ9.e30.sig"):
        assert TinkerTrainingService(key, BASE, service_client=FakeServiceClient()).base_url == BASE


def test_no_repr_shows_the_key() -> None:
    sdk = FakeTrainingClient(hold=True)
    service = make_service(FakeServiceClient(sdk))
    client = service.create_lora_training_client(BASE_MODEL)
    sampler = service.create_sampling_client(base_model=BASE_MODEL)
    future = client.forward_backward([DATUM], "cross_entropy")
    shown = [repr(service), str(service), repr(client), repr(sampler), repr(service._edge)]
    assert repr(service) == f"TinkerTrainingService(base_url={BASE!r})"
    assert all(BASE in text for text in shown) and repr(future).startswith("TinkerFuture('forward_backward")
    assert not any(KEY in text or "SECRET" in text for text in [*shown, repr(future), repr(vars(client))])


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"request_timeout": 0}, "request_timeout"), ({"connect_attempts": 0}, "connect_attempts"),
     ({"backoff": -1}, "backoff")],
)
def test_bad_numbers_are_config_errors(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        make_service(**kwargs)
    with pytest.raises(ConfigError, match="TINKER_BASE_URL"):
        TinkerTrainingService(KEY, " ", service_client=FakeServiceClient())


# -- submission never waits -------------------------------------------------------------------------


def test_calls_return_pending_futures_at_once_and_apply_in_submission_order() -> None:
    sdk = FakeTrainingClient(hold=True)
    client = make_client(sdk)
    step1 = client.forward_backward([DATUM], "cross_entropy")
    optim1 = client.optim_step(AdamParams(learning_rate=2e-4))
    step2 = client.forward_backward([DATUM], "cross_entropy")  # submitted before step 1 is awaited
    assert [name for name, _, _ in sdk.calls] == ["forward_backward", "optim_step", "forward_backward"]
    assert not any(f.done() for f in (step1, optim1, step2))
    sdk.release()
    assert all(f.done() for f in (step1, optim1, step2))
    assert step1.result().metrics == {"loss:sum": 1.5}
    assert step1.result() is step1.result()  # converted once, cached
    assert optim1.result() == OptimStepResponse({"grad_norm": 0.5})


def test_futures_satisfy_the_port_protocols() -> None:
    service = make_service()
    client = service.create_lora_training_client(BASE_MODEL)
    sampler = service.create_sampling_client(base_model=BASE_MODEL)
    assert isinstance(service, TrainingService) and isinstance(client, TrainingClient)
    assert isinstance(sampler, SamplingClient) and isinstance(sampler, TinkerSamplingClient)
    assert isinstance(client.optim_step(AdamParams()), APIFuture)


def test_the_sdks_own_future_types_are_waited_on_without_warnings() -> None:
    """The SDK's sample futures warn (FutureWarning) on ``done()``; this suite runs with -W error."""
    inner: Future[Any] = Future()
    wrapped = _AwaitableFutureCompatWrapper(inner)
    future = TinkerFuture(wrapped, list, "sample from x", make_service()._edge)
    assert not future.done()
    inner.set_result((1, 2))
    assert future.done() and future.result() == [1, 2]
    ready: Future[Any] = Future()
    ready.set_result(FakeTrainingClient())
    service = make_service(FakeServiceClient(BackcompatTrainingClientFuture(AwaitableConcurrentFuture(ready))))
    assert service.create_lora_training_client(BASE_MODEL).get_info().model_id == MODEL_ID


# -- conversions through the wrappers ---------------------------------------------------------------


def test_forward_backward_and_forward_send_sdk_datums_and_return_our_types() -> None:
    sdk = FakeTrainingClient()
    client = make_client(sdk)
    output = client.forward_backward([DATUM], "importance_sampling", {"clip": 0.2}).result()
    assert output == ForwardBackwardOutput(
        "cross_entropy", ({"logprobs": TensorData.from_list([-1.0, -0.5], "float32")},), {"loss:sum": 1.5},
    )
    assert client.forward([DATUM], "cross_entropy").result().loss_fn_output_type == "cross_entropy"
    (_, (data, loss_fn, config), _), (_, (_, _, no_config), _) = sdk.calls
    assert isinstance(data[0], tinker.Datum) and data[0].model_input.to_ints() == [1, 2, 3]
    assert data[0].loss_fn_inputs["target_tokens"].to_numpy().tolist() == [2, 3, 4]
    assert (loss_fn, config, no_config) == ("importance_sampling", {"clip": 0.2}, None)


def test_optimizer_checkpoints_and_info_convert() -> None:
    sdk = FakeTrainingClient()
    service = make_service(FakeServiceClient(sdk))
    client = service.create_lora_training_client(BASE_MODEL, rank=8, seed=3)
    assert service._client.creates == [(BASE_MODEL, 8, 3)]
    assert client.optim_step(AdamParams(learning_rate=3e-4, grad_clip_norm=1.0)).result().metrics == {"grad_norm": 0.5}
    adam = sdk.calls[-1][1][0]
    assert isinstance(adam, tinker.AdamParams) and (adam.learning_rate, adam.grad_clip_norm) == (3e-4, 1.0)
    assert client.save_state("step-1").result() == SaveStateResponse(f"tinker://{MODEL_ID}/weights/step-1")
    assert client.save_weights_for_sampler("s1").result().path.startswith("tinker://")
    assert client.load_state("tinker://x/weights/step-1").result() == LoadStateResponse(
        f"tinker://{MODEL_ID}/weights/step-1")
    assert sdk.calls[-1] == ("load_state", ("tinker://x/weights/step-1",),
                             {"optimizer": True, "weights_access_token": None})
    assert client.get_info() == ModelInfo(MODEL_ID, BASE_MODEL, 8, "thinkingmachineslabinc/llama-3-tok")


def test_optim_step_without_metrics_gives_empty_metrics() -> None:
    client = make_client(FakeTrainingClient(answers={"optim_step": tinker.types.OptimStepResponse()}))
    assert client.optim_step(AdamParams()).result() == OptimStepResponse({})


def test_load_state_restores_the_optimizer_through_duck_typed_clients_too() -> None:
    class OlderClient(FakeTrainingClient):
        _load_state_impl = None  # type: ignore[assignment]

        def load_state_with_optimizer(self, path: str) -> FakeFuture:
            return self._answer("load_state", path, with_optimizer=True)

    sdk = OlderClient(answers={"load_state": tinker.types.LoadWeightsResponse()})
    assert make_client(sdk).load_state("tinker://x/weights/a").result() == LoadStateResponse("tinker://x/weights/a")
    assert sdk.calls[-1] == ("load_state", ("tinker://x/weights/a",), {"with_optimizer": True})


def test_sampling_converts_prompt_params_and_response() -> None:
    sampler = FakeSamplingClient(answers={"sample": tinker.types.SampleResponse(
        sequences=SAMPLE.sequences, prompt_logprobs_np=np.array([np.nan, -0.5], dtype=np.float32))})
    fake = FakeServiceClient(sampler=sampler)
    client = make_service(fake).create_sampling_client(model_path="tinker://m/sampler_weights/s1")
    response = client.sample(ModelInput.from_ints([7, 8]), 2, SamplingParams(max_tokens=5, stop=(9,))).result()
    assert response.sequences[0].tokens == (4, 5) and response.sequences[0].logprobs == (-0.25, -0.5)
    assert response.prompt_logprobs == (None, -0.5)
    _, (prompt, num_samples, params), _ = sampler.calls[0]
    assert isinstance(prompt, tinker.ModelInput) and prompt.to_ints() == [7, 8] and num_samples == 2
    assert isinstance(params, tinker.SamplingParams) and (params.max_tokens, params.stop) == (5, [9])
    assert client.compute_logprobs(ModelInput.from_ints([7, 8])).result() == [None, -0.5]
    assert fake.samplers == [("tinker://m/sampler_weights/s1", None)]


def test_save_weights_and_get_sampling_client_samples_from_the_named_weights() -> None:
    sdk = FakeTrainingClient()
    fake = FakeServiceClient(sdk)
    client = make_service(fake).create_lora_training_client(BASE_MODEL)
    sampler = client.save_weights_and_get_sampling_client("eval-1")
    assert sdk.calls[-1] == ("save_weights_for_sampler", ("eval-1",), {})
    assert fake.samplers == [(f"tinker://{MODEL_ID}/sampler_weights/step-1", None)]
    assert sampler.sample(ModelInput.from_ints([1]), 1, SamplingParams()).result().sequences


def test_tokenizer_comes_from_packaged_sources_by_tokenizer_id_then_base_model() -> None:
    client = make_client()  # the server's tokenizer id is not packaged: the base model's is
    tokenizer = client.get_tokenizer()
    assert tokenizer.vocab_size == 128257 and client.get_tokenizer() is tokenizer
    info = tinker.types.GetInfoResponse(model_id="m", model_data=tinker.types.ModelData(
        model_name="org/unknown-model", tokenizer_id="Qwen/Qwen3-8B"))
    assert make_client(FakeTrainingClient(info)).get_tokenizer().vocab_size == 151669
    unknown = tinker.types.GetInfoResponse(model_id="m", model_data=tinker.types.ModelData(model_name="org/nope"))
    with pytest.raises(UnknownNameError, match="org/nope"):
        make_client(FakeTrainingClient(unknown)).get_tokenizer()


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    http_error(tinker.AuthenticationError, 401, "/api/v1/client/config"),
    http_error(tinker.PermissionDeniedError, 403, "/api/v1/create_session"),
    polled(http_error(tinker.AuthenticationError, 401, "/api/v1/retrieve_future")),
])
def test_a_rejected_key_is_a_config_error_at_once(error: Exception) -> None:
    fake = FakeServiceClient(error)
    with pytest.raises(ConfigError) as caught:
        make_service(fake, connect_attempts=5).create_lora_training_client(BASE_MODEL)
    message = str(caught.value)
    status = str(error.status_code if hasattr(error, "status_code") else 401)
    assert "TINKER_API_KEY was rejected by" in message and BASE in message and status in message
    assert "export TINKER_API_KEY" in message and KEY not in message and len(fake.creates) == 1


def test_a_rejected_key_mid_run_is_a_config_error_too() -> None:
    failure = polled(http_error(tinker.PermissionDeniedError, 403, "/api/v1/retrieve_future"))
    client = make_client(FakeTrainingClient(answers={"forward_backward": Fail(failure)}))
    with pytest.raises(ConfigError, match=r"HTTP 403\) during forward_backward on model"):
        client.forward_backward([DATUM], "cross_entropy").result()


def test_transient_errors_are_retried_up_to_connect_attempts_then_name_the_request() -> None:
    fake = FakeServiceClient(http_error(tinker.InternalServerError, 503), connection_error(),
                             http_error(tinker.RateLimitError, 429))
    with pytest.raises(TrainingBackendError) as caught:
        make_service(fake, connect_attempts=3).create_lora_training_client("Qwen/Qwen3-8B")
    message = str(caught.value)
    assert f"create_lora_training_client for Qwen/Qwen3-8B failed at {BASE} (HTTP 429) after 3 attempts" in message
    assert "Hint:" in message and len(fake.creates) == 3
    assert isinstance(caught.value.__cause__, tinker.RateLimitError)  # the SDK's error, for debugging


def test_retries_back_off_exponentially_and_can_succeed() -> None:
    sleeps: list[float] = []
    fake = FakeServiceClient(connection_error(tinker.APITimeoutError), http_error(tinker.InternalServerError, 502),
                             TimeoutError("operation timed out"), FakeTrainingClient())
    service = TinkerTrainingService(KEY, BASE, connect_attempts=4, backoff=0.5, service_client=fake,
                                    sleep=sleeps.append)
    assert service.create_lora_training_client(BASE_MODEL).get_info().model_id == MODEL_ID
    assert sleeps == [0.5, 1.0, 2.0] and len(fake.creates) == 4


@pytest.mark.parametrize(("error", "words"), [
    (http_error(tinker.NotFoundError, 404), ["(HTTP 404) after 1 attempt:", "base model name"]),
    (http_error(tinker.BadRequestError, 400), ["(HTTP 400) after 1 attempt:", "invalid"]),
    (ValueError("unsupported base model"), ["after 1 attempt: ValueError: unsupported base model"]),
])
def test_other_errors_are_not_retried(error: Exception, words: list[str]) -> None:
    fake = FakeServiceClient(error)
    with pytest.raises(TrainingBackendError) as caught:
        make_service(fake, connect_attempts=3).create_lora_training_client(BASE_MODEL)
    assert all(word in str(caught.value) for word in words) and len(fake.creates) == 1


def test_a_failed_request_names_itself_and_its_category_and_stays_failed() -> None:
    client = make_client(FakeTrainingClient(answers={"forward_backward": Fail(user_failure())}))
    future = client.forward_backward([DATUM], "cross_entropy")
    with pytest.raises(TrainingBackendError) as caught:
        future.result()
    message = str(caught.value)
    assert f"forward_backward on model {MODEL_ID} failed at {BASE} (category user)" in message
    assert "target_tokens is too long" in message and "check the data, loss_fn" in message
    with pytest.raises(TrainingBackendError) as again:
        future.result()
    assert again.value is caught.value and future.done()
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args


def test_an_error_at_submission_is_translated_at_submission() -> None:
    poisoned = RuntimeError("A previous request failed; this TrainingClient is poisoned")
    client = make_client(FakeTrainingClient(answers={"optim_step": poisoned}))
    with pytest.raises(TrainingBackendError, match=r"optim_step on model .* resume from the last checkpoint"):
        client.optim_step(AdamParams())


def test_a_result_not_in_time_says_how_to_wait_longer_and_is_not_remembered() -> None:
    sdk = FakeTrainingClient(hold=True)
    client = make_client(sdk, request_timeout=0.05)
    future = client.forward_backward([DATUM], "cross_entropy")
    with pytest.raises(TrainingBackendError) as caught:
        future.result()
    message = str(caught.value)
    assert f"forward_backward on model {MODEL_ID}: no result from {BASE} within 0.05 s" in message
    assert "request_timeout" in message and "manifest" in message
    with pytest.raises(TrainingBackendError, match="within 0.01 s"):
        future.result(timeout=0.01)
    sdk.release()
    assert future.result().metrics == {"loss:sum": 1.5}


def test_model_creation_that_never_finishes_times_out_without_retrying() -> None:
    fake = FakeServiceClient(FakeFuture())  # never resolves
    with pytest.raises(TrainingBackendError, match=r"create_lora_training_client for .* within 0.05 s.*request_timeout"):
        make_service(fake, request_timeout=0.05, connect_attempts=3).create_lora_training_client(BASE_MODEL)
    assert len(fake.creates) == 1


def test_the_key_never_reaches_an_error_its_cause_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    echo = {"detail": f"invalid header X-API-Key: {KEY}"}
    fake = FakeServiceClient(http_error(tinker.InternalServerError, 500, body=echo))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TrainingBackendError) as caught:
        make_service(fake, connect_attempts=2).create_lora_training_client(BASE_MODEL)
    assert "**********" in str(caught.value) and KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert "attempt 1 of 2" in caplog.text and KEY not in caplog.text
    auth = http_error(tinker.AuthenticationError, 401, "/api/v1/client/config", body=echo)
    with pytest.raises(ConfigError) as rejected:
        make_service(FakeServiceClient(auth)).create_lora_training_client(BASE_MODEL)
    assert KEY not in str(rejected.value) and rejected.value.__cause__ is None
    sampler = FakeSamplingClient(answers={"sample": Fail(tinker.RequestFailedError(
        f"Request failed: echo {KEY}", request_id="r", category=tinker.types.RequestErrorCategory.Server))})
    client = make_service(FakeServiceClient(sampler=sampler)).create_sampling_client(base_model=BASE_MODEL)
    with pytest.raises(TrainingBackendError, match=r"sample from meta-llama/Llama-3.2-1B .*category server") as sampled:
        client.sample(ModelInput.from_ints([1]), 1, SamplingParams()).result()
    assert KEY not in str(sampled.value) and sampled.value.__cause__ is None


# -- closing ------------------------------------------------------------------------------------------


def test_close_finishes_the_session_once_and_says_whether_anything_failed() -> None:
    fake = FakeServiceClient()
    service = make_service(fake)
    service.create_lora_training_client(BASE_MODEL)
    service.close()
    service.close()
    assert fake.closed == ["success"]
    with pytest.raises(TrainingBackendError, match="closed"):
        service.create_lora_training_client(BASE_MODEL)
    failing = FakeServiceClient(FakeTrainingClient(answers={"save_state": Fail(user_failure())}))
    with make_service(failing) as service, pytest.raises(TrainingBackendError):
        service.create_lora_training_client(BASE_MODEL).save_state("x").result()
    assert failing.closed == ["errored"]


def test_close_swallows_and_logs_errors_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeServiceClient(close_error=RuntimeError(f"finish failed for {KEY}"))
    make_service(fake).close()
    assert fake.closed == ["success"] and "finish failed" in caplog.text and KEY not in caplog.text


# -- the SDK surface we rely on ---------------------------------------------------------------------


def test_the_sdk_methods_this_adapter_calls_exist_and_are_not_deprecated() -> None:
    """A guard for SDK upgrades: SDK 0.38 deprecates load_state*, the *_async methods and more."""
    from tinker.lib.public_interfaces.sampling_client import SamplingClient as SDKSamplingClient

    used = {
        tinker.ServiceClient: ["create_lora_training_client", "create_sampling_client", "close"],
        tinker.TrainingClient: ["forward_backward", "forward", "optim_step", "save_state",
                                "save_weights_for_sampler", "get_info", "_load_state_impl"],
        SDKSamplingClient: ["sample", "compute_logprobs"],
    }
    for cls, names in used.items():
        for name in names:
            assert getattr(getattr(cls, name), "__deprecated__", None) is None, f"{cls.__name__}.{name}"
    assert getattr(tinker.TrainingClient.load_state_with_optimizer, "__deprecated__", None)
    assert list(inspect.signature(tinker.TrainingClient._load_state_impl).parameters) == [
        "self", "path", "optimizer", "weights_access_token"]


# -- the registry ---------------------------------------------------------------------------------------


def test_binding_tinker_without_the_key_fails_before_the_backend_is_built() -> None:
    with Runtime.open("test", {"training_client": "tinker"}, Settings()) as ports:
        assert ports.blob_store is not None  # the other ports need no key
        with pytest.raises(MissingSecretError, match="TINKER_API_KEY"):
            ports.training_client


def test_the_factory_builds_the_service_without_contacting_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with Runtime.open("test", {"training_client": "tinker"}, Settings(tinker_api_key=KEY)) as ports:
        service = ports.training_client
        assert isinstance(service, TinkerTrainingService) and isinstance(service._client, tinker.ServiceClient)
        assert service.base_url == Settings().tinker_base_url and KEY not in repr(ports)
        assert (service.request_timeout, service.connect_attempts, service.backoff) == (900.0, 3, 1.0)
    # closed on exit; no session was ever opened, so that returned at once
    options = {"adapter": "tinker", "base_url": "http://127.0.0.1:9/", "request_timeout": 5, "connect_attempts": 1}
    settings = Settings(tinker_api_key=KEY, tinker_base_url="http://ignored.test")
    with Runtime.open("test", {"training_client": options}, settings) as ports:
        service = ports.training_client
        assert repr(service) == "TinkerTrainingService(base_url='http://127.0.0.1:9')"
        assert (service.request_timeout, service.connect_attempts) == (5.0, 1)


def test_the_factory_rejects_a_malformed_key_and_bad_options_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with (pytest.raises(ConfigError, match="TINKER_API_KEY") as caught,
          Runtime.open("test", {"training_client": "tinker"}, Settings(tinker_api_key="sk-SECRET-42")) as ports):
        ports.training_client
    assert "sk-SECRET-42" not in str(caught.value)
    with pytest.raises(ManifestError, match="request_timeout"), Runtime.open(
            "test", {"training_client": {"adapter": "tinker", "request_timeout": 0}}, Settings(tinker_api_key=KEY)):
        pass
