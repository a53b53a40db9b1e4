"""The Tinker wire format, both ways, for the local server.

The SDK sends ``forward_backward`` bodies as protobuf (schema in the SDK's
``tinker/proto``) and asks for ``forward_backward`` and ``sample`` results as
protobuf; every other body is JSON matching the SDK's pydantic request types.
We parse with the SDK's own schema and models, so the server cannot drift from
what the client sends.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.ports import (
    Datum,
    ForwardBackwardOutput,
    ModelInput,
    SampleResponse,
    SamplingParams,
    TensorData,
)
from tinkex_cookbook.serve.limits import DEFAULT_MAX_BODY_BYTES, MIB, BodyTooLargeError

PROTOBUF = "application/x-protobuf"
CONTENT_ENCODINGS = ("identity", "gzip", "zstd")
"""What a request's ``Content-Encoding`` may be (the SDK sends ``zstd`` when its client config asks it to)."""


def _pb() -> Any:
    from tinker.proto import tinker_public_pb2

    return tinker_public_pb2


@dataclass(frozen=True)
class ForwardBackwardCall:
    """One decoded ``/forward_backward`` request."""

    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float] | None
    forward_only: bool
    data: tuple[Datum, ...]


def _tensor_from_proto(msg: Any, field: str) -> TensorData:
    pb = _pb()
    dtypes = {pb.DTYPE_FLOAT32: np.float32, pb.DTYPE_INT64: np.int64, pb.DTYPE_INT32: np.int32}
    if msg.dtype not in dtypes:
        raise ConfigError(f"loss_fn_inputs[{field!r}] has unsupported dtype {msg.dtype}; send float32 or int64")
    if msg.HasField("sparse_csr"):
        raise ConfigError(f"loss_fn_inputs[{field!r}] is sparse; this server accepts dense tensors only")
    values = np.frombuffer(msg.dense, dtype=dtypes[msg.dtype])
    shape = tuple(msg.shape) or (values.size,)
    return TensorData.from_numpy(values.reshape(shape))


def _tokens_from_chunks(chunks: Any) -> list[int]:
    tokens: list[int] = []
    for chunk in chunks:
        if chunk.WhichOneof("chunk") != "encoded_text":
            raise ConfigError("model_input holds a non-text chunk (image/audio); this server takes text only")
        tokens.extend(np.frombuffer(chunk.encoded_text.tokens, dtype=np.int32).tolist())
    return tokens


def _loss_config(msg: Any) -> dict[str, float] | None:
    config: dict[str, float] = {}
    for key, value in msg.loss_fn_config_v2.items():
        if value.WhichOneof("value") == "text":
            raise ConfigError(f"loss_fn_config[{key!r}] is text; this server takes numbers only")
        config[key] = float(value.number)
    for key, number in msg.loss_fn_config.items():
        config.setdefault(key, float(number))
    return config or None


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _decoder(body: bytes, encoding: str, max_bytes: int) -> tuple[_Reader, tuple[type[Exception], ...]]:
    """A reader of ``body`` decoded, and the errors it raises on data that is not valid for the encoding."""
    if encoding == "gzip":
        return gzip.GzipFile(fileobj=io.BytesIO(body)), (OSError, EOFError, zlib.error)
    if encoding == "zstd":
        import zstandard

        # a frame may ask for a window of up to 2 GiB: allow what the cap needs, or 8 MiB, the most that
        # compression levels up to 19 use whatever the size
        window = min(max(8 * MIB, 1 << (max_bytes - 1).bit_length()), 1 << 31)
        reader = zstandard.ZstdDecompressor(max_window_size=window).stream_reader(
            io.BytesIO(body), read_across_frames=True)
        return reader, (zstandard.ZstdError,)
    raise ConfigError(f"Content-Encoding {encoding!r} is not supported; send one of {', '.join(CONTENT_ENCODINGS)}")


def decompress(body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """``body`` decoded as its ``Content-Encoding`` says, a MiB at a time, so it never holds more than
    ``max_bytes`` of output: a few KB that would inflate to gigabytes raise ``BodyTooLargeError`` instead.
    A body that is not valid for its encoding raises ``ConfigError``."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    reader, invalid = _decoder(body, encoding, max_bytes)
    out = bytearray()
    try:
        while chunk := reader.read(min(MIB, max_bytes + 1 - len(out))):
            out += chunk
            if len(out) > max_bytes:
                raise BodyTooLargeError(max_bytes)
    except invalid as exc:
        raise ConfigError(f"the body cannot be decoded as {encoding}: {exc}") from None
    return bytes(out)


def decode_forward_backward(body: bytes, content_encoding: str | None = None) -> ForwardBackwardCall:
    """A protobuf ``ForwardBackwardRequest`` (decompressed first if the client says it is compressed)."""
    if content_encoding:
        body = decompress(body, content_encoding, DEFAULT_MAX_BODY_BYTES)
    msg = _pb().ForwardBackwardRequest()
    msg.ParseFromString(body)
    data = tuple(
        Datum(
            ModelInput.from_ints(_tokens_from_chunks(datum.model_input)),
            {name: _tensor_from_proto(tensor, name) for name, tensor in datum.loss_fn_inputs.items()},
        )
        for datum in msg.data
    )
    return ForwardBackwardCall(msg.model_id, int(msg.seq_id), msg.loss_fn, _loss_config(msg),
                               bool(msg.forward_only), data)


def encode_forward_backward_output(output: ForwardBackwardOutput) -> bytes:
    """Per-datum outputs packed as one ``ArrayRecord`` of batched tensors, as Tinker returns them."""
    pb = _pb()
    msg = pb.ForwardBackwardOutput(loss_fn_output_type=output.loss_fn_output_type)
    for key, value in output.metrics.items():
        msg.metrics[key] = float(value)
    if output.loss_fn_outputs:
        record = msg.loss_fn_outputs.add(type_tag=output.loss_fn_output_type,
                                         num_datums=len(output.loss_fn_outputs))
        for name in output.loss_fn_outputs[0]:
            tensors = [row[name] for row in output.loss_fn_outputs]
            dtype = np.int64 if tensors[0].dtype == "int64" else np.float32
            arrays = [np.ascontiguousarray(t.to_numpy(), dtype=dtype) for t in tensors]
            offsets = np.cumsum([0] + [a.nbytes for a in arrays], dtype=np.int64)
            batched = record.fields[name]
            batched.data = b"".join(a.tobytes() for a in arrays)
            batched.offsets = offsets.tobytes()
            batched.dtype = pb.DTYPE_INT64 if dtype is np.int64 else pb.DTYPE_FLOAT32
            batched.trailing_shape.extend(tensors[0].shape[1:])
    return msg.SerializeToString()


def encode_sample_response(response: SampleResponse) -> bytes:
    """Tokens as int32, logprobs as float32; a missing prompt logprob is NaN on the wire."""
    pb = _pb()
    msg = pb.SampleResponse()
    for seq in response.sequences:
        out = msg.sequences.add()
        out.stop_reason = pb.STOP_REASON_STOP if seq.stop_reason == "stop" else pb.STOP_REASON_LENGTH
        out.tokens = np.asarray(seq.tokens, dtype=np.int32).tobytes()
        if seq.logprobs is not None:
            out.logprobs = np.asarray(seq.logprobs, dtype=np.float32).tobytes()
    if response.prompt_logprobs is not None:
        values = [np.nan if x is None else x for x in response.prompt_logprobs]
        msg.prompt_logprobs = np.asarray(values, dtype=np.float32).tobytes()
    return msg.SerializeToString()


def model_input_from_json(raw: Any) -> ModelInput:
    """The JSON ``ModelInput`` of a sample request (text chunks only)."""
    import tinker

    model_input = tinker.ModelInput.model_validate(raw)
    if any(getattr(chunk, "type", "encoded_text") != "encoded_text" for chunk in model_input.chunks):
        raise ConfigError("prompt holds a non-text chunk (image/audio); this server takes text only")
    return ModelInput.from_ints(model_input.to_ints())


def sampling_params_from_sdk(params: Any) -> SamplingParams:
    stop = params.stop
    return SamplingParams(
        max_tokens=params.max_tokens, temperature=params.temperature, top_k=params.top_k,
        top_p=params.top_p, seed=params.seed, stop=tuple(stop) if isinstance(stop, list) else stop,
    )
