"""Adapter registries: one closed name -> factory map per port.

Manifests choose adapters by these registered names, never by a dotted import
path. A factory imports its adapter module only when called, so binding a port
to ``noop`` never imports torch, boto3 or the Tinker SDK. Users add their own
adapters with ``register_adapter``, or install a plugin that declares them as entry points.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tinkex_cookbook.errors import (
    SHOWN_PROBLEMS,
    AdapterUnavailableError,
    ManifestError,
    MissingSecretError,
    UnknownAdapterError,
    UnknownPortError,
    choices,
    did_you_mean,
    shown,
    validation_problems,
)
from tinkex_cookbook.ports import PORT_NAMES
from tinkex_cookbook.registry import Registry
from tinkex_cookbook.runtime.settings import Settings


class NoOptions(BaseModel):
    """Options model for adapters that take none: any option is an error."""

    model_config = ConfigDict(extra="forbid")


AdapterFactory = Callable[..., object]
"""``factory(options, settings, **needed_ports) -> adapter``."""


@dataclass(frozen=True)
class AdapterEntry:
    """How to build one adapter: its factory, its options model, what it needs."""

    port: str
    name: str
    factory: AdapterFactory
    options: type[BaseModel] = NoOptions
    summary: str = ""
    extra: str | None = None
    modules: tuple[str, ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()
    shipped: bool = True
    needs: tuple[str, ...] = ()
    """Other ports this adapter is built on (e.g. a training backend that checkpoints through
    the blob store); the container passes them to the factory as keyword arguments."""
    lazy_needs: tuple[str, ...] = ()
    """Other ports this adapter may use now and then (a backend fetching a model it lacks through the
    hub client): passed as zero-argument callables, so the port is built only if it is called."""

    def parse_options(self, raw: dict[str, Any]) -> BaseModel:
        """Validate manifest options; the error names port, adapter, field and valid fields. An unknown
        option is an error even when the options model (a plugin's, say) would ignore it."""
        unknown = sorted(set(raw) - self._option_keys(), key=str)  # keys read from YAML may be numbers too
        if unknown:
            raise self._bad_options(f"unknown option(s) {', '.join(map(shown, unknown[:SHOWN_PROBLEMS]))}")
        try:
            return self.options.model_validate(raw)
        except ValidationError as exc:
            raise self._bad_options(validation_problems(exc)) from None

    def _bad_options(self, problems: str) -> ManifestError:
        return ManifestError(
            f"bad options for adapter {self.name!r} of port {self.port!r}: {problems}. "
            f"Valid options: {choices(self.options.model_fields)}"
        )

    def _option_keys(self) -> set[str]:
        fields = self.options.model_fields.items()
        return {key for name, field in fields for key in (name, field.alias, field.validation_alias)
                if isinstance(key, str)}

    def check_available(self) -> None:
        """Fail before any work if this adapter cannot be built here."""
        if not self.shipped:
            raise AdapterUnavailableError(
                f"adapter {self.name!r} for port {self.port!r} is registered but not available "
                f"in this version of tinkex-cookbook yet; bind another adapter for {self.port!r} "
                f"in the manifest or with ports={{{self.port!r}: 'noop'}}"
            )
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            hint = f"pip install 'tinkex-cookbook[{self.extra}]'" if self.extra else "install them"
            raise AdapterUnavailableError(
                f"adapter {self.name!r} for port {self.port!r} needs {', '.join(missing)}, "
                f"which is not installed: {hint}"
            )

    def missing_secrets(self, settings: Settings) -> list[str]:
        """The environment variables this adapter needs that are not set (names only, never values)."""
        return [env_var for env_var, field_name in self.secrets if getattr(settings, field_name) is None]

    def check_secrets(self, settings: Settings) -> None:
        for env_var in self.missing_secrets(settings):
            raise MissingSecretError(
                f"adapter {self.name!r} for port {self.port!r} needs the environment "
                f"variable {env_var}, which is not set. Export {env_var}=... or choose a "
                "manifest that does not need it (e.g. manifest='local' or 'test')"
            )

    def build(self, options: BaseModel, settings: Settings, **ports: object) -> object:
        self.check_available()
        return self.factory(options, settings, **ports)


ADAPTER_GROUP = "tinkex_cookbook.adapters"
"""Entry-point group of plugin adapters: ``<port>.<adapter> = module:ENTRY``, ENTRY an ``AdapterEntry``."""


def _checked_entry(port: str, name: str, loaded: Any) -> AdapterEntry:
    """A plugin's entry point must name an ``AdapterEntry`` for the port and name it is declared under."""
    if not isinstance(loaded, AdapterEntry):
        raise TypeError(f"{loaded!r} is not an AdapterEntry")
    if (loaded.port, loaded.name) != (port, name):
        raise ValueError(f"the entry point declares adapter {name!r} for port {port!r}, but the AdapterEntry "
                         f"is adapter {loaded.name!r} for port {loaded.port!r}")
    return loaded


class AdapterRegistry:
    """Registered adapters for every port, one ``Registry`` each; lookups fail with the valid names.

    Plugins add adapters through entry points named ``<port>.<adapter>`` in ``group``.
    """

    def __init__(self, ports: Iterable[str] = PORT_NAMES, group: str | None = ADAPTER_GROUP) -> None:
        self._ports: dict[str, Registry[AdapterEntry]] = {
            port: Registry(
                "adapter", group=group, prefix=f"{port}.", where=f" for port {port!r}",
                hint="add your own with register_adapter() or a plugin", adapt=partial(_checked_entry, port),
                unknown=UnknownAdapterError,
            )
            for port in ports
        }

    def ports(self) -> list[str]:
        return list(self._ports)

    def names(self, port: str) -> list[str]:
        return self._port(port).names()

    def _port(self, port: str) -> Registry[AdapterEntry]:
        if port not in self._ports:
            close = did_you_mean(port, self._ports)
            hint = f" ({close})" if close else ""
            raise UnknownPortError(f"unknown port {port!r}; valid ports: {choices(self._ports)}{hint}")
        return self._ports[port]

    def get(self, port: str, name: str) -> AdapterEntry:
        return self._port(port).get(name)

    def plugin(self, port: str, name: str) -> str | None:
        """The distribution whose entry point adds adapter ``name`` of ``port``, if a plugin does."""
        return self._port(port).plugin(name)

    def register(self, entry: AdapterEntry, replace: bool = False) -> None:
        self._port(entry.port).register(entry.name, entry, replace)

    def port_entries(self, port: str) -> list[AdapterEntry]:
        """Every adapter of ``port``, plugins' included (each plugin module is imported)."""
        return self._port(port).values()

    def entries(self) -> list[AdapterEntry]:
        return [entry for port in self._ports for entry in self.port_entries(port)]
