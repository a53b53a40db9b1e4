"""Manifests: which adapter serves each port in a deployment.

Layers, later winning: built-in defaults < the ``extends`` chain < the named
manifest < ``TINKEX_PORTS__*`` environment overrides < ``ports=`` overrides.

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

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tinkex_cookbook.errors import (
    ManifestError,
    UnknownManifestError,
    UnknownPortError,
    choices,
    validation_problems,
)
from tinkex_cookbook.runtime.registry import AdapterRegistry

Layer = dict[str, dict[str, Any]]
MANIFEST_PACKAGE = "tinkex_cookbook.manifests"


class ManifestFile(BaseModel):
    """What a manifest YAML file may contain."""

    model_config = ConfigDict(extra="forbid")

    extends: str | None = None
    description: str = ""
    ports: dict[str, str | dict[str, Any]] = {}


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "sources": list(self.sources),
            "ports": {port: binding.to_dict() for port, binding in self.ports.items()},
        }


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
                f"{source}: unknown port {port!r}; valid ports: {choices(valid_ports)}"
            )
        layer[port] = _normalise_binding(port, binding, source)
    return layer


def _normalise_binding(port: str, binding: Any, source: str) -> dict[str, Any]:
    if isinstance(binding, str):
        return {"adapter": binding}
    if not isinstance(binding, Mapping):
        raise ManifestError(
            f"{source}: port {port!r} must be an adapter name or a mapping with 'adapter', "
            f"got {type(binding).__name__}"
        )
    options = {k: v for k, v in binding.items() if k != "adapter"}
    adapter = binding.get("adapter")
    if adapter is not None and not isinstance(adapter, str):
        raise ManifestError(f"{source}: port {port!r} has adapter {adapter!r}; it must be an adapter name")
    if adapter is None:
        if options:
            raise ManifestError(
                f"{source}: port {port!r} sets options {sorted(options)} without naming its "
                f"adapter; write {{adapter: NAME, ...}} so the options go to the right adapter"
            )
        return {}
    return {"adapter": adapter, "options": {adapter: options}} if options else {"adapter": adapter}


def shipped_manifest_names() -> list[str]:
    folder = resources.files(MANIFEST_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_source(ref: str, relative_to: Path | None) -> tuple[str, str, Path | None]:
    """Return (label, YAML text, directory for relative ``extends``) for a name or a path."""
    if ref in shipped_manifest_names():
        return ref, resources.files(MANIFEST_PACKAGE).joinpath(f"{ref}.yaml").read_text(), None
    path = Path(ref) if relative_to is None or Path(ref).is_absolute() else relative_to / ref
    if path.suffix in (".yaml", ".yml") and path.is_file():
        path = path.resolve()
        return str(path), path.read_text(), path.parent
    raise UnknownManifestError(
        f"unknown manifest {ref!r}; valid names: {choices(shipped_manifest_names())}, "
        "or a path to a .yaml manifest file"
    )


def _parse(label: str, text: str) -> ManifestFile:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"manifest {label!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {label!r} must be a mapping, got {type(data).__name__}")
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
        label, text, folder = _read_source(current, relative_to)
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
        ports = self._registry.ports()
        chain = load_chain(ref)
        layers = [self.defaults()]
        layers += [normalise_layer(f.ports, ports, label) for label, f in chain]
        sources = [label for label, _ in chain]
        if env_ports:
            layers.append(normalise_layer(env_ports, ports, "environment (TINKEX_PORTS__*)"))
            sources.append("environment")
        if overrides:
            layers.append(normalise_layer(overrides, ports, "ports= overrides"))
            sources.append("ports=")
        return layers, sources, chain[-1][1].description

    def resolve(
        self, ref: str, env_ports: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Manifest:
        layers, sources, description = self.layers(ref, env_ports, overrides)
        merged = merge_layers(layers)
        bindings = {port: self._bind(port, merged[port]) for port in self._registry.ports()}
        return Manifest(Path(ref).stem, description, tuple(sources), bindings)

    def _bind(self, port: str, merged: Mapping[str, Any]) -> PortBinding:
        entry = self._registry.get(port, merged["adapter"])
        raw_options = merged.get("options", {}).get(entry.name, {})
        return PortBinding(entry.name, entry.parse_options(raw_options))
