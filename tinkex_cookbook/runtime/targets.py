"""What ``chat``, ``sample`` and ``export`` act on: a run's checkpoint, a checkpoint path, or a base model.

``resolve_target`` reads a run folder (its config names the model and renderer, its
manifest the deployment, its ``checkpoints.jsonl`` the weights) or takes a model name as
it is. ``open_sampler`` opens a sampling client on the target through the manifest's
``training_client`` port, so the same command talks to a local checkpoint or a Tinker one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tinkex_cookbook.errors import ConfigError, UnknownNameError, choices
from tinkex_cookbook.ports import Ports, SamplingClient, Tokenizer, TrainingService
from tinkex_cookbook.ports.training import FileCheckpoints, TokenizingSampler, TokenizingService
from tinkex_cookbook.run_folder import CHECKPOINTS
from tinkex_cookbook.runs import Run, RunsError, find_run_folders, is_run_folder
from tinkex_cookbook.runtime.settings import Settings
from tinkex_cookbook.train.checkpoints import check_picked, load_checkpoints
from tinkex_cookbook.train.models import recommended_renderer
from tinkex_cookbook.train.renderers import Renderer, get_renderer
from tinkex_cookbook.train.tokenizer_sources import read_tokenizer_config

CHECKPOINT_SCHEMES = ("local://", "tinker://")


@dataclass(frozen=True)
class Target:
    """A model to sample from: its base name, renderer, and (for trained weights) where they are."""

    model_name: str
    renderer_name: str
    weights_path: str | None = None
    """A sampler or state checkpoint path; ``None`` for the base model."""
    manifest: str | None = None
    """The manifest the run was trained on, when the target is a run's checkpoint."""
    run: Run | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)

    def deployment(self, manifest: str | None) -> tuple[str | None, dict[str, Any] | None]:
        """The manifest and port overrides to open the backend with: ``manifest`` as given; else the run's
        own bindings as recorded in its ``manifest.json`` (blob root, backend options), so a checkpoint
        is found where the run wrote it even when the run overrode ports. A run on this machine's disk
        has its blob store bound to the root its folder was found under (``run_root``): a recorded or
        manifest root such as ``runs`` is relative to the folder the run was started in, not to this one."""
        root = run_root(self.run) if self.run is not None else None
        bound = {"blob_store": {"adapter": "local", "root": str(root)}} if root is not None else {}
        if manifest is not None or self.run is None or not self.run.manifest.get("ports"):
            return manifest or self.manifest, bound or None
        from tinkex_cookbook.runtime.manifest import shipped_manifest_names

        recorded = self.manifest if self.manifest in shipped_manifest_names() else "default"
        return recorded, {**self.run.manifest["ports"], **bound}

    @property
    def label(self) -> str:
        if self.run is None:
            return self.weights_path or self.model_name
        return f"{self.run.path} @ {self.checkpoint.get('name', '?')}"


def resolve_target(arg: str, checkpoint: str | None = None, model: str | None = None,
                   renderer: str | None = None, root: Path | None = None) -> Target:
    """A run folder (``--checkpoint NAME`` picks one of its checkpoints; the final one, else the last, by
    default), ``RUN_FOLDER/CHECKPOINT_NAME``, a ``local://`` or ``tinker://`` checkpoint path (with
    ``model``), a Hugging Face model folder (an export, a download), or a model name."""
    if arg.startswith(CHECKPOINT_SCHEMES):
        if not model:
            raise ConfigError(f"{arg!r} is a checkpoint path; say which base model it was trained from with --model")
        return Target(model, renderer or recommended_renderer(model), weights_path=arg)
    folder = _run_folder(Path(arg), root)
    if folder is None and checkpoint is None and _run_folder(Path(arg).parent, root) is not None:
        folder, checkpoint = _run_folder(Path(arg).parent, root), Path(arg).name
    if folder is not None:
        return _run_target(Run.load(folder), checkpoint, renderer)
    if Path(arg).is_dir():
        return _folder_target(Path(arg), renderer)
    name = model or arg
    return Target(name, renderer or recommended_renderer(name))


def _folder_target(path: Path, renderer: str | None) -> Target:
    """A Hugging Face model folder, added to the model catalog under its path for this process; the local
    backend serves it (``local`` unless ``--manifest`` says otherwise)."""
    from tinkex_cookbook.train.models import ModelEntry, ModelFolder, register_model

    if not (path / "config.json").is_file():
        inside = find_run_folders(path) if path.is_dir() else []
        hint = f"; it holds run folders such as {inside[0]}" if inside else ""
        raise RunsError(f"{path} is neither a run folder (spec.json, checkpoints.jsonl) nor a model folder "
                        f"(config.json){hint}")
    name = str(path.resolve())
    chosen = renderer or folder_renderer(path)
    register_model(ModelEntry(name, chosen, ModelFolder(name)), replace=True)
    return Target(name, chosen, manifest="local")


def folder_renderer(path: Path) -> str:
    """The renderer a folder's own chat template asks for (its special tokens tell), else by its name."""
    template_file = path / "chat_template.jinja"
    template = template_file.read_text() if template_file.is_file() else ""
    if not template:
        template = str(read_tokenizer_config(path).get("chat_template") or "")
    for marker, name in (("<think>", "qwen3"), ("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama3")):
        if marker in template:
            return name
    return recommended_renderer(path.name)


def _run_folder(path: Path, root: Path | None) -> Path | None:
    for candidate in (path, (root / path) if root is not None and not path.is_absolute() else None):
        if candidate is not None and candidate.is_dir() and is_run_folder(candidate):
            return candidate
    return None


def run_root(run: Run) -> Path | None:
    """The directory a local run's ``local://`` checkpoint keys are relative to, or ``None`` (a run in a remote
    store, or with no such checkpoints). Its keys start with the run folder's path under the root the run
    was written to (``r1/checkpoints/...`` for ``ROOT/r1``), so that root is the folder with those parts cut off."""
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    store = run.folder.store
    if not isinstance(store, LocalBlobStore):
        return None
    folder = store.root / run.folder.prefix if run.folder.prefix else store.root
    for record in run.checkpoints:
        for path in (record.get("sampler_path"), record.get("state_path")):
            if isinstance(path, str) and path.startswith("local://"):
                parts = PurePosixPath(path.removeprefix("local://")).parts[:-1]
                depth = next((n for n in range(len(parts), 0, -1) if folder.parts[-n:] == parts[:n]), 0)
                if depth and depth < len(folder.parts):
                    return folder.parents[depth - 1]
    return None


def _run_target(run: Run, checkpoint: str | None, renderer: str | None) -> Target:
    model = run.config.get("model_name")
    if not model:
        raise RunsError(f"run {run.path} has no config.json naming its model_name")
    load_checkpoints(run.folder.store, run.folder.key(CHECKPOINTS))  # a damaged record is named, as for a resume
    record = pick_checkpoint(run, checkpoint)
    if not (record.get("sampler_path") or record.get("state_path")):
        raise RunsError(f"checkpoint {record.get('name')!r} of run {run.path} names no weights")
    path = record.get("sampler_path") or record.get("state_path")
    chosen = renderer or run.config.get("renderer_name") or recommended_renderer(model)
    return Target(model, chosen, path, run.manifest_name if run.manifest else None, run, record)


def pick_checkpoint(run: Run, name: str | None) -> dict[str, Any]:
    """The named checkpoint, else the final one, else the newest; a run with none is an error."""
    records = run.checkpoints
    if not records:
        raise RunsError(f"run {run.path} has no checkpoints yet (checkpoints.jsonl is empty or missing: it "
                        f"stopped before its first save, see its run.log); pass the base model's name, "
                        f"{run.config.get('model_name', 'MODEL')!r}, for the untrained model")
    if name is not None:
        found = [r for r in records if r.get("name") == name]
        if not found:
            raise UnknownNameError(f"run {run.path} has no checkpoint {name!r}; its checkpoints: "
                                   f"{choices(str(r.get('name')) for r in records)}")
        return found[-1]
    finals = [r for r in records if r.get("final")]
    return (finals or records)[-1]


def target_tokenizer(service: TrainingService, sampler: SamplingClient, model_name: str) -> Tokenizer:
    """The target's tokenizer, from the sampling client or its backend (never a hub download of the SDK's)."""
    if isinstance(sampler, TokenizingSampler):
        return sampler.get_tokenizer()
    if isinstance(service, TokenizingService):
        return service.tokenizer_for(model_name)
    raise ConfigError(f"the bound training backend {type(service).__name__} cannot say which tokenizer "
                      f"{model_name!r} uses; it needs get_tokenizer() on its sampling clients or "
                      "tokenizer_for(model_name) on the service")


def open_target_sampler(service: TrainingService, target: Target) -> SamplingClient:
    """A sampling client on the target's weights: a sampler path directly; a state checkpoint through a
    training client that loads it (Tinker samples only from sampler weights); the base model by name."""
    path = target.weights_path
    if path is None:
        return service.create_sampling_client(base_model=target.model_name)
    _check_files(service, target, path)
    if target.checkpoint.get("sampler_path") or path.startswith("local://") or not target.checkpoint:
        return service.create_sampling_client(model_path=path)
    rank = int((target.run.config if target.run else {}).get("lora_rank", 32))
    client = service.create_lora_training_client(target.model_name, rank=rank)
    client.load_state(path).result()
    return client.save_weights_and_get_sampling_client(f"chat-{target.checkpoint.get('name', 'checkpoint')}")


def _check_files(service: TrainingService, target: Target, path: str) -> None:
    """A run's checkpoint file still holds the bytes its record's checksum says (``check_picked``)."""
    if target.run is None or not isinstance(service, FileCheckpoints):
        return
    folder = target.run.folder
    records = load_checkpoints(folder.store, folder.key(CHECKPOINTS))
    picked = [i for i, record in enumerate(records) if record.name == target.checkpoint.get("name")]
    if picked:
        check_picked(records, picked[-1], [path], service, folder.uri(CHECKPOINTS))


@contextmanager
def open_deployment(
    target: Target, manifest: str | None = None, ports: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> Iterator[Ports]:
    """The ports of ``target``'s deployment: ``manifest``, else the run's own bindings (its models registered)."""
    from tinkex_cookbook.runtime.runtime import Runtime, register_manifest_models

    ref, recorded = target.deployment(manifest)
    if target.run is not None:
        register_manifest_models(target.run.manifest.get("models") or {})
    with Runtime.open(ref, {**(recorded or {}), **(ports or {})}, settings) as opened:
        yield opened


def target_sampler(service: TrainingService, target: Target) -> tuple[SamplingClient, Renderer]:
    """A sampling client on the target's weights and the renderer its prompts are written with."""
    sampler = open_target_sampler(service, target)
    return sampler, get_renderer(target.renderer_name, target_tokenizer(service, sampler, target.model_name))


@contextmanager
def open_sampler(
    target: Target, manifest: str | None = None, ports: Mapping[str, Any] | None = None,
) -> Iterator[tuple[SamplingClient, Renderer, TrainingService]]:
    """The target's sampling client and renderer, on ``manifest`` (else the run's own, else the default)."""
    with open_deployment(target, manifest, ports) as opened:
        service = opened.training_client
        sampler, renderer = target_sampler(service, target)
        yield sampler, renderer, service
