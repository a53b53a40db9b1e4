"""Our training types convert to the Tinker SDK's and back without loss."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook.adapters.training import tinker_types as convert
from tinkex_cookbook.ports import AdamParams, Datum, ModelInput, SamplingParams, TensorData

tinker = pytest.importorskip("tinker")


@given(st.lists(st.integers(0, 2**31), min_size=2, max_size=40), st.data())
@settings(max_examples=100, deadline=None)
def test_datum_round_trips(tokens: list[int], data) -> None:
    weights = data.draw(st.lists(st.floats(0, 1, width=32), min_size=len(tokens) - 1, max_size=len(tokens) - 1))
    datum = Datum(
        ModelInput.from_ints(tokens[:-1]),
        {"target_tokens": TensorData.from_list(tokens[1:], "int64"), "weights": TensorData.from_list(weights, "float32")},
    )
    wire = convert.to_tinker_datum(datum)
    assert isinstance(wire, tinker.Datum) and wire.model_input.to_ints() == tokens[:-1]
    assert convert.from_tinker_datum(wire) == datum


def test_optimizer_and_sampling_params_carry_every_field() -> None:
    adam = convert.to_tinker_adam(AdamParams(2e-4, 0.8, 0.9, 1e-9, 0.01, 1.0))
    assert (adam.learning_rate, adam.beta1, adam.beta2, adam.eps, adam.weight_decay, adam.grad_clip_norm) == (
        2e-4, 0.8, 0.9, 1e-9, 0.01, 1.0,
    )
    params = convert.to_tinker_sampling_params(SamplingParams(max_tokens=7, temperature=0.5, seed=3, stop=(5, 6)))
    assert (params.max_tokens, params.temperature, params.seed, params.stop) == (7, 0.5, 3, [5, 6])


def test_outputs_come_back_as_our_types() -> None:
    logprobs = tinker.TensorData.from_numpy(np.array([-1.0, -0.5], dtype=np.float32))
    output = tinker.types.ForwardBackwardOutput(
        loss_fn_output_type="cross_entropy", loss_fn_outputs=[{"logprobs": logprobs}], metrics={"loss:sum": 1.5},
    )
    ours = convert.from_tinker_forward_backward(output)
    assert ours.loss_fn_outputs[0]["logprobs"] == TensorData.from_list([-1.0, -0.5], "float32")
    assert ours.metrics == {"loss:sum": 1.5}
    sequence = tinker.types.SampledSequence(
        stop_reason="stop", sequence_id="s0", tokens_np=np.array([4, 5]), logprobs_np=np.array([-0.25, -0.5]),
    )
    response = convert.from_tinker_sample_response(tinker.types.SampleResponse(sequences=[sequence]))
    assert response.sequences[0].tokens == (4, 5) and response.sequences[0].logprobs == (-0.25, -0.5)
