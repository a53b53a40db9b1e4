"""The composition root: settings, manifests, registries, container and Runtime."""

from tinkex_cookbook.runtime.builtin_adapters import ADAPTERS, register_adapter
from tinkex_cookbook.runtime.manifest import Manifest, ManifestLoader, PortBinding, shipped_manifest_names
from tinkex_cookbook.runtime.options import RunOptions
from tinkex_cookbook.runtime.registry import AdapterEntry, NoOptions
from tinkex_cookbook.runtime.runtime import RunResult, Runtime
from tinkex_cookbook.runtime.settings import Settings

__all__ = [
    "ADAPTERS", "AdapterEntry", "Manifest", "ManifestLoader", "NoOptions", "PortBinding", "RunOptions",
    "RunResult", "Runtime", "Settings", "register_adapter", "shipped_manifest_names",
]
