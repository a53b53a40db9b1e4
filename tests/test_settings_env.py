"""Settings: the aliases ``test_settings.py`` does not cover, nested port overrides, redaction, scrubbing."""

from __future__ import annotations

import json

import pytest

from tinkex_cookbook import Runtime, SlBasic, UnknownManifestError
from tinkex_cookbook.runtime import Settings

SECRET_FIELDS = ("tinker_api_key", "serve_api_key", "hf_token", "llm_api_key")


def test_tinker_api_key_and_manifest_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-env")
    monkeypatch.setenv("TINKEX_MANIFEST", "test")
    settings = Settings()
    assert settings.tinker_api_key is not None and settings.tinker_api_key.get_secret_value() == "tml-env"
    assert settings.manifest == "test"


def test_openai_api_key_is_an_alias_of_the_llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-1")
    assert Settings().secret_values() == ["sk-openai-1"]


def test_field_names_and_aliases_both_work_as_arguments() -> None:
    assert Settings(tinker_api_key="tml-key-x").secret_values() == ["tml-key-x"]
    assert Settings(TINKER_API_KEY="tml-key-y").secret_values() == ["tml-key-y"]


def test_nested_port_variables_build_the_ports_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_PORTS__BLOB_STORE__ADAPTER", "local")
    monkeypatch.setenv("TINKEX_PORTS__BLOB_STORE__ROOT", "/Tmp/Mixed")
    monkeypatch.setenv("TINKEX_PORTS__DATASET_STORE", "noop")
    assert Settings().ports == {"blob_store": {"adapter": "local", "root": "/Tmp/Mixed"}, "dataset_store": "noop"}


def test_no_secrets_means_none_listed_and_none_redacted() -> None:
    settings = Settings()
    assert settings.secret_values() == []
    assert all(settings.redacted()[name] is None for name in SECRET_FIELDS)


def test_empty_secret_is_not_listed_as_a_value() -> None:
    assert Settings(tinker_api_key="").secret_values() == []


def test_a_value_shorter_than_a_real_key_is_no_secret_to_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrubbing a placeholder such as ``tml-x`` would mangle every word holding it; its field still
    redacts it."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = Settings(tinker_api_key="tml-x")
    assert settings.secret_values() == [] and settings.scrub("tml-x test") == "tml-x test"
    assert settings.redacted()["tinker_api_key"] == "**********"


def test_redacted_view_is_json_and_hides_every_secret() -> None:
    settings = Settings(tinker_api_key="tml-marker-1", hf_token="hf-marker-2", llm_api_key="sk-marker-3", serve_api_key="tml-marker-4")
    text = json.dumps(settings.redacted())
    assert "-marker-" not in text
    assert all(settings.redacted()[name] == "**********" for name in SECRET_FIELDS)
    assert sorted(settings.secret_values()) == ["hf-marker-2", "sk-marker-3", "tml-marker-1", "tml-marker-4"]


def test_the_serve_key_is_a_secret_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_SERVE_API_KEY", "tml-serve-marker")
    settings = Settings()
    assert settings.serve_api_key is not None and settings.serve_api_key.get_secret_value() == "tml-serve-marker"
    assert "tml-serve-marker" not in repr(settings) + settings.model_dump_json()
    assert settings.scrub("key tml-serve-marker") == "key **********"


def test_hf_endpoint_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().hf_endpoint is None
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert Settings().hf_endpoint == "http://127.0.0.1:9"


def test_secret_inside_an_error_message_is_scrubbed_but_the_type_kept() -> None:
    settings = Settings(tinker_api_key="tml-marker-9")
    with pytest.raises(UnknownManifestError) as caught:
        Runtime.run(SlBasic, {}, manifest="tml-marker-9", settings=settings)
    assert "tml-marker-9" not in str(caught.value) and "**********" in str(caught.value)


def test_bare_field_names_in_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANIFEST", "nope")
    monkeypatch.setenv("LOG_DIR", "/somewhere/else")
    monkeypatch.setenv("LLM_API_KEY", "sk-not-an-alias")
    settings = Settings()
    assert (settings.manifest, settings.log_dir, settings.llm_api_key) == (None, None, None)
