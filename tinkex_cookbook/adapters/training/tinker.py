"""Tinker training backend: the ``training_client`` port over the official Tinker SDK.

Why it is shaped this way:

* Tinker users pay per token, and most of a remote step is spent on the network and in
  the server's queue. Every slow call returns a ``TinkerFuture`` at once, wrapping the
  SDK's own future; nothing waits in the submitting call, so the supervised loop can
  submit step N+1 before it awaits step N and the server is never idle between steps.
* Errors are translated at the edge. SDK exceptions (HTTP status errors, failed
  requests, the ``ValueError`` the SDK raises when polling a result hits a fatal status)
  become ``TrainingBackendError`` naming the request, the server, the status or error
  category and a hint; a rejected key becomes ``ConfigError``. Recipes never see an SDK
  type, value or exception.
* The API key only ever goes to ``tinker.ServiceClient``. It is never in a ``repr``, an
  error message or a log line, and an SDK exception whose text contains it is not
  chained to ours.
* Tokenizers come from the cookbook's model catalog, as the local backend's do: a
  packaged tokenizer, a folder on this machine (``models_dir``, the models cache, the HF
  cache), the packaged GGUF's, or the bound hub client; never from the SDK, which
  downloads them from the Hugging Face hub itself.

The SDK retries transient HTTP failures itself (for up to five minutes per request);
``connect_attempts`` adds retries around session and model creation only, after those.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Generic, Self, TypeVar

import tinker

from tinkex_cookbook.adapters.retry import backoff_delay
from tinkex_cookbook.adapters.training.model_files import ModelSources, resolve_tokenizer
from tinkex_cookbook.adapters.training.tinker_types import (
    from_tinker_forward_backward,
    from_tinker_logprobs,
    from_tinker_sample_response,
    to_tinker_adam,
    to_tinker_datum,
    to_tinker_model_input,
    to_tinker_sampling_params,
)
from tinkex_cookbook.errors import ConfigError, CookbookError, TrainingBackendError, UnknownNameError
from tinkex_cookbook.ports import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SampleResponse,
    SamplingParams,
    SaveStateResponse,
)
from tinkex_cookbook.train.tokenizers import HFTokenizer

__all__ = [
    "API_KEY_PREFIXES",
    "CLOSE_TIMEOUT",
    "TinkerFuture",
    "TinkerSamplingClient",
    "TinkerTrainingClient",
    "TinkerTrainingService",
    "check_api_key",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

API_KEY_PREFIXES = ("tml-", "eyJ")
"""What the SDK accepts: a Tinker API key (``tml-...``) or a Tinker-issued JWT (``eyJ...``)."""
CLOSE_TIMEOUT = 10.0
"""Seconds ``close()`` waits for the server to mark the session finished."""
_DETAIL_CHARS = 400
_KEY_FIX = "export TINKER_API_KEY=tml-... (create a key in the Tinker console)"
_MISSING = object()


def check_api_key(api_key: str) -> None:
    """Reject a key the SDK would refuse, before any request; the message never shows the key."""
    if not api_key:
        raise ConfigError(f"TINKER_API_KEY is empty: {_KEY_FIX}")
    if api_key != api_key.strip():
        raise ConfigError("TINKER_API_KEY has leading or trailing whitespace (a newline from a file?): "
                          "set it to the bare key, tml-...")
    if not api_key.startswith(API_KEY_PREFIXES):
        raise ConfigError("TINKER_API_KEY is not a Tinker API key: it must start with 'tml-' "
                          f"(or be a Tinker-issued JWT, 'eyJ...'). {_KEY_FIX}")


# -- error translation ---------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes / contexts: the SDK wraps HTTP errors in ``ValueError``s and
    ``RuntimeError``s, with the original as ``__cause__``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first(exc: BaseException, kind: type[T]) -> T | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _status(exc: BaseException) -> int | None:
    error = _first(exc, tinker.APIStatusError)
    return error.status_code if error is not None else None


def _is_auth_failure(exc: BaseException) -> bool:
    return _status(exc) in (401, 403)


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: a connection problem, a timeout, a 5xx or a 429."""
    for error in _chain(exc):
        if isinstance(error, tinker.APIConnectionError | TimeoutError):  # APITimeoutError too
            return True
        if isinstance(error, tinker.APIStatusError):
            return error.status_code >= 500 or error.status_code == 429
    return False


def _hint(exc: BaseException, status: int | None) -> str:
    failed = _first(exc, tinker.RequestFailedError)
    if failed is not None:
        if str(failed.category).lower() == "user":
            return "the server rejected the request's contents: check the data, loss_fn and its config"
        return "the request failed on the server: retry, resuming from the last checkpoint"
    if status == 402:
        return "the account has a billing problem: check billing in the Tinker console"
    if status == 404:
        return "check the base model name or the tinker:// path"
    if status == 410:
        return ("the server no longer holds this request's result (it expired, or the server restarted): "
                "resume the run from its last checkpoint")
    if status in (400, 409, 422):
        return "the server rejected the request as invalid"
    if status == 429:
        return "rate limited: retry later or lower concurrency"
    if (status is not None and status >= 500) or _first(exc, tinker.APIConnectionError) is not None:
        return "the service is unreachable or failing: check base_url and retry later"
    if any("poisoned" in str(e) for e in _chain(exc)):
        return ("an earlier request on this training client failed, so the SDK refuses the rest: "
                "fix that first error, then resume from the last checkpoint")
    return "the SDK's error is chained below"


class _Edge:
    """What every request needs to translate its errors: the server, the wait limit, the key
    (only to redact it) and whether anything has failed (for the session's close status)."""

    __slots__ = ("_key", "base_url", "failed", "request_timeout")

    def __init__(self, api_key: str, base_url: str, request_timeout: float) -> None:
        self._key = api_key
        self.base_url = base_url
        self.request_timeout = request_timeout
        self.failed = False

    def __repr__(self) -> str:
        return f"_Edge(base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        return text.replace(self._key, "**********") if self._key else text

    def _chained(self, error: CookbookError, cause: BaseException) -> CookbookError:
        """Chain the SDK's exception for debugging, unless any of its text holds the key."""
        leaks = any(self._key in str(e) or self._key in repr(e.args) for e in _chain(cause))
        error.__cause__ = None if leaks else cause
        error.__suppress_context__ = True
        return error

    def error(self, exc: BaseException, request: str, attempts: int | None = None) -> CookbookError:
        """The cookbook error for ``exc``, raised by ``request``."""
        self.failed = True
        status = _status(exc)
        if _is_auth_failure(exc):
            return self._chained(ConfigError(
                f"TINKER_API_KEY was rejected by {self.base_url} (HTTP {status}) during {request}: "
                "the key is wrong, revoked, or has no access to this project or model. "
                f"{_KEY_FIX}, and check TINKER_BASE_URL / the manifest's base_url"
            ), exc)
        failed = _first(exc, tinker.RequestFailedError)
        where = f" (HTTP {status})" if status is not None else ""
        if failed is not None:
            where = f" (category {str(failed.category).lower()})"
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts is not None else ""
        detail = self.redact(f"{type(exc).__name__}: {exc}")
        if len(detail) > _DETAIL_CHARS:
            detail = detail[: _DETAIL_CHARS - 3] + "..."
        return self._chained(TrainingBackendError(
            f"{request} failed at {self.base_url}{where}{tries}: {detail}. Hint: {_hint(exc, status)}"
        ), exc)

    def timeout(self, request: str, seconds: float) -> TrainingBackendError:
        self.failed = True
        return TrainingBackendError(
            f"{request}: no result from {self.base_url} within {seconds:g} s (meanwhile the SDK retries dropped "
            "connections, 5xx and 429 answers; its warnings are in the log). If the server is only slow "
            "(queues can be long), raise request_timeout in the manifest options: "
            "training_client: {adapter: tinker, request_timeout: SECONDS}; if it is failing, resume the run "
            "from its last checkpoint once it recovers"
        )


def _has_method(obj: object, name: str) -> bool:
    """Looked up on the type: the SDK's client futures warn when an unknown attribute is read."""
    return callable(getattr(type(obj), name, None))


class TinkerFuture(Generic[T]):
    """An ``APIFuture`` over one SDK future: waits at most ``request_timeout`` by default,
    converts the SDK's value to the port's type once, and raises cookbook errors only.

    A wait that runs out raises without being remembered (a later ``result`` may succeed);
    a value or a failure is cached.
    """

    def __init__(self, sdk_future: Any, convert: Callable[[Any], T], request: str, edge: _Edge) -> None:
        # The SDK's futures expose a concurrent.futures.Future through .future(); waiting on
        # it avoids their sync-only checks and the compatibility wrappers' warnings.
        self._future: Any = sdk_future.future() if _has_method(sdk_future, "future") else sdk_future
        self._convert = convert
        self._request = request
        self._edge = edge
        self._value: Any = _MISSING
        self._error: CookbookError | None = None

    def __repr__(self) -> str:
        return f"TinkerFuture({self._request!r}, done={self.done()})"

    @property
    def request(self) -> str:
        return self._request

    def done(self) -> bool:
        return bool(self._future.done())

    def result(self, timeout: float | None = None) -> T:
        if self._value is _MISSING and self._error is None:
            wait = self._edge.request_timeout if timeout is None else timeout
            if not self._settle(wait):
                raise self._edge.timeout(self._request, wait)
        if self._error is not None:
            raise self._error
        return self._value

    def _settle(self, wait: float) -> bool:
        """Keep the SDK's answer, converted, or the cookbook error it became; False when the wait ran out.

        The errors are raised by ``result``, outside any ``except``, so no SDK exception rides along
        as their context.
        """
        try:
            raw = self._future.result(wait)
        except Exception as exc:  # noqa: BLE001 - any SDK failure becomes a cookbook error
            if isinstance(exc, TimeoutError) and not self.done():
                return False
            self._error = self._edge.error(exc, self._request)
            return True
        try:
            self._value = self._convert(raw)
        except Exception as exc:  # noqa: BLE001 - an answer we cannot read
            self._error = self._edge.error(exc, f"{self._request} (reading its result)")
        return True


def _submit(edge: _Edge, request: str, call: Callable[[], Any], convert: Callable[[Any], T]) -> TinkerFuture[T]:
    """Submit without waiting; an error raised while submitting is translated here."""
    try:
        return TinkerFuture(call(), convert, request, edge)
    except Exception as exc:  # noqa: BLE001 - translated below
        failure = exc
    raise edge.error(failure, request)


# -- the service -----------------------------------------------------------------------------------


class TinkerTrainingService:
    """Opens Tinker LoRA training clients and sampling clients; one Tinker session per service.

    ``tinker.ServiceClient`` is built here but contacts the server only on the first
    ``create_*`` call. ``service_client`` injects a ready object with the same duck type
    (tests); the service owns whichever client it uses and closes it in ``close()``.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        request_timeout: float = 900.0,
        connect_attempts: int = 3,
        backoff: float = 1.0,
        service_client: object | None = None,
        sleep: Callable[[float], None] = time.sleep,
        model_sources: ModelSources | None = None,
    ) -> None:
        check_api_key(api_key)
        if not base_url or not base_url.strip():
            raise ConfigError("the tinker adapter needs a base URL: set TINKER_BASE_URL or the manifest "
                              "option training_client: {adapter: tinker, base_url: URL}")
        if request_timeout <= 0 or connect_attempts < 1 or backoff < 0:
            raise ConfigError(
                "tinker options need request_timeout > 0, connect_attempts >= 1 and backoff >= 0 "
                f"(got {request_timeout!r}, {connect_attempts!r}, {backoff!r})"
            )
        self.base_url = base_url.strip().rstrip("/")
        self.request_timeout = float(request_timeout)
        self.connect_attempts = int(connect_attempts)
        self.backoff = float(backoff)
        self.model_sources = model_sources or ModelSources.of()
        self._sleep = sleep
        self._edge = _Edge(api_key, self.base_url, self.request_timeout)
        self._client: Any = (
            service_client if service_client is not None
            else tinker.ServiceClient(api_key=api_key, base_url=self.base_url)
        )
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"TinkerTrainingService(base_url={self.base_url!r})"

    def _connect(self, request: str, submit: Callable[[], Any]) -> Any:
        """Run ``submit`` (an SDK create call) and wait for its client, retrying transient failures."""
        if self._closed:
            raise TrainingBackendError(f"{request}: this TinkerTrainingService is closed")
        attempt = 0
        while True:
            attempt += 1
            pending: Any = None
            try:
                pending = submit()
                return pending.result(self.request_timeout) if _has_method(pending, "result") else pending
            except Exception as exc:  # noqa: BLE001 - classified and translated below
                failure = exc
            # Raised here, outside the handler, so the SDK's exception is only ever the
            # explicit cause set by _Edge (and not even that when its text holds the key).
            if isinstance(failure, TimeoutError) and pending is not None and not _finished(pending):
                raise self._edge.timeout(request, self.request_timeout)
            if _is_auth_failure(failure) or not _is_transient(failure) or attempt >= self.connect_attempts:
                raise self._edge.error(failure, request, attempts=attempt)
            delay = backoff_delay(attempt, self.backoff)
            logger.warning("%s failed at %s (attempt %d of %d): %s; retrying in %.1f s", request,
                           self.base_url, attempt, self.connect_attempts,
                           self._edge.redact(f"{type(failure).__name__}: {failure}")[:_DETAIL_CHARS], delay)
            if delay > 0:
                self._sleep(delay)

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> TinkerTrainingClient:
        """A new LoRA model on Tinker; waits for the server to create it (retrying transient errors)."""
        sdk_client = self._connect(
            f"create_lora_training_client for {base_model}",
            lambda: self._client.create_lora_training_client(base_model=base_model, rank=rank, seed=seed),
        )
        return TinkerTrainingClient(self, sdk_client, base_model, rank)

    def tokenizer_for(self, base_model: str) -> HFTokenizer:
        """``base_model``'s tokenizer through the model catalog, for prompts sent to its samplers."""
        return find_tokenizer([base_model, base_model.split(":")[0]], self.model_sources)

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> TinkerSamplingClient:
        """From saved sampler weights (a ``tinker://`` path) or the bare base model."""
        if model_path is None and base_model is None:
            raise ValueError("create_sampling_client needs model_path or base_model")
        label = model_path or base_model
        sdk_client = self._connect(
            f"create_sampling_client for {label}",
            lambda: self._client.create_sampling_client(model_path=model_path, base_model=base_model),
        )
        return TinkerSamplingClient(sdk_client, str(label), self._edge)

    def close(self, status: str | None = None) -> None:
        """Finish the Tinker session (``success``, or ``errored`` once a request failed) and release
        the SDK's connections. Waits at most ``CLOSE_TIMEOUT`` seconds; never raises; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        status = status or ("errored" if self._edge.failed else "success")
        try:
            pending = self._client.close(status)
            if _has_method(pending, "result"):
                pending.result(CLOSE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            logger.warning("closing the Tinker session at %s failed: %s", self.base_url,
                           self._edge.redact(f"{type(exc).__name__}: {exc}")[:_DETAIL_CHARS])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finished(pending: Any) -> bool:
    if _has_method(pending, "future"):
        return bool(pending.future().done())
    return not _has_method(pending, "done") or bool(pending.done())


# -- clients ---------------------------------------------------------------------------------------


class TinkerTrainingClient:
    """One LoRA model on Tinker. Every call submits at once and returns a ``TinkerFuture``;
    the SDK applies them in submission order."""

    def __init__(self, service: TinkerTrainingService, sdk_client: Any, base_model: str, rank: int) -> None:
        self._service = service
        self._sdk = sdk_client
        self._edge = service._edge
        self._info = _model_info(sdk_client.get_info(), base_model, rank)
        self._tokenizer: HFTokenizer | None = None

    def __repr__(self) -> str:
        return (f"TinkerTrainingClient(model_id={self._info.model_id!r}, "
                f"base_model={self._info.base_model!r}, base_url={self._edge.base_url!r})")

    def _on_model(self, what: str) -> str:
        return f"{what} on model {self._info.model_id}"

    def forward_backward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> TinkerFuture[ForwardBackwardOutput]:
        wire, config = [to_tinker_datum(d) for d in data], _config(loss_fn_config)
        call = partial(self._sdk.forward_backward, wire, loss_fn, config)
        return _submit(self._edge, self._on_model("forward_backward"), call, from_tinker_forward_backward)

    def forward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> TinkerFuture[ForwardBackwardOutput]:
        wire, config = [to_tinker_datum(d) for d in data], _config(loss_fn_config)
        call = partial(self._sdk.forward, wire, loss_fn, config)
        return _submit(self._edge, self._on_model("forward"), call, from_tinker_forward_backward)

    def optim_step(self, adam_params: AdamParams) -> TinkerFuture[OptimStepResponse]:
        call = partial(self._sdk.optim_step, to_tinker_adam(adam_params))
        return _submit(self._edge, self._on_model("optim_step"), call,
                       lambda r: OptimStepResponse(dict(r.metrics or {})))

    def save_state(self, name: str) -> TinkerFuture[SaveStateResponse]:
        """Weights and optimizer state, as a ``tinker://`` path."""
        return _submit(self._edge, self._on_model(f"save_state {name!r}"), partial(self._sdk.save_state, name),
                       lambda r: SaveStateResponse(r.path))

    def load_state(self, path: str) -> TinkerFuture[LoadStateResponse]:
        """Restore weights and optimizer state from a ``save_state`` path, in submission order.

        SDK 0.38 deprecates ``TrainingClient.load_state`` and ``load_state_with_optimizer``
        (a FutureWarning and an ERROR log line on every call) in favour of creating a new
        training client from the checkpoint, which would give this client another model id
        and break submission order. ``load_state_with_optimizer`` is a thin wrapper over
        ``_load_state_impl(path, optimizer=True, ...)``, which is not deprecated; we call
        that (the ``tinker`` extra pins ``<0.39``). Duck-typed clients without it get
        ``load_state_with_optimizer``.
        """
        if _has_method(self._sdk, "_load_state_impl"):
            call = partial(self._sdk._load_state_impl, path, optimizer=True, weights_access_token=None)
        else:
            call = partial(self._sdk.load_state_with_optimizer, path)
        return _submit(self._edge, self._on_model(f"load_state {path}"), call,
                       lambda r: LoadStateResponse(getattr(r, "path", None) or path))

    def save_weights_for_sampler(self, name: str) -> TinkerFuture[SaveStateResponse]:
        """Weights only, as a ``tinker://`` path for ``create_sampling_client(model_path=...)``."""
        return _submit(self._edge, self._on_model(f"save_weights_for_sampler {name!r}"),
                       partial(self._sdk.save_weights_for_sampler, name), lambda r: SaveStateResponse(r.path))

    def save_weights_and_get_sampling_client(self, name: str) -> TinkerSamplingClient:
        """Saves named sampler weights (kept, unlike the SDK's unnamed, ephemeral ones), then opens a
        sampling client on them. Waits for the save: the port returns a client, not a future."""
        path = self.save_weights_for_sampler(name).result().path
        return self._service.create_sampling_client(model_path=path)

    def get_tokenizer(self) -> HFTokenizer:
        """The model's tokenizer through the model catalog (never the SDK's own hub download): by the
        server's tokenizer id, else by the base model's name."""
        if self._tokenizer is None:
            base = self._info.base_model
            names = [self._info.tokenizer_id, base, base.split(":")[0]]
            self._tokenizer = find_tokenizer(names, self._service.model_sources)
        return self._tokenizer

    def get_info(self) -> ModelInfo:
        """From the info the SDK fetched when it created the model: no request."""
        return self._info


def _config(loss_fn_config: Mapping[str, float] | None) -> dict[str, float] | None:
    return dict(loss_fn_config) if loss_fn_config is not None else None


def find_tokenizer(names: Sequence[str], sources: ModelSources) -> HFTokenizer:
    """The first of ``names`` the catalog finds a tokenizer for; else the error about the first."""
    error: UnknownNameError | None = None
    for name in dict.fromkeys(n for n in names if n):
        try:
            return resolve_tokenizer(name, sources)
        except UnknownNameError as exc:
            error = error or exc
    assert error is not None, "ModelInfo always has a base model name"
    raise error


def _model_info(info: Any, base_model: str, rank: int) -> ModelInfo:
    data = getattr(info, "model_data", None)
    name = getattr(data, "model_name", None) or getattr(info, "model_name", None) or base_model
    rank_seen = getattr(info, "lora_rank", None)
    return ModelInfo(
        str(info.model_id), name, rank if rank_seen is None else int(rank_seen),
        getattr(data, "tokenizer_id", None) or name,
    )


class TinkerSamplingClient:
    """Samples from fixed weights on Tinker; calls may overlap (the SDK is thread-safe)."""

    def __init__(self, sdk_client: Any, label: str, edge: _Edge) -> None:
        self._sdk = sdk_client
        self._label = label
        self._edge = edge

    def __repr__(self) -> str:
        return f"TinkerSamplingClient({self._label!r}, base_url={self._edge.base_url!r})"

    def sample(
        self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams
    ) -> TinkerFuture[SampleResponse]:
        call = partial(self._sdk.sample, prompt=to_tinker_model_input(prompt), num_samples=num_samples,
                       sampling_params=to_tinker_sampling_params(sampling_params))
        return _submit(self._edge, f"sample from {self._label}", call, from_tinker_sample_response)

    def compute_logprobs(self, prompt: ModelInput) -> TinkerFuture[list[float | None]]:
        call = partial(self._sdk.compute_logprobs, to_tinker_model_input(prompt))
        return _submit(self._edge, f"compute_logprobs from {self._label}", call, from_tinker_logprobs)
