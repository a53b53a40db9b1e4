"""`chat`, `sample` and `export`: use what a run trained, or any base model.

    tinkex-cookbook chat runs/sl_basic/20261207-101500-123 --prompt "What is the capital of France?"
    tinkex-cookbook chat HuggingFaceTB/SmolLM2-135M-Instruct
    tinkex-cookbook sample runs/sl_basic/... prompts.jsonl --out replies.jsonl
    tinkex-cookbook export runs/sl_basic/... --format peft --out my-adapter
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

TARGET_HELP = "A run folder, RUN_FOLDER/CHECKPOINT_NAME, a local:// or tinker:// checkpoint path, or a model name."
MANIFEST_HELP = "Manifest to open the backend on (default: the run's own, else $TINKEX_MANIFEST, else 'default')."
HISTORY = Path.home() / ".cache" / "tinkex-cookbook" / "chat_history"


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _target(target: str, checkpoint: str | None, model: str | None, renderer: str | None) -> Any:
    from tinkex_cookbook.runs import default_root
    from tinkex_cookbook.runtime.targets import resolve_target

    return resolve_target(target, checkpoint, model, renderer, default_root())


@contextmanager
def _sampling(
    target: str, checkpoint: str | None, model: str | None, renderer: str | None, manifest: str | None,
    max_tokens: int, temperature: float, seed: int | None,
) -> Iterator[tuple[Any, Any, Any, Any]]:
    """The target, its sampling client and renderer, and the sampling parameters `chat` and `sample` use;
    a cookbook error (or a path that is no run) ends the command with one line."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runs import RunsError
    from tinkex_cookbook.runtime.targets import open_sampler
    from tinkex_cookbook.train.replies import sampling_params

    try:
        resolved = _target(target, checkpoint, model, renderer)
        with open_sampler(resolved, manifest) as (sampler, opened_renderer, _):
            yield resolved, sampler, opened_renderer, sampling_params(opened_renderer, max_tokens, temperature, seed)
    except (CookbookError, RunsError) as exc:
        _fail(exc)


def chat(
    target: str = typer.Argument(..., help=TARGET_HELP),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Answer this once and exit."),
    system: str | None = typer.Option(None, "--system", help="A system message to start the conversation."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", "-c", help="Checkpoint name in the run."),
    model: str | None = typer.Option(None, "--model", help="Base model of a checkpoint path."),
    renderer: str | None = typer.Option(None, "--renderer", help="Chat template (default: the run's or model's)."),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help=MANIFEST_HELP),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0: greedy."),
    seed: int | None = typer.Option(None, "--seed"),
) -> None:
    """Talk to a trained checkpoint or a base model: interactive at a terminal, or --prompt once."""
    opened = _sampling(target, checkpoint, model, renderer, manifest, max_tokens, temperature, seed)
    with opened as (resolved, sampler, chat_renderer, params):
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if prompt is not None:
            _answer(sampler, chat_renderer, [*messages, {"role": "user", "content": prompt}], params)
        else:
            _repl(sampler, chat_renderer, messages, params, resolved.label)


def _answer(sampler: Any, renderer: Any, messages: list[dict[str, Any]], params: Any) -> str:
    from tinkex_cookbook.train.replies import stream_reply

    pieces = []
    for piece in stream_reply(sampler, renderer, messages, params):
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(pieces)


def _repl(sampler: Any, renderer: Any, start: list[dict[str, Any]], params: Any, label: str) -> None:
    """Read a line, stream the reply, keep the conversation; /reset starts over, /exit or Ctrl-D leaves."""
    _load_history()
    typer.echo(f"chatting with {label}; /reset starts over, /exit (or Ctrl-D) leaves", err=True)
    messages = list(start)
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            typer.echo("", err=True)
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            messages = list(start)
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        sys.stdout.write("model> ")
        messages.append({"role": "assistant", "content": _answer(sampler, renderer, messages, params)})
    _save_history()


def _load_history() -> None:
    try:
        import readline
    except ImportError:  # no readline on this platform: plain input() still works
        return
    if HISTORY.is_file():
        readline.read_history_file(HISTORY)


def _save_history() -> None:
    try:
        import readline
    except ImportError:
        return
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    readline.write_history_file(HISTORY)


def sample(
    target: str = typer.Argument(..., help=TARGET_HELP),
    prompts: Path = typer.Argument(..., exists=True, dir_okay=False,
                                   help='JSONL: {"prompt": "text"} or {"messages": [...]} per line.'),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write replies here (default: stdout)."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", "-c"),
    model: str | None = typer.Option(None, "--model"),
    renderer: str | None = typer.Option(None, "--renderer"),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help=MANIFEST_HELP),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    seed: int | None = typer.Option(None, "--seed"),
) -> None:
    """Answer every prompt of a JSONL file; one JSON line per prompt with its reply."""
    from tinkex_cookbook.errors import CookbookError
    from tinkex_cookbook.train.replies import replies

    try:
        items = _read_prompts(prompts)
    except CookbookError as exc:
        _fail(exc)
    opened = _sampling(target, checkpoint, model, renderer, manifest, max_tokens, temperature, seed)
    with opened as (_, sampler, sample_renderer, params):
        texts = replies(sampler, sample_renderer, items, params)
    lines = [json.dumps({"messages": p.messages, "reference": p.reference, "reply": t}) for p, t in zip(items, texts)]
    text = "".join(line + "\n" for line in lines)
    if out is None:
        sys.stdout.write(text)
    else:
        partial = out.with_name(f".{out.name}.partial")
        partial.write_text(text)
        os.replace(partial, out)  # whole or absent: a reader never sees half the replies
        typer.echo(f"{len(lines)} replies written to {out}", err=True)


def _read_prompts(path: Path) -> list[Any]:
    """The prompts of a JSONL file, read and checked as a dataset file is (``numbered_jsonl_rows``)."""
    from tinkex_cookbook.adapters.datasets.local import numbered_jsonl_rows
    from tinkex_cookbook.errors import DatasetError
    from tinkex_cookbook.secrets import environment_secrets, refuse_secrets
    from tinkex_cookbook.train.replies import prompt_from_line

    named = environment_secrets()
    items = []
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
            for lineno, data in numbered_jsonl_rows(path, handle):
                refuse_secrets(data, named, f"line {lineno} of {path}")  # it would go to the backend and the replies file
                items.append(prompt_from_line(data, lineno - 1))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return items


def export(
    target: str = typer.Argument(..., help="A run folder (or RUN_FOLDER/CHECKPOINT_NAME) trained on local_torch."),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder to write."),
    fmt: str = typer.Option("peft", "--format", "-f", help="peft: a LoRA adapter; merged: a full HF model."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", "-c", help="Checkpoint name (default: final)."),
    model: str | None = typer.Option(None, "--model", help="Base model of a checkpoint path."),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help=MANIFEST_HELP),
    push: str | None = typer.Option(None, "--push", help="Also upload the folder to this hub repository."),
) -> None:
    """Write a checkpoint as a PEFT adapter or a merged Hugging Face model, with a model card."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runs import RunsError
    from tinkex_cookbook.runtime.export import export_target

    try:
        resolved = _target(target, checkpoint, model, None)
        written = export_target(resolved, out, fmt, manifest, push)
    except (CookbookError, RunsError) as exc:
        _fail(exc)
    typer.echo(f"wrote {fmt} export of {resolved.label} to {out}")
    for line in written:
        typer.echo(line)
