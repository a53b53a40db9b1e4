"""The adapters the cookbook ships, registered by name for each port.

Each factory imports its adapter module when called, not when this module is
imported. Adapters not written yet are registered with ``shipped=False`` so a
manifest that names them fails with a clear message instead of an ImportError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, PositiveInt

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.runtime.registry import (
    AdapterEntry,
    AdapterFactory,
    AdapterRegistry,
    NoOptions,
)
from tinkex_cookbook.runtime.settings import Settings

if TYPE_CHECKING:
    from tinkex_cookbook.adapters.training.model_files import ModelSources


class Options(BaseModel):
    # Schemas are built on first use: a run validates only the options of the adapters it binds.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NoopTrainingOptions(Options):
    seed: int = 0


class NoopDatasetOptions(Options):
    rows: PositiveInt = 96


class LocalDatasetOptions(Options):
    root: str | None = None


class LocalBlobOptions(Options):
    root: str | None = None


class NoopLLMOptions(Options):
    reply: str | None = None


class NoopEmbeddingOptions(Options):
    dimension: PositiveInt = 16


def _noop_training(options: NoopTrainingOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.training.noop import NoopTrainingService

    return NoopTrainingService(seed=options.seed)


class LocalTorchOptions(Options):
    models_dir: str | None = None
    """Hugging Face model folders, as ``<org>--<name>`` or ``<name>`` (else TINKEX_MODELS_DIR)."""
    models_cache: str | None = None
    """Where packaged models are dequantised once and hub models kept (else TINKEX_MODELS_CACHE)."""
    seed: int = 0
    threads: PositiveInt | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Compute dtype of the frozen base; LoRA weights and the optimizer are float32 either way."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or mps; one this machine lacks is an error before the run starts."""
    lora_alpha: PositiveFloat = 32.0
    lora_targets: list[str] | None = None
    """Leaf names of the linears to adapt (q_proj, v_proj, ..., lm_head); unset: every linear and the head."""
    micro_batch_tokens: PositiveInt | None = 512
    """Padded tokens per forward pass; a longer batch runs in parts with its gradients summed (null: one pass)."""


def _model_sources(models_dir: str | None, models_cache: str | None, settings: Settings,
                   hub_client: Callable[[], object] | None) -> ModelSources:
    from tinkex_cookbook.adapters.training.model_files import ModelSources

    hub_cache = settings.hf_hub_cache or (f"{settings.hf_home}/hub" if settings.hf_home else None)
    return ModelSources.of(models_dir or settings.models_dir, models_cache or settings.models_cache, hub_cache,
                           hub_client)  # type: ignore[arg-type]


def _local_torch(
    options: LocalTorchOptions, settings: Settings, blob_store: object, hub_client: Callable[[], object] | None = None,
) -> object:
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService, LocalTrainerOptions

    models_dir = options.models_dir or settings.models_dir
    trainer = LocalTrainerOptions(
        options.dtype, options.device, options.lora_alpha,
        options.lora_targets, options.micro_batch_tokens,  # type: ignore[arg-type]
    )
    return LocalTorchTrainingService(
        blob_store, models_dir, options.seed, options.threads,  # type: ignore[arg-type]
        sources=_model_sources(models_dir, options.models_cache, settings, hub_client),
        options=trainer,
    )


class TinkerOptions(Options):
    base_url: str | None = None
    models_dir: str | None = None
    """Folders holding tokenizer files, as for local_torch (else TINKEX_MODELS_DIR)."""
    models_cache: str | None = None
    request_timeout: PositiveFloat = 900.0
    """Seconds a future waits for its result before failing with TrainingBackendError."""
    connect_attempts: PositiveInt = 3
    """Attempts at session and model creation on transient errors (after the SDK's own retries)."""
    backoff: NonNegativeFloat = 1.0


def _tinker(options: TinkerOptions, settings: Settings, hub_client: Callable[[], object] | None = None) -> object:
    """Endpoint from the manifest, else TINKER_BASE_URL; the key only ever from TINKER_API_KEY."""
    from tinkex_cookbook.adapters.training.tinker import TinkerTrainingService

    key = settings.tinker_api_key.get_secret_value() if settings.tinker_api_key else ""
    return TinkerTrainingService(
        key, options.base_url or settings.tinker_base_url, request_timeout=options.request_timeout,
        connect_attempts=options.connect_attempts, backoff=options.backoff,
        model_sources=_model_sources(options.models_dir, options.models_cache, settings, hub_client),
    )


def _noop_datasets(options: NoopDatasetOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.datasets.noop import SyntheticChatDatasetStore

    return SyntheticChatDatasetStore(rows=options.rows)


def _local_datasets(options: LocalDatasetOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore

    return LocalDatasetStore(Path(options.root or settings.data_dir or "."))


def _noop_blobs(options: NoOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore

    return MemoryBlobStore()


def _local_blobs(options: LocalBlobOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    return LocalBlobStore(Path(options.root or settings.log_dir or "runs"))


def _noop_hub(options: NoOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.hub.noop import NoopHubClient

    return NoopHubClient()


def _noop_llm(options: NoopLLMOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.llm.noop import NoopLLMClient

    return NoopLLMClient(reply=options.reply)


def _noop_embeddings(options: NoopEmbeddingOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.embeddings.noop import NoopEmbeddingClient

    return NoopEmbeddingClient(dimension=options.dimension)


def _memory_vectors(options: NoOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.vectors.memory import MemoryVectorStore

    return MemoryVectorStore()


class S3Options(Options):
    bucket: str | None = None
    prefix: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: PositiveInt = 5
    """Attempts in total per request (botocore's standard retries; cut GET bodies are asked again)."""
    timeout: PositiveFloat = 60.0
    """Seconds to connect and to wait for each read before an attempt counts as failed."""


def _s3_blobs(options: S3Options, settings: Settings) -> object:
    """Bucket, prefix, endpoint and region from the manifest, else TINKEX_S3_* / AWS_* settings."""
    from tinkex_cookbook.adapters.blobs.s3 import S3BlobStore

    bucket = options.bucket or settings.s3_bucket
    if not bucket:
        raise ConfigError(
            "the s3 blob store needs a bucket: set TINKEX_S3_BUCKET or the manifest option "
            "blob_store: {adapter: s3, bucket: NAME}"
        )
    return S3BlobStore(
        bucket, options.prefix or settings.s3_prefix or "", options.endpoint_url or settings.s3_endpoint_url,
        options.region or settings.aws_region, max_attempts=options.max_attempts, timeout=options.timeout,
    )


class OpenAICompatibleOptions(Options):
    base_url: str | None = None
    model: str | None = None
    timeout: PositiveFloat = 60.0
    max_attempts: PositiveInt = 4
    backoff: NonNegativeFloat = 0.5


def _openai_kwargs(options: OpenAICompatibleOptions, settings: Settings) -> dict[str, Any]:
    """Endpoint from the manifest or TINKEX_LLM_BASE_URL; the key only ever from the environment."""
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return {
        "base_url": options.base_url or settings.llm_base_url or "", "api_key": key, "model": options.model,
        "timeout": options.timeout, "max_attempts": options.max_attempts, "backoff": options.backoff,
    }


def _openai_llm(options: OpenAICompatibleOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.llm.openai_compatible import OpenAICompatibleLLMClient

    return OpenAICompatibleLLMClient(**_openai_kwargs(options, settings))


def _openai_embeddings(options: OpenAICompatibleOptions, settings: Settings) -> object:
    from tinkex_cookbook.adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddingClient

    return OpenAICompatibleEmbeddingClient(**_openai_kwargs(options, settings))


class HFDatasetOptions(Options):
    cache_dir: str | None = None
    offline: bool = True
    streaming: bool = False
    trust_remote_code: bool = False


def _hf_datasets(options: HFDatasetOptions, settings: Settings) -> object:
    """Offline unless the manifest says ``offline: false``; the token only from HF_TOKEN."""
    from tinkex_cookbook.adapters.datasets.hf import HFDatasetStore

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return HFDatasetStore(options.cache_dir, options.offline, token, options.streaming, options.trust_remote_code)


class HFHubOptions(Options):
    endpoint: str | None = None
    cache_dir: str | None = None
    timeout: PositiveFloat = 30.0
    max_attempts: PositiveInt = 1
    """Attempts per download on resets and 5xx the library itself does not retry (uploads: always 1)."""
    backoff: NonNegativeFloat = 1.0
    attempt_timeout: PositiveFloat | None = None
    """Abandon an attempt after this many seconds (the library can wait minutes on a hung hub)."""


def _hf_hub(options: HFHubOptions, settings: Settings) -> object:
    """Endpoint from the manifest, else HF_ENDPOINT; the token only from HF_TOKEN."""
    from tinkex_cookbook.adapters.hub.hf import HFHubClient

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return HFHubClient(options.endpoint or settings.hf_endpoint, token, options.cache_dir, options.timeout, options.max_attempts,
                       options.backoff, options.attempt_timeout)


def _not_shipped(options: BaseModel, settings: Settings) -> object:
    raise AssertionError("check_available() stops unshipped adapters before their factory runs")


TINKER_KEY = (("TINKER_API_KEY", "tinker_api_key"),)

BUILTIN_ADAPTERS: tuple[AdapterEntry, ...] = (
    AdapterEntry("training_client", "noop", _noop_training, NoopTrainingOptions,
                 "deterministic in-memory fake; trains nothing"),
    AdapterEntry("training_client", "tinker", _tinker, TinkerOptions, "the Tinker training API",
                 extra="tinker", modules=("tinker",), secrets=TINKER_KEY, lazy_needs=("hub_client",)),
    AdapterEntry("training_client", "local_torch", _local_torch, LocalTorchOptions,
                 "LoRA training with torch on this machine (catalog models, HF folders, tiny test models)",
                 extra="local", modules=("torch", "transformers"), needs=("blob_store",),
                 lazy_needs=("hub_client",)),
    AdapterEntry("dataset_store", "noop", _noop_datasets, NoopDatasetOptions,
                 "synthetic chat conversations for any dataset name"),
    AdapterEntry("dataset_store", "local", _local_datasets, LocalDatasetOptions,
                 "JSON / JSONL files under a root directory"),
    AdapterEntry("dataset_store", "hf", _hf_datasets, HFDatasetOptions,
                 "Hugging Face datasets: hub ids (offline cache by default) or local json/jsonl/parquet/csv",
                 extra="hf", modules=("datasets",)),
    AdapterEntry("blob_store", "noop", _noop_blobs, summary="in-memory blobs, gone at exit"),
    AdapterEntry("blob_store", "local", _local_blobs, LocalBlobOptions,
                 "files under a root directory, atomic writes"),
    AdapterEntry("blob_store", "s3", _s3_blobs, S3Options, "S3 or an S3-compatible server",
                 extra="s3", modules=("boto3",)),
    AdapterEntry("hub_client", "noop", _noop_hub, summary="in-memory repositories"),
    AdapterEntry("hub_client", "hf", _hf_hub, HFHubOptions, "the Hugging Face Hub (or HF_ENDPOINT)",
                 extra="hf", modules=("huggingface_hub",)),
    AdapterEntry("llm_client", "noop", _noop_llm, NoopLLMOptions, "echoes or a fixed reply"),
    AdapterEntry("llm_client", "openai_compatible", _openai_llm, OpenAICompatibleOptions,
                 "any OpenAI-compatible chat endpoint", extra="llm", modules=("httpx",)),
    AdapterEntry("embedding_client", "noop", _noop_embeddings, NoopEmbeddingOptions,
                 "hash-seeded unit vectors"),
    AdapterEntry("embedding_client", "openai_compatible", _openai_embeddings, OpenAICompatibleOptions,
                 "any OpenAI-compatible embeddings endpoint", extra="llm", modules=("httpx",)),
    AdapterEntry("vector_store", "noop", _memory_vectors, summary="in-memory cosine search"),
    AdapterEntry("vector_store", "memory", _memory_vectors, summary="in-memory exact cosine search (numpy)"),
)


def builtin_registry() -> AdapterRegistry:
    registry = AdapterRegistry()
    for entry in BUILTIN_ADAPTERS:
        registry.register(entry)
    return registry


ADAPTERS = builtin_registry()


def register_adapter(
    port: str,
    name: str,
    factory: AdapterFactory,
    *,
    options: type[BaseModel] = NoOptions,
    summary: str = "",
    replace: bool = False,
) -> None:
    """Make ``name`` a valid adapter for ``port`` in every manifest.

    ``factory(options, settings)`` builds the adapter; ``options`` is the
    pydantic model its manifest options are validated against.
    """
    ADAPTERS.register(AdapterEntry(port, name, factory, options, summary), replace=replace)
