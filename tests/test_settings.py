"""Settings read the documented variables and never show a secret."""

from __future__ import annotations

import pytest

from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.settings import DEFAULT_TINKER_BASE_URL


def test_defaults_without_environment() -> None:
    settings = Settings()
    assert settings.tinker_api_key is None and settings.manifest is None
    assert settings.tinker_base_url == DEFAULT_TINKER_BASE_URL
    assert DEFAULT_TINKER_BASE_URL == "https://tinker.thinkingmachines.dev/services/tinker-prod"


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_either_hugging_face_variable_sets_the_token(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "hf-abc")
    assert Settings().hf_token.get_secret_value() == "hf-abc"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TINKEX_MANIFEST": "prod", "TINKER_BASE_URL": "http://127.0.0.1:9", "TINKEX_S3_BUCKET": "b",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:10", "AWS_DEFAULT_REGION": "eu-west-1", "TINKEX_LOG_DIR": "/logs",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.manifest, settings.tinker_base_url, settings.s3_bucket) == ("prod", "http://127.0.0.1:9", "b")
    assert (settings.s3_endpoint_url, settings.aws_region, settings.log_dir) == (
        "http://127.0.0.1:10", "eu-west-1", "/logs",
    )


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-marker-1")
    monkeypatch.setenv("HF_TOKEN", "hf-marker-2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-marker-3")
    settings = Settings()
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.redacted())]
    assert not any("marker" in text for text in shown)
    assert sorted(settings.secret_values()) == ["hf-marker-2", "sk-marker-3", "tml-marker-1"]
    assert settings.redacted()["tinker_api_key"] == "**********"
