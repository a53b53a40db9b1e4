"""Recipe configs from files: ``tinkex-cookbook run sl_basic --config run.yaml batch_size=8``.

A config file (``.yaml``, ``.yml`` or ``.json``) holds a mapping of config keys to
values: the keys the command line takes, dotted ones too, or nested mappings for
mapping fields. The keys are checked when the config is parsed, exactly as the
command line's are; here only the file is: it exists, is UTF-8 YAML or JSON no
larger than ``MAX_CONFIG_BYTES``, repeats no key and holds a mapping. Each problem
is a ``ConfigError`` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.recipes.base import layer_config, parse_overrides
from tinkex_cookbook.runtime.manifest import UniqueKeyLoader

MAX_CONFIG_BYTES = 1 << 20
"""A recipe config is a few dozen keys; anything near this size is the wrong file."""
SUFFIXES = (".yaml", ".yml", ".json")
EXAMPLE = "e.g. 'learning_rate: 1e-4' on a line of its own"


def config_from(config_file: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The config file's keys (none without a file) with the command line's ``key=value`` overrides on top."""
    return layer_config(load_config_file(config_file) if config_file else {}, parse_overrides(overrides))


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping a YAML or JSON config file holds (``{}`` for an empty YAML file), keys unchecked."""
    file = Path(path)
    label = f"config file {str(file)!r}"
    data = _parse(file, label, _read(file, label))
    if data is None and file.suffix != ".json":
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label} must hold a mapping of config keys to values ({EXAMPLE}), "
                          f"got {type(data).__name__} {data!r:.60}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{label} has the key {key!r}; config keys are names such as learning_rate")
    return dict(data)


def _read(file: Path, label: str) -> str:
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"{label} must end in .yaml, .yml or .json")
    if not file.is_file():
        raise ConfigError(f"{label} does not exist" + (" (it is a folder)" if file.exists() else ""))
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{label} is over {MAX_CONFIG_BYTES} bytes; is it the right file?")
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label} cannot be read as UTF-8 text: {exc}") from None


def _parse(file: Path, label: str, text: str) -> Any:
    if file.suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except ValueError as exc:  # json.JSONDecodeError and a repeated key
            raise ConfigError(f"{label} is not valid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label} is not valid YAML: {exc}") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (plain JSON loading keeps only the last)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"repeated key {repeated[0]!r}; keep one entry (only the last would count)")
    return dict(pairs)
