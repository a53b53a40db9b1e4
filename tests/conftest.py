"""Shared fixtures: every test starts from an environment with no cookbook settings or secrets."""

from __future__ import annotations

import os

import pytest

ENV_PREFIXES = ("TINKEX_", "TINKER_", "HF_", "HUGGING_FACE_", "AWS_", "OPENAI_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
