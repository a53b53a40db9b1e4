"""Settings from the environment: the only place secrets and deployment values enter.

Secrets are ``SecretStr``: their repr, str and JSON dump are ``**********``, so a
settings object can be logged or saved without leaking. Nothing is read at
import time; ``Settings()`` reads the environment when the runtime builds a run.

``secret_values()`` lists every secret in the environment, not only the ones a
field keeps: the losing alias of a pair (``HUGGING_FACE_HUB_TOKEN`` when
``HF_TOKEN`` is set too), and the secrets libraries read for themselves (AWS
credentials for boto3, ``WANDB_API_KEY``). Anything that
scrubs its output with them hides those too. A bad value is a ``ConfigError``
naming the variable, and never quotes what a secret variable was given.

A value shorter than ``secrets.MIN_SCRUBBED`` characters is no secret (``tml-x``, moto's
``test``): hiding it would mangle every word that holds it. ``secrets.py`` reads the
environment's secrets without building ``Settings``, so a command whose settings are
broken still hides them.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from tinkex_cookbook import jsonio
from tinkex_cookbook.errors import ConfigError, shown
from tinkex_cookbook.runtime.user_files import MAX_DEPTH, nesting_depth
from tinkex_cookbook.secrets import (
    REDACTED,
    SECRET_VARIABLES,
    environment_secrets,
    is_secret,
    longest_first,
    scrub,
)

DEFAULT_TINKER_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"
SECRET_FIELDS = ("tinker_api_key", "serve_api_key", "hf_token", "llm_api_key")
PORTS_FIX = ('TINKEX_PORTS must be a JSON object such as \'{"blob_store": {"adapter": "local", "root": "runs"}}\', '
             "or set one port with TINKEX_PORTS__<PORT>=<adapter> / TINKEX_PORTS__<PORT>__<OPTION>=<value>")


class Settings(BaseSettings):
    """Environment variables the cookbook reads, with their names as aliases."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__", extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    _environment_secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        problem = _ports_variable_problem()
        try:
            if problem is None:
                super().__init__(**values)
                problem = _ports_depth_problem(self.ports)
        except ValidationError as exc:
            problem = _describe_problems(exc)
        except SettingsError as exc:
            problem = f"{exc}: {PORTS_FIX}"
        if problem is not None:  # raised here, not in the handler, so no error holding an input is chained
            raise ConfigError(problem)
        self._environment_secrets = environment_secrets()

    @model_validator(mode="before")
    @classmethod
    def _field_names_as_arguments(cls, data: Any) -> Any:
        """Accept ``Settings(tinker_api_key=...)`` in code while the environment is read by alias only.

        (``populate_by_name`` would also read bare ``LOG_DIR`` or ``MANIFEST`` from the environment.)
        """
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            if name in data:
                alias = field.validation_alias
                key = alias.choices[0] if isinstance(alias, AliasChoices) else alias
                data[key] = data.pop(name)
        return data

    manifest: str | None = Field(None, validation_alias="TINKEX_MANIFEST")
    ports: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias="TINKEX_PORTS",
        description="Per-port overrides, e.g. TINKEX_PORTS__BLOB_STORE__ADAPTER=local.",
    )
    log_dir: str | None = Field(None, validation_alias="TINKEX_LOG_DIR")
    data_dir: str | None = Field(None, validation_alias="TINKEX_DATA_DIR")
    models_dir: str | None = Field(None, validation_alias="TINKEX_MODELS_DIR")
    models_cache: str | None = Field(
        None, validation_alias="TINKEX_MODELS_CACHE",
        description="Where packaged models are dequantised once (default: ~/.cache/tinkex-cookbook/models).",
    )
    hf_hub_cache: str | None = Field(
        None, validation_alias=AliasChoices("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"),
        description="The Hugging Face cache to read model snapshots from (default: $HF_HOME/hub).",
    )
    hf_home: str | None = Field(None, validation_alias="HF_HOME")

    tinker_api_key: SecretStr | None = Field(None, validation_alias="TINKER_API_KEY")
    tinker_base_url: str = Field(DEFAULT_TINKER_BASE_URL, validation_alias="TINKER_BASE_URL")
    serve_api_key: SecretStr | None = Field(
        None, validation_alias="TINKEX_SERVE_API_KEY",
        description="The key clients of `tinkex-cookbook serve` must send (else TINKER_API_KEY).",
    )

    hf_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    )
    hf_endpoint: str | None = Field(
        None, validation_alias="HF_ENDPOINT",
        description="The `hf` hub client's endpoint when the manifest names none (a mirror, a local server).",
    )

    s3_bucket: str | None = Field(None, validation_alias="TINKEX_S3_BUCKET")
    s3_prefix: str | None = Field(None, validation_alias="TINKEX_S3_PREFIX")
    s3_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("TINKEX_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    aws_region: str | None = Field(
        None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    llm_base_url: str | None = Field(None, validation_alias="TINKEX_LLM_BASE_URL")
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TINKEX_LLM_API_KEY", "OPENAI_API_KEY")
    )

    def named_secrets(self) -> dict[str, str]:
        """Every secret that is set (in a field, or in the environment when these settings were read) and
        the variable it came from, longest first: an error can name the variable, never the value."""
        named = {}
        for name in SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None and is_secret(value := secret.get_secret_value()):
                named[value.strip()] = _variable(name)
        return longest_first({**self._environment_secrets, **named})

    def secret_values(self) -> list[str]:
        """Every secret that is set, longest first, so output can be scrubbed of them (a secret inside
        another is hidden whole)."""
        return list(self.named_secrets())

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced: for anything a user may have pasted a key into
        (a manifest option, a config value) on its way to a file or the terminal."""
        return scrub(text, self.secret_values())

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe view for `manifests show` and saved runs: secrets only say whether set."""
        data = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            data[name] = REDACTED if getattr(self, name) is not None else None
        return data


def _ports_variable_problem() -> str | None:
    """What is wrong with ``TINKEX_PORTS``'s JSON, if anything: checked before pydantic-settings parses it,
    whose parser names no variable when the text nests too deep or holds an integer too long to read."""
    text = next((value for name, value in os.environ.items() if name.upper() == "TINKEX_PORTS"), None)
    if text is None:
        return None
    value, wrong = jsonio.problem(text)
    return f"TINKEX_PORTS {wrong}: {PORTS_FIX}" if wrong is not None else _ports_depth_problem(value)


def _ports_depth_problem(ports: Any) -> str | None:
    """Port overrides nested deeper than any option needs, whether from ``TINKEX_PORTS``'s JSON or from
    ``TINKEX_PORTS__A__B__...`` names: merging them into the manifest would recurse that deep."""
    if nesting_depth(ports) <= MAX_DEPTH:
        return None
    return f"TINKEX_PORTS nests mappings and lists deeper than {MAX_DEPTH} levels: {PORTS_FIX}"


def _variable(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    return str(alias.choices[0] if isinstance(alias, AliasChoices) else alias)


def _secret_aliases() -> set[str]:
    aliases = set()
    for name in SECRET_FIELDS:
        alias = Settings.model_fields[name].validation_alias
        aliases.update(alias.choices if isinstance(alias, AliasChoices) else [alias])
    return {str(a).upper() for a in aliases} | set(SECRET_VARIABLES) | {n.upper() for n in SECRET_FIELDS}


def _describe_problems(exc: ValidationError) -> str:
    """One clause per bad variable, its value quoted unless the variable holds a secret."""
    secret = _secret_aliases()
    problems = []
    for error in exc.errors(include_input=True, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        head = where.split(".")[0].upper() if where else ""
        quoted = "" if not where or head in secret else f" (got {shown(error['input'])})"
        problems.append(f"{where or 'settings'}: {error['msg']}{quoted}")
    return (f"invalid cookbook settings: {'; '.join(problems)}. Fix the environment variables (or arguments) "
            "named: TINKEX_PORTS takes a JSON object, a secret takes the bare key as a string")
