"""The dependency-injector container: the only module that imports it.

One ``Selector`` per port, keyed by the adapter name the validated manifest
chose; each child is a ``Resource``, so an adapter is built on first use, at
most once per run, and closed (its ``close()`` called, if it has one) by
``shutdown_resources()`` at run end. Objects passed in ``instances`` are the
caller's: they are served as they are and never closed here. An adapter that
``needs`` another port (a training backend checkpointing through the blob
store) gets that port's adapter, built on demand, as a keyword argument; one it only ``lazy_needs``
gets a callable that builds it the first time it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dependency_injector import containers, providers
from pydantic import BaseModel

from tinkex_cookbook.runtime.manifest import Manifest
from tinkex_cookbook.runtime.registry import AdapterEntry, AdapterRegistry
from tinkex_cookbook.runtime.settings import Settings


def _adapter_resource(
    entry: AdapterEntry, options: BaseModel, settings: Settings, **ports: object
) -> Iterator[object]:
    adapter = entry.build(options, settings, **ports)
    try:
        yield adapter
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()


def _lazy_port(container: containers.DynamicContainer, name: str) -> Callable[[], object]:
    return lambda: getattr(container, name)()


def _port_selector(
    port: str, manifest: Manifest, registry: AdapterRegistry, settings: Settings,
    container: containers.DynamicContainer,
) -> providers.Selector:
    """The bound adapter only: another adapter of the port (a plugin's, say) is never imported."""
    binding = manifest.ports[port]
    entry = registry.get(port, binding.adapter)
    child = providers.Resource(
        _adapter_resource,
        entry,
        binding.options,
        settings,
        **{needed: providers.Callable(lambda name: getattr(container, name)(), needed) for needed in entry.needs},
        **{needed: providers.Object(_lazy_port(container, needed)) for needed in entry.lazy_needs},
    )
    return providers.Selector(providers.Object(binding.adapter), **{entry.name: child})


def build_container(
    manifest: Manifest,
    settings: Settings,
    registry: AdapterRegistry,
    instances: Mapping[str, Any] | None = None,
) -> containers.DynamicContainer:
    """A container with one provider per port, named after the port."""
    container = containers.DynamicContainer()
    container.settings = providers.Object(settings)
    for port in registry.ports():
        if instances and port in instances:
            container.set_provider(port, providers.Object(instances[port]))
        else:
            container.set_provider(port, _port_selector(port, manifest, registry, settings, container))
    return container
