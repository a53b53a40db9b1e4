"""Settings from the environment: the only place secrets and deployment values enter.

Secrets are ``SecretStr``: their repr, str and JSON dump are ``**********``, so a
settings object can be logged or saved without leaking. Nothing is read at
import time; ``Settings()`` reads the environment when the runtime builds a run.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TINKER_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"


class Settings(BaseSettings):
    """Environment variables the cookbook reads, with their names as aliases."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore", case_sensitive=False)

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

    tinker_api_key: SecretStr | None = Field(None, validation_alias="TINKER_API_KEY")
    tinker_base_url: str = Field(DEFAULT_TINKER_BASE_URL, validation_alias="TINKER_BASE_URL")

    hf_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
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

    def secret_values(self) -> list[str]:
        """Every secret that is set, so output can be scrubbed of them."""
        secrets = (self.tinker_api_key, self.hf_token, self.llm_api_key)
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe view for `manifests show` and saved runs: secrets only say whether set."""
        data = self.model_dump(mode="json")
        for name in ("tinker_api_key", "hf_token", "llm_api_key"):
            data[name] = "**********" if getattr(self, name) is not None else None
        return data
