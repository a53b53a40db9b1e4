"""Conversion between the cookbook's training types and the Tinker SDK's, both ways.

Only the ``tinker`` adapter and its server counterpart need this; the SDK is
imported when a conversion is called, never at module import.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from tinkex_cookbook.ports import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    ModelInput,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    TensorData,
)

_Stop = TypeVar("_Stop", int, str)


def to_tinker_tensor(tensor: TensorData) -> Any:
    import tinker

    return tinker.TensorData.from_numpy(tensor.to_numpy())


def from_tinker_tensor(tensor: Any) -> TensorData:
    return TensorData.from_numpy(tensor.to_numpy())


def to_tinker_model_input(model_input: ModelInput) -> Any:
    import tinker

    return tinker.ModelInput(chunks=[tinker.EncodedTextChunk(tokens=list(c.tokens)) for c in model_input.chunks])


def from_tinker_model_input(model_input: Any) -> ModelInput:
    return ModelInput.from_ints(model_input.to_ints())


def to_tinker_datum(datum: Datum) -> Any:
    import tinker

    return tinker.Datum(
        model_input=to_tinker_model_input(datum.model_input),
        loss_fn_inputs={key: to_tinker_tensor(value) for key, value in datum.loss_fn_inputs.items()},
    )


def from_tinker_datum(datum: Any) -> Datum:
    return Datum(
        from_tinker_model_input(datum.model_input),
        {key: from_tinker_tensor(value) for key, value in datum.loss_fn_inputs.items()},
    )


def to_tinker_adam(params: AdamParams) -> Any:
    import tinker

    return tinker.AdamParams(
        learning_rate=params.learning_rate, beta1=params.beta1, beta2=params.beta2, eps=params.eps,
        weight_decay=params.weight_decay, grad_clip_norm=params.grad_clip_norm,
    )


@overload
def _stop_list(stop: tuple[int, ...]) -> list[int]: ...
@overload
def _stop_list(stop: tuple[str, ...]) -> list[str]: ...
def _stop_list(stop: tuple[_Stop, ...]) -> list[_Stop]:
    """The SDK's list of stop token ids or strings; ``list()`` of either tuple would read as a mix."""
    return list(stop)


def to_tinker_sampling_params(params: SamplingParams) -> Any:
    import tinker

    stop = _stop_list(params.stop) if isinstance(params.stop, tuple) else params.stop
    return tinker.SamplingParams(
        max_tokens=params.max_tokens, seed=params.seed, stop=stop, temperature=params.temperature,
        top_k=params.top_k, top_p=params.top_p,
    )


def from_tinker_forward_backward(output: Any) -> ForwardBackwardOutput:
    return ForwardBackwardOutput(
        output.loss_fn_output_type,
        tuple({key: from_tinker_tensor(v) for key, v in row.items()} for row in output.loss_fn_outputs),
        dict(output.metrics),
    )


def from_tinker_sample_response(response: Any) -> SampleResponse:
    sequences = tuple(
        SampledSequence(
            seq.stop_reason, tuple(int(t) for t in seq.tokens),
            tuple(float(x) for x in seq.logprobs) if seq.logprobs is not None else None,
        )
        for seq in response.sequences
    )
    prompt = getattr(response, "prompt_logprobs", None)
    return SampleResponse(sequences, tuple(prompt) if prompt is not None else None)


def from_tinker_logprobs(logprobs: Any) -> list[float | None]:
    """``SamplingClient.compute_logprobs``'s result: one float per prompt token, ``None`` where unscored."""
    return [None if x is None else float(x) for x in logprobs]
