"""Recipe configs from files: ``tinkex-cookbook run sl_basic --config run.yaml batch_size=8``.

A config file (``.yaml``, ``.yml`` or ``.json``) holds a mapping of config keys to
values: the keys the command line takes, dotted ones too, or nested mappings for
mapping fields. The keys are checked when the config is parsed, exactly as the
command line's are; here only the file is: it exists, is UTF-8 YAML or JSON no
larger than ``MAX_CONFIG_BYTES``, repeats no key, nests no deeper than 64 levels,
uses no YAML anchors (``runtime/user_files.py`` says why) and holds a mapping. Each
problem is a ``ConfigError`` naming the file (and the line, where there is one),
quoting no text of it: a file that is no config may be anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.recipes.base import layer_config, parse_overrides
from tinkex_cookbook.runtime.user_files import (
    MAX_FILE_BYTES,
    is_name,
    load_json,
    load_yaml,
    quoted_key,
    read_text,
)

MAX_CONFIG_BYTES = MAX_FILE_BYTES
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
                          f"got a {type(data).__name__}")  # by type only: it may be any file
    for key in data:
        if not is_name(key):  # a file that is no config can parse as a mapping of its lines: do not quote them
            raise ConfigError(f"{label} has the key {quoted_key(key)}; config keys are names such as learning_rate")
    return dict(data)


def _read(file: Path, label: str) -> str:
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"{label} must end in .yaml, .yml or .json")
    if not file.is_file():
        if file.exists() and not file.is_dir():  # a pipe or a device: reading it could block or never end
            raise ConfigError(f"{label} is not a regular file")
        raise ConfigError(f"{label} does not exist" + (" (it is a folder)" if file.exists() else ""))
    return read_text(file, label, ConfigError, MAX_CONFIG_BYTES)


def _parse(file: Path, label: str, text: str) -> Any:
    if file.suffix == ".json":
        return load_json(text, label, ConfigError)
    return load_yaml(text, label, ConfigError)
