"""Ports: what a recipe needs from the world, as ``typing.Protocol``s.

``Ports`` is the bundle a run hands to its stages, one adapter per port,
typed per port and built the first time it is read. ``PORT_PROTOCOLS`` maps
each manifest port name to the protocol its adapter must satisfy; it is the
single list of ports the cookbook has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast, overload

from tinkex_cookbook.errors import UnknownPortError, choices
from tinkex_cookbook.ports.blobs import BlobStore
from tinkex_cookbook.ports.datasets import Dataset, DatasetStore, Row
from tinkex_cookbook.ports.hub import HubClient, RepoInfo
from tinkex_cookbook.ports.llm import (
    ChatMessage,
    Completion,
    EmbeddingClient,
    LLMClient,
    VectorMatch,
    VectorStore,
)
from tinkex_cookbook.ports.training import (
    APIFuture,
    ResolvedFuture,
    SamplingClient,
    ThreadFuture,
    Tokenizer,
    TrainingClient,
    TrainingService,
)
from tinkex_cookbook.ports.types import (
    LOSS_FN_NAMES,
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    LoadStateResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveStateResponse,
    TensorData,
)

P = TypeVar("P")


class _Port(Generic[P]):
    """One ``Ports`` attribute, typed as its protocol: the adapter is asked for when it is read."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, ports: None, owner: type) -> _Port[P]: ...
    @overload
    def __get__(self, ports: Ports, owner: type) -> P: ...
    def __get__(self, ports: Ports | None, owner: type) -> _Port[P] | P:
        if ports is None:
            return self
        return cast(P, ports[self.name])  # the adapter registered (or passed in) for this port


class Ports:
    """One adapter per port, as a manifest bound them, each built the first time it is read.

    ``adapter(port)`` gives (and may build) the adapter bound to ``port``; the composition
    root (``Runtime.open``) passes one that checks the port's secrets and extras first, so a
    script that reads only ``blob_store`` never needs the training backend's key.
    """

    training_client = _Port[TrainingService]()
    dataset_store = _Port[DatasetStore]()
    blob_store = _Port[BlobStore]()
    hub_client = _Port[HubClient]()
    llm_client = _Port[LLMClient]()
    embedding_client = _Port[EmbeddingClient]()
    vector_store = _Port[VectorStore]()

    def __init__(self, adapter: Callable[[str], object]) -> None:
        self._adapter = adapter

    def __getitem__(self, port: str) -> object:
        """The adapter bound to ``port``, for code that names ports as strings (stages, the CLI)."""
        if port not in PORT_PROTOCOLS:
            raise UnknownPortError(f"unknown port {port!r}; valid ports: {choices(PORT_PROTOCOLS)}")
        return self._adapter(port)

    def get(self, port: str) -> object:
        return self[port]

    def __repr__(self) -> str:
        return f"Ports({', '.join(PORT_NAMES)})"


PORT_PROTOCOLS: dict[str, type] = {
    "training_client": TrainingService,
    "dataset_store": DatasetStore,
    "blob_store": BlobStore,
    "hub_client": HubClient,
    "llm_client": LLMClient,
    "embedding_client": EmbeddingClient,
    "vector_store": VectorStore,
}
PORT_NAMES: tuple[str, ...] = tuple(name for name, value in vars(Ports).items() if isinstance(value, _Port))
assert PORT_NAMES == tuple(PORT_PROTOCOLS), "Ports and PORT_PROTOCOLS must list the same ports"

__all__ = [
    "LOSS_FN_NAMES", "PORT_NAMES", "PORT_PROTOCOLS",
    "APIFuture", "AdamParams", "BlobStore", "ChatMessage", "Completion", "Dataset", "DatasetStore",
    "Datum", "EmbeddingClient", "EncodedTextChunk", "ForwardBackwardOutput", "HubClient",
    "LLMClient", "LoadStateResponse", "ModelInfo", "ModelInput", "OptimStepResponse", "Ports",
    "RepoInfo", "ResolvedFuture", "Row", "SampleResponse", "SampledSequence", "SamplingClient",
    "SamplingParams", "SaveStateResponse", "TensorData", "ThreadFuture", "Tokenizer",
    "TrainingClient", "TrainingService", "VectorMatch", "VectorStore",
]
