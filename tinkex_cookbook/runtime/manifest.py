"""Manifests: which adapter serves each port in a deployment.

Layers, later winning: built-in defaults < the ``extends`` chain < the named
manifest < ``TINKEX_PORTS__*`` environment overrides < ``ports=`` overrides.

Every mistake is a ``ManifestError`` (or a subclass) that names the manifest
file or layer it came from: a file that is not UTF-8 YAML, not a mapping, or
repeats a key; one over ``MAX_FILE_BYTES``, nesting too deep or using YAML
anchors (``runtime/user_files.py`` says why); an ``extends`` cycle or a parent
that does not exist; an unknown port, adapter or option (with the valid names).
Errors quote values cut short and never the text of a file that is not a
manifest (a symlink to a system file, say): they name the type found.

Each layer is first *normalised*: a binding ``{adapter: s3, bucket: b}``
becomes ``{adapter: "s3", options: {"s3": {bucket: b}}}``. Options are kept per
adapter, so switching a port from ``local`` to ``s3`` in a later layer never
hands ``local``'s options to ``s3``, and merging normalised layers is a plain
recursive dict merge: associative, and the later layer wins on every key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tinkex_cookbook.errors import (
    ConfigError,
    ManifestError,
    UnknownManifestError,
    UnknownPortError,
    choices,
    shown,
    validation_problems,
)
from tinkex_cookbook.runtime.registry import AdapterRegistry
from tinkex_cookbook.runtime.user_files import is_name, load_yaml, quoted_key, read_text

Layer = dict[str, dict[str, Any]]
MANIFEST_PACKAGE = "tinkex_cookbook.manifests"
ENV_LABEL, OVERRIDES_LABEL = "environment (TINKEX_PORTS__*)", "ports= overrides"
LAYER_LABELS = {"defaults": "built-in defaults", "environment": ENV_LABEL, "ports=": OVERRIDES_LABEL}
"""How errors name the layers that are not files (``Manifest.sources`` keeps the short names)."""


class ManifestFile(BaseModel):
    """What a manifest YAML file may contain."""

    model_config = ConfigDict(extra="forbid")

    extends: str | None = None
    description: str = ""
    ports: dict[str, Any] = {}
    """Port -> adapter name or ``{adapter: NAME, option: value}``; checked by ``normalise_layer``."""
    models: dict[str, dict[str, Any]] = {}
    """Model name -> ``{weights: PATH | hub:REPO, renderer: NAME, context_length: N}``: catalog entries."""


@dataclass(frozen=True)
class PortBinding:
    adapter: str
    options: BaseModel

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, **self.options.model_dump(mode="json", exclude_none=True)}


@dataclass(frozen=True)
class Manifest:
    """A validated, merged manifest: one binding per port."""

    name: str
    description: str
    sources: tuple[str, ...]
    ports: dict[str, PortBinding] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model catalog entries the manifest adds (or replaces), by name; later files win."""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "description": self.description,
            "sources": list(self.sources),
            "ports": {port: binding.to_dict() for port, binding in self.ports.items()},
        }
        return {**data, "models": self.models} if self.models else data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge; ``top`` wins; neither input is modified."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_layers(layers: Sequence[Layer]) -> Layer:
    merged: Layer = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    return merged


def normalise_layer(ports: Mapping[str, Any], valid_ports: Sequence[str], source: str) -> Layer:
    """Turn one layer's port bindings into ``{port: {adapter, options: {adapter: {...}}}}``."""
    layer: Layer = {}
    for port, binding in ports.items():
        if port not in valid_ports:
            raise UnknownPortError(
                f"{source}: unknown port {shown(port)}; valid ports: {choices(valid_ports)}"
            )
        layer[port] = _normalise_binding(port, binding, source)
    return layer


def _normalise_binding(port: str, binding: Any, source: str) -> dict[str, Any]:
    if isinstance(binding, str):
        return {"adapter": binding}
    if not isinstance(binding, Mapping):
        raise ManifestError(
            f"{source}: port {port!r} must be an adapter name or a mapping with 'adapter', "
            f"got {type(binding).__name__} {shown(binding)}; write e.g. '{port}: noop' or "
            f"'{port}: {{adapter: NAME, option: value}}'"
        )
    options = {k: v for k, v in binding.items() if k != "adapter"}
    adapter = binding.get("adapter")
    if adapter is not None and not isinstance(adapter, str):
        raise ManifestError(f"{source}: port {port!r} has adapter {shown(adapter)}; it must be an adapter name")
    if adapter is None:
        if options:
            raise ManifestError(
                f"{source}: port {port!r} sets options {shown(sorted(options, key=str))} without naming its "
                f"adapter; write {{adapter: NAME, ...}} so the options go to the right adapter"
            )
        return {}
    return {"adapter": adapter, "options": {adapter: options}} if options else {"adapter": adapter}


def shipped_manifest_names() -> list[str]:
    folder = resources.files(MANIFEST_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_source(
    ref: str, relative_to: Path | None, extended_by: str | None = None
) -> tuple[str, str, Path | None]:
    """Return (label, YAML text, directory for relative ``extends``) for a name or a path."""
    if ref in shipped_manifest_names():
        return ref, resources.files(MANIFEST_PACKAGE).joinpath(f"{ref}.yaml").read_text(), None
    path = Path(ref) if relative_to is None or Path(ref).is_absolute() else relative_to / ref
    if path.suffix in (".yaml", ".yml") and path.is_file():
        path = path.resolve()
        return str(path), read_text(path, f"manifest {str(path)!r}", ManifestError), path.parent
    where = f"manifest {extended_by!r} extends {ref!r}, which is not a manifest" if extended_by else (
        f"unknown manifest {ref!r}")
    raise UnknownManifestError(
        f"{where}; valid names: {choices(shipped_manifest_names())}, "
        "or a path to a .yaml manifest file" + (" (relative to the manifest that extends it)" if extended_by else "")
    )


def _parse(label: str, text: str) -> ManifestFile:
    data = load_yaml(text, f"manifest {label!r}", ManifestError)
    if data is None:  # an empty file: every port keeps its parent's or the default binding
        data = {}
    if not isinstance(data, dict):
        raise ManifestError(
            f"manifest {label!r} must be a mapping with keys {choices(ManifestFile.model_fields)}, "
            f"got a {type(data).__name__}"  # by type only: the text may be a file that is no manifest
        )
    odd = [key for key in data if not is_name(key)][:1]
    if odd:
        raise ManifestError(f"manifest {label!r} has the top-level key {quoted_key(odd[0])}; valid keys: "
                            f"{choices(ManifestFile.model_fields)}. Is it a manifest?")
    try:
        return ManifestFile.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(
            f"manifest {label!r} is malformed: {validation_problems(exc)}. "
            f"Valid top-level keys: {choices(ManifestFile.model_fields)}"
        ) from None


def load_chain(ref: str) -> list[tuple[str, ManifestFile]]:
    """The manifest and every manifest it extends, root first; cycles are errors."""
    chain: list[tuple[str, ManifestFile]] = []
    seen: list[str] = []
    relative_to: Path | None = None
    current: str | None = ref
    while current is not None:
        label, text, folder = _read_source(current, relative_to, seen[-1] if seen else None)
        if label in seen:
            raise ManifestError(f"manifest 'extends' cycle: {' -> '.join([*seen, label])}")
        seen.append(label)
        parsed = _parse(label, text)
        chain.append((label, parsed))
        current, relative_to = parsed.extends, folder or relative_to
    return chain[::-1]


class ManifestLoader:
    """Resolves a manifest reference plus overrides into a validated ``Manifest``."""

    def __init__(self, registry: AdapterRegistry) -> None:
        self._registry = registry

    def defaults(self) -> Layer:
        return {port: {"adapter": "noop"} for port in self._registry.ports()}

    def layers(
        self, ref: str, env_ports: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[list[Layer], list[str], str]:
        return self._layers(load_chain(ref), env_ports, overrides)

    def _layers(
        self, chain: Sequence[tuple[str, ManifestFile]], env_ports: Mapping[str, Any] | None,
        overrides: Mapping[str, Any] | None,
    ) -> tuple[list[Layer], list[str], str]:
        ports = self._registry.ports()
        layers = [self.defaults()]
        layers += [normalise_layer(f.ports, ports, label) for label, f in chain]
        sources = [label for label, _ in chain]
        if env_ports:
            layers.append(normalise_layer(env_ports, ports, ENV_LABEL))
            sources.append("environment")
        if overrides:
            layers.append(normalise_layer(overrides, ports, OVERRIDES_LABEL))
            sources.append("ports=")
        return layers, sources, chain[-1][1].description

    def resolve(
        self, ref: str, env_ports: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Manifest:
        chain = load_chain(ref)
        layers, sources, description = self._layers(chain, env_ports, overrides)
        merged = merge_layers(layers)
        labels = [LAYER_LABELS.get(source, source) for source in ["defaults", *sources]]
        named = list(zip(labels, layers, strict=True))
        bindings = {port: self._bind(port, merged[port], named) for port in self._registry.ports()}
        return Manifest(Path(ref).stem, description, tuple(sources), bindings, catalog_models(chain))

    def _bind(self, port: str, merged: Mapping[str, Any], named: Sequence[tuple[str, Layer]]) -> PortBinding:
        """The port's binding; an unknown adapter or bad option names the layers that set it."""
        adapter = merged["adapter"]
        try:
            entry = self._registry.get(port, adapter)
        except ManifestError as exc:
            origin = [label for label, layer in named if layer.get(port, {}).get("adapter") == adapter][-1:]
            raise type(exc)(f"{_labels(origin)}: {exc}") from None
        try:
            return PortBinding(entry.name, entry.parse_options(merged.get("options", {}).get(entry.name, {})))
        except ManifestError as exc:
            origin = [label for label, layer in named if entry.name in layer.get(port, {}).get("options", {})]
            raise type(exc)(f"{_labels(origin)}: {exc}") from None


def catalog_models(chain: Sequence[tuple[str, ManifestFile]]) -> dict[str, dict[str, Any]]:
    """The ``models:`` entries of a manifest chain, later files replacing earlier ones, each checked."""
    from tinkex_cookbook.train.models import entry_from_mapping

    models: dict[str, dict[str, Any]] = {}
    for label, manifest_file in chain:
        for name, data in manifest_file.models.items():
            try:
                entry_from_mapping(name, data)
            except (ConfigError, TypeError, ValueError) as exc:
                raise ManifestError(f"{label}: {exc}") from None
            models[name] = dict(data)
    return models


def _labels(layers: Sequence[str]) -> str:
    """The layers (manifest files, environment, ``ports=``) an error came from, as its message's prefix."""
    return " + ".join(layers) if layers else "merged manifest"
