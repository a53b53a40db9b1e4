"""The training value types, importable from the training domain.

They are defined with the ports they cross (``tinkex_cookbook.ports.types``);
this module is where recipes and renderers conventionally import them from.
"""

from collections.abc import Sequence
from typing import TypeVar, overload

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
    "SampleResponse", "SampledSequence", "SamplingParams", "TensorData", "stop_tuple",
]

_Stop = TypeVar("_Stop", int, str)


@overload
def stop_tuple(stop: Sequence[int]) -> tuple[int, ...]: ...
@overload
def stop_tuple(stop: Sequence[str]) -> tuple[str, ...]: ...
def stop_tuple(stop: Sequence[_Stop]) -> tuple[_Stop, ...]:
    """Stop sequences as ``SamplingParams.stop`` takes them: token ids or strings, never a mix.

    A renderer's ``list[int] | list[str]`` passed to ``tuple()`` reads as a mixed tuple to a type
    checker; through here, each kind keeps its own type.
    """
    return tuple(stop)
