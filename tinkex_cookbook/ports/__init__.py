"""Ports: what a recipe needs from the world, as ``typing.Protocol``s.

``Ports`` is the bundle a run hands to its stages, one adapter per port.
``PORT_PROTOCOLS`` maps each manifest port name to the protocol its adapter
must satisfy; it is the single list of ports the cookbook has.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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


@dataclass(frozen=True)
class Ports:
    """One adapter per port, as a run's manifest bound them."""

    training_client: TrainingService
    dataset_store: DatasetStore
    blob_store: BlobStore
    hub_client: HubClient
    llm_client: LLMClient
    embedding_client: EmbeddingClient
    vector_store: VectorStore

    def get(self, name: str) -> object:
        return getattr(self, name)


PORT_PROTOCOLS: dict[str, type] = {
    "training_client": TrainingService,
    "dataset_store": DatasetStore,
    "blob_store": BlobStore,
    "hub_client": HubClient,
    "llm_client": LLMClient,
    "embedding_client": EmbeddingClient,
    "vector_store": VectorStore,
}
PORT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Ports))
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
