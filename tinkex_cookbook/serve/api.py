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

import dataclasses
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, CookbookError, InvalidKeyError, shown
from tinkex_cookbook.ports import (
    AdamParams,
    BlobStore,
    ModelInput,
    SampleResponse,
    SamplingClient,
    SamplingParams,
    ThreadFuture,
    TrainingClient,
    TrainingService,
)
from tinkex_cookbook.serve.fair import Chunk, FairScheduler
from tinkex_cookbook.serve.faults import FaultPlan
from tinkex_cookbook.serve.futures import Conflict, FutureTable, NeverDone, Pending
from tinkex_cookbook.serve.limits import OverLimit, ServeLimits
from tinkex_cookbook.serve.wire import (
    PROTOBUF,
    ForwardBackwardCall,
    decode_forward_backward,
    encode_forward_backward_output,
    encode_sample_response,
    model_input_from_json,
    sampling_params_from_sdk,
)
from tinkex_cookbook.train.model_names import model_name_problem

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
NO_RETRY = {"x-should-retry": "false"}
"""The SDK retries 408, 409, 429 and 5xx unless told not to; a conflict is not worth retrying."""

SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:=+-]{0,199}")
"""Session ids, model ids and checkpoint names: they become parts of blob keys, so never ``..`` or ``/``."""

SHOWN = 120
"""Characters of a client's value echoed in an error: enough to recognise it, never the whole input back."""
MAX_SEED = 2**63
MAX_TOKEN_ID = 2**31

REQUEST_TYPES = {
    "/api/v1/create_model": "CreateModelRequest",
    "/api/v1/get_info": "GetInfoRequest",
    "/api/v1/optim_step": "OptimStepRequest",
    "/api/v1/save_weights": "SaveWeightsRequest",
    "/api/v1/save_weights_for_sampler": "SaveWeightsForSamplerRequest",
    "/api/v1/load_weights": "LoadWeightsRequest",
    "/api/v1/create_sampling_session": "CreateSamplingSessionRequest",
    "/api/v1/asample": "SampleRequest",
    "/api/v1/retrieve_future": "FutureRetrieveRequest",
}
"""The SDK's pydantic type of each JSON route's body that this server reads: checked in one place (``post``)."""
PROTOBUF_ROUTES = frozenset({"/api/v1/forward_backward"})


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


@dataclass(frozen=True)
class Incoming:
    """One POST as a handler sees it: the checked body, the headers, and a digest of what was sent."""

    body: Any
    headers: dict[str, str]
    fingerprint: str


@dataclass
class Model:
    model_id: str
    base_model: str
    rank: int
    client: TrainingClient
    session: str
    """The client session that created it: finishing that session frees it."""


@dataclass
class Sampler:
    sampler_id: str
    base_model: str
    model_path: str | None
    client: SamplingClient
    owner: str
    """Whose turn its work takes in the fair sampling queue: the client session that opened it."""


def _tinker_request(model: type, body: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors(include_url=False)]
        raise ApiError(400, f"bad {model.__name__}: {shown(errors, 2000)}") from None


def _fingerprint(path: str, request: Any) -> str:
    """What a request asked for, to tell a client's retry (same digest) from a reuse of its sequence id.

    Over the parsed request with its defaults filled in, so an equivalent retry (a field sent equal
    to its default, ``1.0`` for ``1``) has the same digest as the first try."""
    body = request.model_dump(mode="json") if hasattr(request, "model_dump") else request
    raw = body if isinstance(body, bytes) else json.dumps(body, sort_keys=True, default=repr).encode()
    return hashlib.sha256(path.encode() + b"\0" + raw).hexdigest()


def _cut(text: str, limit: int = 1000) -> str:
    """A message that may quote a client's input, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        raise ApiError(400, f"bad {what} {shown(value, SHOWN)}: use letters, digits and _ . : = + - (at most 200, "
                            "not starting with '.' or '-')")
    return value


def _checked_model_name(name: str) -> str:
    wrong = model_name_problem(name)
    if wrong is not None:
        raise ApiError(400, f"bad base_model {shown(name, SHOWN)}: it {wrong}; this server loads models of its catalog "
                            "and its models folder by name")
    return name


def _error_payload(exc: BaseException) -> dict[str, str]:
    """A failed request as Tinker reports it: the message and whose fault it was."""
    category = "user" if isinstance(exc, (ValueError, LookupError, TypeError)) else "server"
    return {"error": f"{type(exc).__name__}: {exc}", "category": category}


class TinkerAPI:
    """Sessions, models, samplers and pending futures of one server."""

    def __init__(self, service: TrainingService, blob_store: BlobStore, faults: FaultPlan | None = None,
                 limits: ServeLimits | None = None) -> None:
        self.service = service
        self.blob_store = blob_store
        self.faults = faults or FaultPlan()
        self.limits = limits or ServeLimits()
        self.futures = FutureTable(unfetched=self.limits.max_queued)
        self.models: dict[str, Model] = {}
        self.samplers: OrderedDict[str, Sampler] = OrderedDict()
        self.last_seen: dict[str, float] = {}
        """Client sessions holding models or sampling sessions -> when they last sent a request or heartbeat."""
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._setup = ThreadPoolExecutor(1, "tinker-serve-setup")
        self._sampling = FairScheduler()

    def close(self) -> None:
        self._sampling.close()
        self._setup.shutdown(wait=True)

    # ---- routing

    def post_routes(self) -> dict[str, Callable[[Any, Incoming], Reply]]:
        return {
            # The SDK fetches its config through a connection pool it never closes; closing the
            # connection from our side keeps a socket from leaking per client.
            "/api/v1/client/config": lambda request, call: Reply(200, CLIENT_CONFIG, headers={"Connection": "close"}),
            "/api/v1/client/dynamic_config": lambda request, call: Reply(200, {}),
            "/api/v1/telemetry": lambda request, call: Reply(200, {"status": "accepted"}),
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
            "/api/v1/cancel_future": lambda request, call: Reply(200, {}),
            "/api/v1/get_server_capabilities": lambda request, call: self.capabilities(),
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
        raise ApiError(404, f"no route GET {shown(path, SHOWN)}")

    def post(self, path: str, body: Any, headers: dict[str, str]) -> Reply:
        """Check the body once (a JSON object of the route's SDK request type, or protobuf bytes where
        the SDK sends those), then route. Every mistake in a request is a 4xx saying what is wrong."""
        if path.startswith("/api/v1/sessions/") and path.endswith("/finish"):
            return self.finish_session(path.removeprefix("/api/v1/sessions/").removesuffix("/finish"))
        route = self.post_routes().get(path)
        if route is None:
            raise ApiError(404, f"no route POST {shown(path, SHOWN)}; this server speaks the training and sampling subset "
                                "of the Tinker API")
        request = body
        if isinstance(body, bytes) != (path in PROTOBUF_ROUTES):
            wanted = f"a protobuf body ({PROTOBUF})" if path in PROTOBUF_ROUTES else "a JSON body"
            raise ApiError(415, f"POST {path} takes {wanted}, as SDK 0.38 sends it")
        if not isinstance(body, bytes):
            if not isinstance(body, Mapping):
                raise ApiError(400, f"POST {path} takes a JSON object; got {type(body).__name__}")
            if path in REQUEST_TYPES:
                import tinker

                request = _tinker_request(getattr(tinker.types, REQUEST_TYPES[path]), body)
        try:
            return route(request, Incoming(body, headers, _fingerprint(path, request)))
        except OverLimit as exc:
            raise ApiError(400, str(exc)) from None
        except Conflict as exc:
            return Reply(409, {"detail": f"POST {path} reuses {_identity(exc.key)}, already used by "
                                         f"{exc.earlier.route} request {exc.earlier.request_id} with other "
                                         "content; a new request needs a sequence id of its own (a retry must "
                                         "repeat the request exactly)"}, headers=NO_RETRY)
        except CookbookError as exc:  # the backend refused what the request named (a model, a path)
            if isinstance(exc, InvalidKeyError) or (
                    isinstance(exc, (ValueError, LookupError)) and not isinstance(exc, BlobStoreError)):
                raise ApiError(400, f"{type(exc).__name__}: {_cut(str(exc))}") from None
            raise

    def capabilities(self) -> Reply:
        names = getattr(self.service, "model_names", list)()
        return Reply(200, {"supported_models": [
            {"model_name": name, "trainable": True, "sampleable": True} for name in names]})

    # ---- sessions and models

    def create_session(self, request: Any, call: Incoming) -> Reply:
        session_id = f"session-{uuid.uuid4().hex[:12]}"  # nothing is kept per session: clients cannot fill memory
        return Reply(200, {"type": "create_session", "session_id": session_id})

    def session_heartbeat(self, request: Any, call: Incoming) -> Reply:
        session_id = request.get("session_id")
        with self._lock:
            if isinstance(session_id, str) and session_id in self.last_seen:
                self.last_seen[session_id] = self.clock()
        return Reply(200, {"type": "session_heartbeat"})

    def finish_session(self, session_id: str) -> Reply:
        """The SDK finishes its session when a client closes: its models and sampling sessions are freed."""
        with self._lock:
            for model_id in [m.model_id for m in self.models.values() if m.session == session_id]:
                del self.models[model_id]
            for sampler_id in [s.sampler_id for s in self.samplers.values() if s.owner == session_id]:
                del self.samplers[sampler_id]
            self.last_seen.pop(session_id, None)
        return Reply(200, {})

    def _touch(self, session_id: str) -> None:
        """Call with the lock held."""
        self.last_seen[session_id] = self.clock()

    def _forget_unused_sessions(self) -> None:
        """Call with the lock held: keep ``last_seen`` to the sessions that still hold something."""
        holding = {m.session for m in self.models.values()} | {s.owner for s in self.samplers.values()}
        for session_id in [s for s in self.last_seen if s not in holding]:
            del self.last_seen[session_id]

    def _model(self, model_id: str) -> Model:
        with self._lock:
            model = self.models.get(model_id)
            if model is not None:
                self._touch(model.session)
        if model is None:
            raise ApiError(404, f"unknown model_id {shown(model_id, SHOWN)} (never created, its client session "
                                "finished, or freed after the session was idle past session_idle_seconds while "
                                "max_models was full); create it with create_model")
        return model

    def _sampler(self, sampler_id: str) -> Sampler:
        with self._lock:
            sampler = self.samplers.get(sampler_id)
            if sampler is not None:
                self.samplers.move_to_end(sampler_id)
                self._touch(sampler.owner)
        if sampler is None:
            raise ApiError(404, f"unknown sampling session {shown(sampler_id, SHOWN)} (never opened, its client session "
                                "finished, or closed as its client's least recently used past the limit "
                                f"max_samplers={self.limits.max_samplers})")
        return sampler

    def _accepted(self, pending: Pending, extra: dict[str, Any] | None = None) -> Reply:
        body: dict[str, Any] = {"request_id": pending.request_id}
        body.update(extra or pending.extra or {})
        return Reply(200, body)

    def _queue(self, route: str, key: Any, start: Callable[[], Any], encode: Callable[[Any], Any],
               call: Incoming) -> Pending:
        """Start (or find, for a retry) the request's work; refused when too much is already waiting."""
        unfinished = self.futures.unfinished()
        if unfinished >= self.limits.max_queued:
            raise ApiError(429, f"{unfinished} requests are queued on this server (limit max_queued="
                                f"{self.limits.max_queued}, option `serve --limit max_queued=N`); retry later")
        pending = self.futures.submit(route, key, start, encode, fingerprint=call.fingerprint)
        if self.faults.take(route, ("hang",)) is not None:
            pending.future = NeverDone()
        return pending

    def _submit(self, route: str, key: Any, start: Callable[[], Any], encode: Callable[[Any], Any],
                call: Incoming) -> Reply:
        return self._accepted(self._queue(route, key, start, encode, call))

    def _new_model(self, model_id: str, base_model: str, rank: int, seed: int | None, session: str) -> Model:
        client = self.service.create_lora_training_client(base_model, rank=rank, seed=seed)
        model = Model(model_id, base_model, rank, client, session)
        with self._lock:
            self.models[model_id] = model
            self._touch(session)
        return model

    def _room_for_a_model(self, model_id: str, session: str) -> None:
        """Past ``max_models``, first free the models of sessions idle past ``session_idle_seconds``
        (the least recently seen first): a client that vanished without finishing holds nothing for long."""
        with self._lock:
            if session in self.last_seen:  # a new session is kept once its model exists (``_new_model``)
                self._touch(session)
            count = len(self.models) + (model_id not in self.models)
            if count > self.limits.max_models:
                idle_since = self.clock() - self.limits.session_idle_seconds
                idle = sorted((seen, s) for s, seen in self.last_seen.items() if seen < idle_since and s != session)
                for _, stale in idle:
                    if count <= self.limits.max_models:
                        break
                    for stale_id in [m.model_id for m in self.models.values() if m.session == stale]:
                        del self.models[stale_id]
                        count -= 1
                self._forget_unused_sessions()
        self.limits.check("max_models", count, "models on this server")

    def create_model(self, request: Any, call: Incoming) -> Reply:
        """Model ids are ``<session>:train:<seq>``, as Tinker derives them (the SDK relies on it)."""
        rank = request.lora_config.rank if request.lora_config else 32
        seed = request.lora_config.seed if request.lora_config else None
        if rank < 1:
            raise ApiError(400, f"lora_config.rank={rank} must be >= 1")
        self.limits.check("max_lora_rank", rank, "lora_config.rank")
        if seed is not None and not 0 <= seed < MAX_SEED:
            raise ApiError(400, f"lora_config.seed={seed} must be in [0, 2**63)")
        _checked_model_name(request.base_model)
        session_id = _checked_id(request.session_id, "session_id")
        model_id = f"{session_id}:train:{request.model_seq_id}"
        self._room_for_a_model(model_id, session_id)

        def create() -> dict[str, Any]:
            self._new_model(model_id, request.base_model, rank, seed, session_id)
            return {"type": "create_model", "model_id": model_id}

        return self._submit("/api/v1/create_model", ("create_model", model_id),
                            lambda: ThreadFuture(self._setup.submit(create)), lambda result: result, call)

    def get_info(self, request: Any, call: Incoming) -> Reply:
        model = self._model(request.model_id)
        info = model.client.get_info()
        return Reply(200, {
            "type": "get_info", "model_id": model.model_id, "model_name": model.base_model,
            "is_lora": True, "lora_rank": model.rank,
            "model_data": {"arch": "lora", "model_name": model.base_model, "tokenizer_id": info.tokenizer_id},
        })

    # ---- training

    def _decoded(self, body: bytes, headers: dict[str, str]) -> ForwardBackwardCall:
        try:
            return decode_forward_backward(body, headers.get("content-encoding"))
        except Exception as exc:  # noqa: BLE001 - the body is all the decoder reads: any failure is the sender's
            raise ApiError(400, f"bad forward_backward body: {type(exc).__name__}: {_cut(str(exc))}") from None

    def _check_batch(self, data: tuple[Any, ...]) -> None:
        self.limits.check("max_datums", len(data), "datums in this forward_backward")
        lengths = [datum.model_input.length for datum in data]
        if data:
            longest = max(range(len(data)), key=lengths.__getitem__)
            self.limits.check("max_prompt_tokens", lengths[longest], f"tokens of datum {longest}")
        self.limits.check("max_batch_tokens", sum(lengths), "tokens in this forward_backward")

    def forward_backward(self, body: bytes, call: Incoming) -> Reply:
        decoded = self._decoded(body, call.headers)
        model = self._model(decoded.model_id)
        self._check_batch(decoded.data)
        method = model.client.forward if decoded.forward_only else model.client.forward_backward
        return self._submit("/api/v1/forward_backward", _seq_key(decoded.model_id, decoded.seq_id),
                            lambda: method(decoded.data, decoded.loss_fn, decoded.loss_fn_config),
                            encode_forward_backward_output, call)

    def optim_step(self, request: Any, call: Incoming) -> Reply:
        import tinker

        model = self._model(request.model_id)
        raw = request.optim_params
        if not isinstance(raw, tinker.types.AdamParams):
            raise ApiError(400, "optim_step takes adam_params; this server trains with Adam only")
        values = {name: getattr(raw, name) for name in AdamParams.__dataclass_fields__}
        bad = {name: value for name, value in values.items() if not math.isfinite(value)}
        if bad:
            raise ApiError(400, f"adam_params {bad} must be finite numbers")
        params = AdamParams(**values)
        return self._submit("/api/v1/optim_step", _seq_key(model.model_id, request.seq_id),
                            lambda: model.client.optim_step(params),
                            lambda result: {"type": "optim_step", "metrics": dict(result.metrics)}, call)

    # ---- checkpoints

    def _index_key(self, tinker_path: Any) -> str:
        prefix = "tinker://"
        if not isinstance(tinker_path, str):
            raise ApiError(400, f"bad checkpoint path {shown(tinker_path, SHOWN)}: expected a tinker:// path")
        parts = tinker_path[len(prefix):].split("/") if tinker_path.startswith(prefix) else []
        if len(parts) != 3 or parts[1] not in ("weights", "sampler_weights") or \
                not all(SAFE_ID.fullmatch(part) for part in parts):
            raise ApiError(400, f"bad checkpoint path {shown(tinker_path, SHOWN)}: expected tinker://<model_id>/weights/<name> "
                                "or tinker://<model_id>/sampler_weights/<name>, each part of letters, digits "
                                "and _ . : = + - (never '..')")
        return f"{CHECKPOINT_INDEX}/{parts[0]}/{parts[1]}/{parts[2]}.json"

    def _record(self, model: Model, kind: str, name: str, backend_path: str) -> str:
        tinker_path = f"tinker://{model.model_id}/{kind}/{name}"
        record = {"path": backend_path, "base_model": model.base_model, "rank": model.rank}
        self.blob_store.write(self._index_key(tinker_path), json.dumps(record).encode())
        return tinker_path

    def resolve(self, tinker_path: str) -> dict[str, Any]:
        """The backend's own path (and base model) for a ``tinker://`` path this server handed out."""
        key = self._index_key(tinker_path)
        try:
            record = json.loads(self.blob_store.read(key))
        except BlobNotFoundError:
            raise ApiError(404, f"unknown checkpoint {shown(tinker_path, SHOWN)}: no checkpoint of that name was saved "
                                "on this server's blob store") from None
        except (BlobStoreError, ValueError) as exc:
            raise ApiError(400, f"checkpoint {shown(tinker_path, SHOWN)} cannot be read: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise ApiError(400, f"checkpoint {shown(tinker_path, SHOWN)} has a broken index record in the blob store")
        return record

    def _checkpoint_name(self, name: str | None) -> str:
        return _checked_id(name, "checkpoint name") if name is not None else f"auto-{uuid.uuid4().hex[:12]}"

    def save_weights(self, request: Any, call: Incoming) -> Reply:
        model = self._model(request.model_id)
        name = self._checkpoint_name(request.path)
        future = model.client.save_state

        def encode(result: Any) -> dict[str, Any]:
            return {"type": "save_weights", "path": self._record(model, "weights", name, result.path)}

        return self._submit("/api/v1/save_weights", _seq_key(model.model_id, request.seq_id),
                            lambda: future(name), encode, call)

    def save_weights_for_sampler(self, request: Any, call: Incoming) -> Reply:
        model = self._model(request.model_id)
        name = self._checkpoint_name(request.path)
        with_session = request.path is None
        owner = model.session

        def encode(result: Any) -> dict[str, Any]:
            path = self._record(model, "sampler_weights", name, result.path)
            reply: dict[str, Any] = {"type": "save_weights_for_sampler", "path": path}
            if with_session:
                reply["sampling_session_id"] = self._open_sampler(model.base_model, path, owner).sampler_id
            return reply

        return self._submit("/api/v1/save_weights_for_sampler", _seq_key(model.model_id, request.seq_id),
                            lambda: model.client.save_weights_for_sampler(name), encode, call)

    def load_weights(self, request: Any, call: Incoming) -> Reply:
        """Into an existing model (``model_id``), or a new one created from the checkpoint
        (``session_id`` + ``model_seq_id``, what ``create_training_client_from_state*`` sends).

        The backend's ``load_state`` restores weights and optimizer state together, so a
        weights-only load (``optimizer: false``) also restores the optimizer here.
        """
        tinker_path = request.path
        record = self.resolve(tinker_path)
        if request.model_id is not None:
            model = self._model(request.model_id)
            return self._submit("/api/v1/load_weights", _seq_key(model.model_id, request.seq_id),
                                lambda: model.client.load_state(record["path"]),
                                lambda result: {"type": "load_weights", "path": tinker_path,
                                                "model_id": model.model_id}, call)
        if request.session_id is None or request.model_seq_id is None:
            raise ApiError(400, "load_weights needs model_id, or session_id and model_seq_id")
        session_id = _checked_id(request.session_id, "session_id")
        model_id = f"{session_id}:train:{request.model_seq_id}"
        base_model = _checked_model_name(request.base_model or record["base_model"])
        self._room_for_a_model(model_id, session_id)

        def create_and_load() -> dict[str, Any]:
            model = self._new_model(model_id, base_model, int(record["rank"]), None, session_id)
            model.client.load_state(record["path"]).result()
            return {"type": "load_weights", "path": tinker_path, "model_id": model_id}

        return self._submit("/api/v1/load_weights", ("create_model", model_id),
                            lambda: ThreadFuture(self._setup.submit(create_and_load)), lambda result: result, call)

    # ---- sampling

    def _sampling_client(self, base_model: str | None, model_path: str | None) -> tuple[SamplingClient, str]:
        if model_path is not None:
            record = self.resolve(model_path)
            return self.service.create_sampling_client(model_path=record["path"]), record["base_model"]
        if base_model is not None:
            return self.service.create_sampling_client(base_model=_checked_model_name(base_model)), base_model
        raise ApiError(400, "a sampling session needs model_path or base_model")

    def _open_sampler(self, base_model: str | None, model_path: str | None, owner: str) -> Sampler:
        """A sampling session kept by id; past ``max_samplers`` the least recently used one of the
        client session holding the most is closed, so a client opening many closes its own."""
        client, base = self._sampling_client(base_model, model_path)
        sampler = Sampler(f"sampler-{uuid.uuid4().hex[:12]}", base, model_path, client, owner)
        with self._lock:
            self.samplers[sampler.sampler_id] = sampler
            self._touch(owner)
            while len(self.samplers) > self.limits.max_samplers:
                held: dict[str, int] = {}
                for kept in self.samplers.values():
                    held[kept.owner] = held.get(kept.owner, 0) + 1
                most = max(held.values())
                victim = next(s for s in self.samplers.values()
                              if held[s.owner] == most and s.sampler_id != sampler.sampler_id)
                del self.samplers[victim.sampler_id]
            self._forget_unused_sessions()
        return sampler

    def create_sampling_session(self, request: Any, call: Incoming) -> Reply:
        owner = _checked_id(request.session_id, "session_id")
        sampler = self._open_sampler(request.base_model, request.model_path, owner)
        return Reply(200, {"type": "create_sampling_session", "sampling_session_id": sampler.sampler_id})

    def _sampling_params(self, request: Any, prompt: ModelInput) -> SamplingParams:
        limits = self.limits
        if request.num_samples < 1:
            raise ApiError(400, f"num_samples={request.num_samples} must be >= 1")
        limits.check("max_samples", request.num_samples, "num_samples")
        if prompt.length < 1:
            raise ApiError(400, "the prompt is empty; sampling needs at least one token")
        limits.check("max_prompt_tokens", prompt.length, "prompt tokens")
        tokens = prompt.to_ints()
        if not all(0 <= t < MAX_TOKEN_ID for t in tokens):
            raise ApiError(400, f"prompt token ids must be in [0, 2**31); got {min(tokens)}..{max(tokens)}")
        params = sampling_params_from_sdk(request.sampling_params)
        max_tokens = limits.max_new_tokens if params.max_tokens is None else params.max_tokens
        if max_tokens < 1:
            raise ApiError(400, f"sampling_params.max_tokens={max_tokens} must be >= 1")
        limits.check("max_new_tokens", max_tokens, "sampling_params.max_tokens")
        if not (math.isfinite(params.temperature) and params.temperature >= 0
                and math.isfinite(params.top_p) and 0 < params.top_p <= 1):
            raise ApiError(400, f"sampling_params temperature={params.temperature} top_p={params.top_p}: "
                                "temperature must be a finite number >= 0 and top_p in (0, 1]")
        if params.seed is not None and not 0 <= params.seed < MAX_SEED:
            raise ApiError(400, f"sampling_params.seed={params.seed} must be in [0, 2**63)")
        return dataclasses.replace(params, max_tokens=max_tokens)

    def _sample_chunks(self, client: SamplingClient, prompt: ModelInput, n: int, params: SamplingParams,
                       prompt_logprobs: bool) -> list[Chunk]:
        """``n`` samples as chunks of at most ``sample_chunk_tokens`` cache tokens (at least one sample each).

        A seeded request keeps its seed for the first chunk and derives one per later chunk, so
        the same request always gives the same samples, and a request that fits one chunk gives
        exactly what the backend gives for it.
        """
        assert params.max_tokens is not None
        per_chunk = max(1, self.limits.sample_chunk_tokens // (prompt.length + params.max_tokens))
        chunks: list[Chunk] = []
        for index, first in enumerate(range(0, n, per_chunk)):
            size = min(per_chunk, n - first)
            seeded = params if params.seed is None or index == 0 else dataclasses.replace(
                params, seed=(params.seed * 1_000_003 + index) % MAX_SEED)
            chunks.append(lambda size=size, seeded=seeded: client.sample(prompt, size, seeded))
        if prompt_logprobs:
            chunks.append(lambda: client.compute_logprobs(prompt))
        return chunks

    def asample(self, request: Any, call: Incoming) -> Reply:
        try:
            prompt = model_input_from_json(request.prompt.model_dump(mode="json"))
        except CookbookError as exc:
            raise ApiError(400, str(exc)) from None
        params = self._sampling_params(request, prompt)  # before any model is opened for it
        n = request.num_samples
        if request.sampling_session_id is not None:
            sampler = self._sampler(request.sampling_session_id)
            client, owner = sampler.client, sampler.owner
        else:  # a one-off sampler, not kept; such requests name no session, so they share one turn
            client, _ = self._sampling_client(request.base_model, request.model_path)
            owner = "one-off requests"
        chunks = self._sample_chunks(client, prompt, n, params, bool(request.prompt_logprobs))

        def combine(results: list[Any]) -> SampleResponse:
            scored = tuple(results.pop()) if request.prompt_logprobs else None
            return SampleResponse(tuple(seq for part in results for seq in part.sequences), scored)

        key = _seq_key(request.sampling_session_id, request.seq_id) if request.sampling_session_id else None
        pending = self._queue("/api/v1/asample", key, lambda: self._sampling.submit(owner, chunks, combine),
                              encode_sample_response, call)
        ids = [f"{pending.request_id}-seq{i}" for i in range(n)]
        return self._accepted(pending, {"sample_sequence_ids": ids})

    # ---- results

    def retrieve_future(self, request: Any, call: Incoming, poll: float = 10.0) -> Reply:
        request_id = request.request_id
        pending = self.futures.get(request_id)
        if pending is None:
            raise ApiError(410, f"no pending request {shown(request_id, SHOWN)} (expired or from another server run)")
        if self.faults.take(pending.route, ("drop_future",)) is not None:
            self.futures.forget(request_id)
            raise ApiError(410, f"request {shown(request_id, SHOWN)} was dropped")
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


def _identity(key: Any) -> str:
    if isinstance(key, tuple) and len(key) == 3 and key[0] == "seq":
        return f"seq_id {key[2]} of {key[1]}"
    return f"model id {key[1]}" if isinstance(key, tuple) and len(key) == 2 else repr(key)


def _seq_key(owner: str, seq_id: int | None) -> tuple[str, str, int] | None:
    """A request's identity: its model (or sampling session) and sequence id; none without a sequence id."""
    return None if seq_id is None else ("seq", owner, seq_id)
