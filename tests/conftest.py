"""Shared fixtures: every test starts from an environment with no cookbook settings or secrets."""

from __future__ import annotations

import os
import sys

import pytest

ENV_PREFIXES = ("TINKEX_", "TINKER_", "HF_", "HUGGING_FACE_", "AWS_", "OPENAI_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """The local backend's ``threads`` option sets torch's process-wide thread count; give later
    tests theirs back (torch is imported at collection by the modules that use it)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)
