"""The training value types, importable from the training domain.

They are defined with the ports they cross (``tinkex_cookbook.ports.types``);
this module is where recipes and renderers conventionally import them from.
"""

from tinkex_cookbook.ports.types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ModelInput,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    TensorData,
)

__all__ = [
    "AdamParams", "Datum", "EncodedTextChunk", "ForwardBackwardOutput", "ModelInput",
    "SampleResponse", "SampledSequence", "SamplingParams", "TensorData",
]
