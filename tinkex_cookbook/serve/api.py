"""The Tinker API routes the SDK 0.38 uses for training and sampling, over any ``TrainingService``.

Route handlers take a parsed request and return a ``Reply``; HTTP, keys and
injected faults live in ``server.py``. Training requests of one model reach the
backend in the order they arrive; the SDK sends them one at a time in sequence
order (``parallel_fwdbwd_chunks`` is off in the client config served here), and
the backend's clients run calls in submission order, so gradients accumulate and
steps apply exactly as on Tinker.

Checkpoints: the backend saves where it saves (``local://...`` for the local
backend); clients see ``tinker://<model_id>/weights/<name>`` (and
``.../sampler_weights/<name>``). The mapping is written through the blob store,
so a restarted server still resolves paths it handed out before.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.errors import BlobNotFoundError
from tinkex_cookbook.ports import (
    AdamParams,
    BlobStore,
    ModelInput,
    SampleResponse,
    SamplingClient,
    ThreadFuture,
    TrainingClient,
    TrainingService,
)
from tinkex_cookbook.serve.faults import FaultPlan
from tinkex_cookbook.serve.futures import FutureTable, NeverDone, Pending
from tinkex_cookbook.serve.wire import (
    PROTOBUF,
    decode_forward_backward,
    encode_forward_backward_output,
    encode_sample_response,
    model_input_from_json,
    sampling_params_from_sdk,
)

CHECKPOINT_INDEX = "serve/checkpoints"
CLIENT_CONFIG = {
    "pjwt_auth_enabled": False,
    "parallel_fwdbwd_chunks": False,
    "proto_compress_fwdbwd": False,
    "use_pyqwest_transport": False,
    "sample_use_retrieve_futures": False,
    "custom_loss_server_side": False,
    "sample_join_sampling_session": False,
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class ApiError(Exception):
    """A request the server refuses: becomes an HTTP status with a ``detail`` body."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Model:
    model_id: str
    base_model: str
    rank: int
    client: TrainingClient


@dataclass
class Sampler:
    sampler_id: str
    base_model: str
    model_path: str | None
    client: SamplingClient


def _tinker_request(model: type, body: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(400, f"bad {model.__name__}: {exc.errors(include_url=False)}") from None


def _error_payload(exc: BaseException) -> dict[str, str]:
    """A failed request as Tinker reports it: the message and whose fault it was."""
    category = "user" if isinstance(exc, (ValueError, LookupError, TypeError)) else "server"
    return {"error": f"{type(exc).__name__}: {exc}", "category": category}


class TinkerAPI:
    """Sessions, models, samplers and pending futures of one server."""

    def __init__(self, service: TrainingService, blob_store: BlobStore, faults: FaultPlan | None = None) -> None:
        self.service = service
        self.blob_store = blob_store
        self.faults = faults or FaultPlan()
        self.futures = FutureTable()
        self.sessions: set[str] = set()
        self.models: dict[str, Model] = {}
        self.samplers: dict[str, Sampler] = {}
        self._lock = threading.Lock()
        self._setup = ThreadPoolExecutor(1, "tinker-serve-setup")

    def close(self) -> None:
        self._setup.shutdown(wait=True)

    # ---- routing

    def post_routes(self) -> dict[str, Callable[[Any, dict[str, str]], Reply]]:
        return {
            # The SDK fetches its config through a connection pool it never closes; closing the
            # connection from our side keeps a socket from leaking per client.
            "/api/v1/client/config": lambda body, h: Reply(200, CLIENT_CONFIG, headers={"Connection": "close"}),
            "/api/v1/client/dynamic_config": lambda body, h: Reply(200, {}),
            "/api/v1/telemetry": lambda body, h: Reply(200, {"status": "accepted"}),
            "/api/v1/create_session": self.create_session,
            "/api/v1/session_heartbeat": self.session_heartbeat,
            "/api/v1/create_model": self.create_model,
            "/api/v1/get_info": self.get_info,
            "/api/v1/forward_backward": self.forward_backward,
            "/api/v1/optim_step": self.optim_step,
            "/api/v1/save_weights": self.save_weights,
            "/api/v1/save_weights_for_sampler": self.save_weights_for_sampler,
            "/api/v1/load_weights": self.load_weights,
            "/api/v1/create_sampling_session": self.create_sampling_session,
            "/api/v1/asample": self.asample,
            "/api/v1/retrieve_future": self.retrieve_future,
            "/api/v1/cancel_future": lambda body, h: Reply(200, {}),
            "/api/v1/get_server_capabilities": lambda body, h: self.capabilities(),
        }

    def get(self, path: str) -> Reply:
        if path == "/api/v1/healthz":
            return Reply(200, {"status": "ok"})
        if path == "/api/v1/get_server_capabilities":
            return self.capabilities()
        if path.startswith("/api/v1/samplers/"):
            sampler = self._sampler(path.rsplit("/", 1)[-1])
            return Reply(200, {"sampler_id": sampler.sampler_id, "base_model": sampler.base_model,
                               "model_path": sampler.model_path})
        raise ApiError(404, f"no route GET {path}")

    def post(self, path: str, body: Any, headers: dict[str, str]) -> Reply:
        if path.startswith("/api/v1/sessions/") and path.endswith("/finish"):
            return Reply(200, {})
        route = self.post_routes().get(path)
        if route is None:
            raise ApiError(404, f"no route POST {path}; this server speaks the training and sampling subset "
                                "of the Tinker API")
        return route(body, headers)

    def capabilities(self) -> Reply:
        names = getattr(self.service, "model_names", list)()
        return Reply(200, {"supported_models": [
            {"model_name": name, "trainable": True, "sampleable": True} for name in names]})

    # ---- sessions and models

    def create_session(self, body: Any, headers: dict[str, str]) -> Reply:
        session_id = f"session-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.sessions.add(session_id)
        return Reply(200, {"type": "create_session", "session_id": session_id})

    def session_heartbeat(self, body: Any, headers: dict[str, str]) -> Reply:
        return Reply(200, {"type": "session_heartbeat"})

    def _model(self, model_id: str) -> Model:
        with self._lock:
            model = self.models.get(model_id)
        if model is None:
            raise ApiError(404, f"unknown model_id {model_id!r}; create it with create_model first")
        return model

    def _sampler(self, sampler_id: str) -> Sampler:
        with self._lock:
            sampler = self.samplers.get(sampler_id)
        if sampler is None:
            raise ApiError(404, f"unknown sampling session {sampler_id!r}")
        return sampler

    def _accepted(self, pending: Pending, extra: dict[str, Any] | None = None) -> Reply:
        body: dict[str, Any] = {"request_id": pending.request_id}
        body.update(extra or pending.extra or {})
        return Reply(200, body)

    def _submit(self, route: str, key: Any, start: Callable[[], Any], encode: Callable[[Any], Any],
                extra: dict[str, Any] | None = None) -> Reply:
        pending = self.futures.submit(route, key, start, encode, extra)
        if self.faults.take(route, ("hang",)) is not None:
            pending.future = NeverDone()
        return self._accepted(pending)

    def _new_model(self, model_id: str, base_model: str, rank: int, seed: int | None) -> Model:
        client = self.service.create_lora_training_client(base_model, rank=rank, seed=seed)
        model = Model(model_id, base_model, rank, client)
        with self._lock:
            self.models[model_id] = model
        return model

    def create_model(self, body: Any, headers: dict[str, str]) -> Reply:
        """Model ids are ``<session>:train:<seq>``, as Tinker derives them (the SDK relies on it)."""
        import tinker

        request = _tinker_request(tinker.types.CreateModelRequest, body)
        rank = request.lora_config.rank if request.lora_config else 32
        seed = request.lora_config.seed if request.lora_config else None
        model_id = f"{request.session_id}:train:{request.model_seq_id}"

        def create() -> dict[str, Any]:
            self._new_model(model_id, request.base_model, rank, seed)
            return {"type": "create_model", "model_id": model_id}

        return self._submit("/api/v1/create_model", ("create_model", model_id),
                            lambda: ThreadFuture(self._setup.submit(create)), lambda result: result)

    def get_info(self, body: Any, headers: dict[str, str]) -> Reply:
        model = self._model(str(body.get("model_id")))
        info = model.client.get_info()
        return Reply(200, {
            "type": "get_info", "model_id": model.model_id, "model_name": model.base_model,
            "is_lora": True, "lora_rank": model.rank,
            "model_data": {"arch": "lora", "model_name": model.base_model, "tokenizer_id": info.tokenizer_id},
        })

    # ---- training

    def forward_backward(self, body: bytes, headers: dict[str, str]) -> Reply:
        if PROTOBUF not in headers.get("content-type", ""):
            raise ApiError(415, f"forward_backward takes a protobuf body ({PROTOBUF}), as SDK 0.38 sends it")
        call = decode_forward_backward(body, headers.get("content-encoding"))
        model = self._model(call.model_id)
        method = model.client.forward if call.forward_only else model.client.forward_backward
        key = ("train", call.model_id, call.seq_id)
        return self._submit("/api/v1/forward_backward", key,
                            lambda: method(call.data, call.loss_fn, call.loss_fn_config), encode_forward_backward_output)

    def optim_step(self, body: Any, headers: dict[str, str]) -> Reply:
        model = self._model(str(body.get("model_id")))
        raw = body.get("adam_params") or body.get("optim_params")
        if not isinstance(raw, dict) or body.get("optimizer_params") is not None:
            raise ApiError(400, "optim_step takes adam_params; this server trains with Adam only")
        params = AdamParams(**{k: float(v) for k, v in raw.items() if k in AdamParams.__dataclass_fields__})
        key = ("train", model.model_id, body.get("seq_id"))
        return self._submit("/api/v1/optim_step", key, lambda: model.client.optim_step(params),
                            lambda result: {"type": "optim_step", "metrics": dict(result.metrics)})

    # ---- checkpoints

    def _index_key(self, tinker_path: str) -> str:
        prefix = "tinker://"
        parts = tinker_path[len(prefix):].split("/") if tinker_path.startswith(prefix) else []
        if len(parts) != 3 or parts[1] not in ("weights", "sampler_weights") or not all(parts):
            raise ApiError(400, f"bad checkpoint path {tinker_path!r}: expected "
                                "tinker://<model_id>/weights/<name> or tinker://<model_id>/sampler_weights/<name>")
        return f"{CHECKPOINT_INDEX}/{parts[0]}/{parts[1]}/{parts[2]}.json"

    def _record(self, model: Model, kind: str, name: str, backend_path: str) -> str:
        tinker_path = f"tinker://{model.model_id}/{kind}/{name}"
        record = {"path": backend_path, "base_model": model.base_model, "rank": model.rank}
        self.blob_store.write(self._index_key(tinker_path), json.dumps(record).encode())
        return tinker_path

    def resolve(self, tinker_path: str) -> dict[str, Any]:
        """The backend's own path (and base model) for a ``tinker://`` path this server handed out."""
        try:
            return json.loads(self.blob_store.read(self._index_key(tinker_path)))
        except BlobNotFoundError:
            raise ApiError(404, f"unknown checkpoint {tinker_path!r}: no checkpoint of that name was saved "
                                "on this server's blob store") from None

    def _checkpoint_name(self, body: dict[str, Any], seq_id: Any) -> str:
        name = body.get("path") or f"auto-{seq_id}"
        if not isinstance(name, str) or "/" in name or name in (".", ".."):
            raise ApiError(400, f"bad checkpoint name {name!r}: use a plain name without '/'")
        return name

    def save_weights(self, body: Any, headers: dict[str, str]) -> Reply:
        model = self._model(str(body.get("model_id")))
        name = self._checkpoint_name(body, body.get("seq_id"))
        future = model.client.save_state

        def encode(result: Any) -> dict[str, Any]:
            return {"type": "save_weights", "path": self._record(model, "weights", name, result.path)}

        return self._submit("/api/v1/save_weights", ("train", model.model_id, body.get("seq_id")),
                            lambda: future(name), encode)

    def save_weights_for_sampler(self, body: Any, headers: dict[str, str]) -> Reply:
        model = self._model(str(body.get("model_id")))
        name = self._checkpoint_name(body, body.get("seq_id"))
        with_session = body.get("path") is None

        def encode(result: Any) -> dict[str, Any]:
            path = self._record(model, "sampler_weights", name, result.path)
            reply: dict[str, Any] = {"type": "save_weights_for_sampler", "path": path}
            if with_session:
                reply["sampling_session_id"] = self._open_sampler(model.base_model, path).sampler_id
            return reply

        return self._submit("/api/v1/save_weights_for_sampler", ("train", model.model_id, body.get("seq_id")),
                            lambda: model.client.save_weights_for_sampler(name), encode)

    def load_weights(self, body: Any, headers: dict[str, str]) -> Reply:
        """Into an existing model (``model_id``), or a new one created from the checkpoint
        (``session_id`` + ``model_seq_id``, what ``create_training_client_from_state*`` sends).

        The backend's ``load_state`` restores weights and optimizer state together, so a
        weights-only load (``optimizer: false``) also restores the optimizer here.
        """
        tinker_path = str(body.get("path"))
        record = self.resolve(tinker_path)
        if body.get("model_id") is not None:
            model = self._model(str(body["model_id"]))
            return self._submit("/api/v1/load_weights", ("train", model.model_id, body.get("seq_id")),
                                lambda: model.client.load_state(record["path"]),
                                lambda result: {"type": "load_weights", "path": tinker_path,
                                                "model_id": model.model_id})
        if body.get("session_id") is None or body.get("model_seq_id") is None:
            raise ApiError(400, "load_weights needs model_id, or session_id and model_seq_id")
        model_id = f"{body['session_id']}:train:{body['model_seq_id']}"
        base_model = body.get("base_model") or record["base_model"]

        def create_and_load() -> dict[str, Any]:
            model = self._new_model(model_id, base_model, int(record["rank"]), None)
            model.client.load_state(record["path"]).result()
            return {"type": "load_weights", "path": tinker_path, "model_id": model_id}

        return self._submit("/api/v1/load_weights", ("create_model", model_id),
                            lambda: ThreadFuture(self._setup.submit(create_and_load)), lambda result: result)

    # ---- sampling

    def _open_sampler(self, base_model: str | None, model_path: str | None) -> Sampler:
        if model_path is not None:
            record = self.resolve(model_path)
            client = self.service.create_sampling_client(model_path=record["path"])
            base: str = record["base_model"]
        elif base_model is not None:
            client = self.service.create_sampling_client(base_model=base_model)
            base = base_model
        else:
            raise ApiError(400, "a sampling session needs model_path or base_model")
        sampler = Sampler(f"sampler-{uuid.uuid4().hex[:12]}", base, model_path, client)
        with self._lock:
            self.samplers[sampler.sampler_id] = sampler
        return sampler

    def create_sampling_session(self, body: Any, headers: dict[str, str]) -> Reply:
        import tinker

        request = _tinker_request(tinker.types.CreateSamplingSessionRequest, body)
        sampler = self._open_sampler(request.base_model, request.model_path)
        return Reply(200, {"type": "create_sampling_session", "sampling_session_id": sampler.sampler_id})

    def asample(self, body: Any, headers: dict[str, str]) -> Reply:
        import tinker

        request = _tinker_request(tinker.types.SampleRequest, body)
        if request.sampling_session_id is not None:
            sampler = self._sampler(request.sampling_session_id)
        else:
            sampler = self._open_sampler(request.base_model, request.model_path)
        prompt = model_input_from_json(request.prompt.model_dump(mode="json"))
        params = sampling_params_from_sdk(request.sampling_params)
        n = request.num_samples

        def start() -> Any:
            sampled = sampler.client.sample(prompt, n, params)
            scored = sampler.client.compute_logprobs(prompt) if request.prompt_logprobs else None
            return _WithPromptLogprobs(sampled, scored, prompt)

        key = ("sample", request.sampling_session_id, request.seq_id) if request.sampling_session_id else None
        pending = self.futures.submit("/api/v1/asample", key, start, encode_sample_response)
        if self.faults.take("/api/v1/asample", ("hang",)) is not None:
            pending.future = NeverDone()
        ids = [f"{pending.request_id}-seq{i}" for i in range(n)]
        return self._accepted(pending, {"sample_sequence_ids": ids})

    # ---- results

    def retrieve_future(self, body: Any, headers: dict[str, str], poll: float = 10.0) -> Reply:
        request_id = str(body.get("request_id"))
        pending = self.futures.get(request_id)
        if pending is None:
            raise ApiError(410, f"no pending request {request_id!r} (expired or from another server run)")
        if self.faults.take(pending.route, ("drop_future",)) is not None:
            self.futures.forget(request_id)
            raise ApiError(410, f"request {request_id!r} was dropped")
        if pending.payload is None:
            try:
                result = pending.future.result(timeout=poll)
            except TimeoutError:
                return Reply(408, {"type": "try_again", "request_id": request_id, "queue_state": "active"})
            except Exception as exc:  # noqa: BLE001 - a failed request: Tinker reports it in a 200 body
                pending.payload = _error_payload(exc)
            else:
                try:
                    pending.payload = pending.encode(result)
                except ApiError as exc:
                    pending.payload = {"error": exc.detail, "category": "user"}
                except Exception as exc:  # noqa: BLE001 - e.g. the checkpoint index write failed
                    pending.payload = _error_payload(exc)
        payload = pending.payload
        self.futures.delivered(request_id)
        if isinstance(payload, bytes):
            return Reply(200, payload, PROTOBUF)
        return Reply(200, payload)


class _WithPromptLogprobs:
    """A sample future that, when asked, carries the prompt's logprobs (scored beside the sample)."""

    def __init__(self, sampled: Any, scored: Any, prompt: ModelInput) -> None:
        self._sampled, self._scored, self._prompt = sampled, scored, prompt

    def done(self) -> bool:
        return bool(self._sampled.done() and (self._scored is None or self._scored.done()))

    def result(self, timeout: float | None = None) -> SampleResponse:
        response = self._sampled.result(timeout)
        if self._scored is None:
            return response
        return SampleResponse(response.sequences, tuple(self._scored.result(timeout)))

