"""Export a run's checkpoint so other tools use it: a PEFT adapter or a merged model, with a model card.

The weights are read through the manifest's ``training_client`` (the local backend, which
holds them on this machine); the folder is written by the local backend's exporter and, with
``push``, uploaded file by file through the ``hub_client`` port.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tinkex_cookbook.adapters.hub.noop import NoopHubClient
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.ports import HubClient
from tinkex_cookbook.runtime.targets import Target, open_target_sampler, target_tokenizer

FORMATS = ("peft", "merged")
CARD_CONFIG_KEYS = ("dataset", "dataset_split", "train_size", "test_size", "num_epochs", "batch_size",
                    "learning_rate", "lr_schedule", "lora_rank", "max_length", "renderer_name", "train_on_what")


def export_target(target: Target, out: Path, fmt: str, manifest: str | None = None,
                  push: str | None = None) -> list[str]:
    """Write ``target``'s weights to ``out`` in ``fmt``; returns a line per upload when pushed."""
    from tinkex_cookbook.runtime.runtime import Runtime

    if fmt not in FORMATS:
        raise ConfigError(f"export --format {fmt!r} is not a format; use one of {', '.join(FORMATS)}")
    if target.weights_path is None:
        raise ConfigError(f"{target.model_name!r} names a base model; export needs trained weights: pass a run "
                          "folder (or RUN_FOLDER/CHECKPOINT_NAME)")
    from tinkex_cookbook.adapters.training.export import refuse_non_empty

    refuse_non_empty(out)  # before the model loads, not after
    ref, recorded = target.deployment(manifest)
    if recorded is not None and push:
        recorded.pop("hub_client", None)  # where to push is this deployment's choice, not the run's
    with Runtime.open(ref, recorded) as ports:
        sampler = open_target_sampler(ports.training_client, target)
        model = getattr(sampler, "model", None)
        if model is None:
            raise ConfigError(
                f"export reads the weights of a local_torch checkpoint; {target.label} is served by "
                f"{type(ports.training_client).__name__}. Download Tinker weights with Tinker's own tools")
        service = ports.training_client
        _write(model, target_tokenizer(service, sampler, target.model_name), target, out, fmt,
               _base_folder(service, target.model_name))
        if push:
            hub = ports.hub_client
            lines = _push(hub, out, push)
            if isinstance(hub, NoopHubClient):
                lines.append("note: the bound hub_client is noop, so nothing left this machine; pass --manifest "
                             "with hub_client: hf (and HF_TOKEN) to push to a hub")
            return lines
    return []


def _base_folder(service: Any, model_name: str) -> Path | None:
    """Where the base model's Hugging Face folder is on this machine, if it has one (not a tiny model)."""
    from tinkex_cookbook.adapters.training.model_files import find_model_folder

    sources = getattr(service, "sources", None)
    return find_model_folder(model_name, sources) if sources is not None else None


def _write(model: Any, tokenizer: Any, target: Target, out: Path, fmt: str, base: Path | None) -> None:
    from tinkex_cookbook.adapters.training.export import export_merged, export_peft

    card = model_card(target, fmt, base)
    if fmt == "peft":
        export_peft(model, out, base_model=target.model_name, card=card)
        return
    with tempfile.TemporaryDirectory(prefix="tinkex-tokenizer-") as folder:
        tokenizer.save(Path(folder))
        export_merged(model, out, Path(folder), card=card)


def _push(hub: HubClient, folder: Path, repo: str) -> list[str]:
    return [f"uploaded {path.name}: {hub.upload(path, repo, path.name)}" for path in sorted(folder.iterdir())]


def model_card(target: Target, fmt: str, base: Path | None = None) -> str:
    """A README for the exported folder: base model, data, config and final metrics of the run, and how to
    load it (over the base model's local folder when there is one, so it works offline)."""
    config = target.run.config if target.run is not None else {}
    kind = "a LoRA adapter (PEFT)" if fmt == "peft" else "a full model with the LoRA adapter merged in"
    lines = [
        "---", f"base_model: {target.model_name}", "library_name: " + ("peft" if fmt == "peft" else "transformers"),
        "tags: [tinkex-cookbook, lora]", "---", "",
        f"# {target.model_name}, fine-tuned", "",
        f"This folder is {kind}, trained with tinkex-cookbook from `{target.model_name}`.", "",
        f"- checkpoint: `{target.checkpoint.get('name', target.weights_path)}` (step {target.checkpoint.get('step', '?')})",
        f"- chat template: `{target.renderer_name}`",
    ]
    if config:
        lines += [f"- data: `{config.get('dataset', '?')}` (split `{config.get('dataset_split', 'train')}`)", "",
                  "## Training config", "", "```json",
                  json.dumps({k: config[k] for k in CARD_CONFIG_KEYS if k in config}, indent=2), "```"]
    lines += ["", "## Metrics", "", *_metric_lines(target)]
    base_ref = repr(str(base)) if base is not None else repr(target.model_name)
    usage = (f"from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
             f"base = AutoModelForCausalLM.from_pretrained({base_ref})\n"
             "model = PeftModel.from_pretrained(base, PATH)  # PATH: this folder"
             if fmt == "peft" else
             "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
             "model = AutoModelForCausalLM.from_pretrained(PATH)  # PATH: this folder\n"
             "tokenizer = AutoTokenizer.from_pretrained(PATH)")
    where = ([f"The base weights: `{target.model_name}` on the Hugging Face Hub, or `{base}` on the machine "
              "that exported this."] if fmt == "peft" and base is not None else [])
    return "\n".join([*lines, "", "## Use", "", *where, "", "```python", usage, "```", ""])


def _metric_lines(target: Target) -> list[str]:
    if target.run is None:
        return ["No run metrics (exported from a checkpoint path)."]
    lines = []
    summary = target.run.summary
    for label in ("base", "final"):
        nll = summary.get(label, {}).get("test_mean_nll")
        if nll is not None:
            lines.append(f"- held-out NLL, {label} model: {nll:.4f}")
    last = target.run.last_step_row
    if "train_mean_nll" in last:
        lines.append(f"- last training NLL: {last['train_mean_nll']:.4f} (step {last.get('step')})")
    return lines or ["No metrics recorded."]
