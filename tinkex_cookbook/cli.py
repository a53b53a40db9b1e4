"""`tinkex-cookbook`: run recipes and inspect manifests from the shell.

    tinkex-cookbook run sl_basic --manifest test learning_rate=1e-4 batch_size=8
    tinkex-cookbook run sl_basic --manifest local --dry-run
    tinkex-cookbook manifests show prod
    tinkex-cookbook adapters list blob_store
    tinkex-cookbook serve --manifest local --port 8000
    tinkex-cookbook eval --run runs/sl_basic/<time> --tasks chitchat_nll

Cookbook errors print as one line on stderr and exit with status 2; they name
the bad value and the valid choices, so a traceback would only add noise.
Help text is plain (``rich_markup_mode=None`` on every app): rich markup would
eat bracketed text such as the extra ``[wandb]``. Every invocation passes through
``cli_secrets.SecretGuardGroup``: an argument holding a secret of the environment
is refused, and everything printed (errors, tracebacks, log lines) is scrubbed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from tinkex_cookbook.cli_doctor import doctor
from tinkex_cookbook.cli_eval import eval_command
from tinkex_cookbook.cli_models import chat, export, sample
from tinkex_cookbook.cli_runs import runs_app
from tinkex_cookbook.cli_secrets import SecretGuardGroup, install_scrubbed_output

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, cls=SecretGuardGroup,
                  help=(__doc__ or "").split("\n\n")[0])  # no docstrings under python -OO
manifests_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="List and show deployment manifests.")
app.add_typer(manifests_app, name="manifests")
recipes_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="List recipes and describe their configs.")
app.add_typer(recipes_app, name="recipes")
adapters_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="List the adapters manifests can bind to each port.")
app.add_typer(adapters_app, name="adapters")
app.add_typer(runs_app, name="runs")
app.command()(doctor)
app.command()(chat)
app.command()(sample)
app.command()(export)
app.command("eval")(eval_command)

MANIFEST_HELP = "Manifest name or YAML path (default: $TINKEX_MANIFEST, else 'default')."
DRY_RUN_HELP = "Validate and print the plan (an unset secret is a warning in it); touch no backend."
CONFIG_HELP = ("YAML or JSON file of config keys (e.g. 'learning_rate: 1e-4'); key=value overrides win "
               "over it. A dotted key sets one key of a mapping field: loss_fn_config.clip_high_threshold=1.3.")


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _progress_sinks(verbose: bool, quiet: bool) -> list[Any]:
    """A live bar at a terminal, a line every tenth of the run when piped; nothing extra when quiet or
    verbose (verbose already prints every step)."""
    import sys

    if quiet or verbose:
        return []
    from tinkex_cookbook.pipeline.progress import PlainProgressSink, ProgressSink

    return [ProgressSink()] if sys.stderr.isatty() else [PlainProgressSink()]


def _with_flags(overrides: list[str], **flags: str | None) -> list[str]:
    """``--wandb-project X`` is the override ``wandb_project=X``, so the saved config keeps it; the same key
    given both ways with two values is an error naming both."""
    from tinkex_cookbook import ConfigError
    from tinkex_cookbook.recipes import parse_overrides

    given = parse_overrides(overrides)
    for key, value in flags.items():
        if value is None:
            continue
        if key in given and given[key] != value:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} {value!r} and the override {key}={given[key]!r} disagree; give one of them")
        overrides = [*overrides, f"{key}={value}"]
    return overrides


def _summary(result: Any) -> str:
    lines = [f"completed {len(result.completed_stages)} stages: {', '.join(result.completed_stages)}"]
    last = result.state.get("last_metrics")
    if last:
        shown = {k: round(last[k], 4) if isinstance(last[k], float) else last[k]
                 for k in ("step", "total_steps", "train_mean_nll") if k in last}
        lines.append("last step: " + json.dumps(shown))
    summary = result.state.get("summary") or {}
    base, final = (summary.get(k, {}).get("test_mean_nll") for k in ("base", "final"))
    if base is not None and final is not None:
        lines.append(f"held-out NLL: base {base:.4f} -> final {final:.4f} ({final - base:+.4f})")
    lines.extend(f"{name}: {uri}" for name, uri in result.artifacts.items())
    return "\n".join(lines)


@app.command()
def run(
    recipe: str = typer.Argument(..., help="Recipe name, e.g. sl_basic."),
    overrides: list[str] = typer.Argument(None, help="Config overrides as key=value."),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help=MANIFEST_HELP),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print a line per step instead of a bar."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (for CI)."),
    wandb_project: str | None = typer.Option(
        None, "--wandb-project",
        help="Also log to this W&B project: the config key wandb_project (extra [wandb]; WANDB_MODE=offline "
             "keeps it local)."),
    wandb_name: str | None = typer.Option(
        None, "--wandb-name", help="W&B run name: the config key wandb_name (default: the experiment name)."),
) -> None:
    """Run RECIPE with config overrides on the chosen manifest."""
    from tinkex_cookbook import CookbookError, Runtime
    from tinkex_cookbook.cli_resume import (
        diverged,
        exit_diverged,
        exit_interrupted,
        exit_stopped,
        finished_message,
        manifest_args,
        without_keys,
        without_log_path,
    )
    from tinkex_cookbook.errors import RunStoppedError
    from tinkex_cookbook.runtime.config_file import config_from

    pairs: list[str] = []
    try:
        pairs = _with_flags(overrides or [], wandb_project=wandb_project, wandb_name=wandb_name)
        result = Runtime.run(
            recipe, config_from(config, pairs), manifest=manifest, dry_run=dry_run, verbose=verbose, quiet=quiet,
            sinks=_progress_sinks(verbose, quiet),
        )
    except RunStoppedError as exc:
        config_args = ["--config", str(config)] if config else []
        exit_stopped(exc, ["run", recipe, *manifest_args(manifest), *config_args, *without_log_path(pairs),
                           f"log_path={exc.log_path}"])
    except CookbookError as exc:
        if (diverging := diverged(exc)) is not None and diverging.lower_learning_rate:
            config_args = ["--config", str(config)] if config else []
            exit_diverged(exc, ["run", recipe, *manifest_args(manifest), *config_args,
                                *without_keys(pairs, ("log_path", "learning_rate")),
                                f"learning_rate={diverging.lower_learning_rate}", "log_path=NEW_FOLDER"])
        _fail(exc)
    except KeyboardInterrupt as exc:
        exit_interrupted(exc)
    if not dry_run:
        typer.echo(finished_message(result) if result.already_finished else _summary(result))


@app.command("run-spec")
def run_spec(
    spec_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A saved spec.json."),
    manifest: str | None = typer.Option(
        None, "--manifest", "-m",
        help="Manifest name or YAML path (default: the one recorded in the spec's run folder, else "
             "$TINKEX_MANIFEST, else 'default')."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_path: str | None = typer.Option(
        None, "--log-path", help="Run in this folder instead of the spec's own (replay a finished run anew)."),
) -> None:
    """Replay an experiment spec: it resumes the spec's own run folder, or runs in --log-path's.

    A spec without a log_path (as `spec` prints one) runs in a new timestamped folder each time.
    Without --manifest it runs on the manifest recorded beside the spec (the run folder's
    manifest.json), so a run replays on the deployment it ran on.
    """
    from pydantic import ValidationError

    from tinkex_cookbook import CookbookError, Experiment, Runtime, Settings
    from tinkex_cookbook.cli_resume import (
        exit_interrupted,
        exit_stopped,
        finished_message,
        manifest_args,
        recorded_manifest,
    )
    from tinkex_cookbook.errors import RunStoppedError, SpecError

    try:
        if manifest is None:
            manifest = recorded_manifest(spec_file)
            if manifest is not None:
                typer.echo(f"manifest: {manifest} (recorded beside {spec_file}; --manifest overrides)", err=True)
        manifest = manifest or Settings().manifest or "default"  # named in the resume command printed on a stop
        try:
            spec_text = spec_file.read_bytes()
        except OSError as exc:
            raise SpecError(f"cannot read {spec_file}: {exc.strerror or exc}") from None
        spec = Experiment.read(spec_text, str(spec_file))
        if log_path is not None:
            spec = spec.with_config(log_path=log_path)
        result = Runtime.run_spec(spec, manifest=manifest, dry_run=dry_run, verbose=verbose)
    except ValidationError as exc:
        _fail(ValueError(f"{spec_file} is not an experiment spec: {exc.error_count()} problem(s): {exc}"))
    except RunStoppedError as exc:
        exit_stopped(exc, ["run-spec", str(spec_file), *manifest_args(manifest), "--log-path", exc.log_path])
    except CookbookError as exc:
        _fail(exc)
    except KeyboardInterrupt as exc:
        exit_interrupted(exc)
    if not dry_run:
        typer.echo(finished_message(result) if result.already_finished else _summary(result))


SERVE_LIMIT_OPTION = typer.Option(None, "--limit", metavar="NAME=N", help="Raise or lower a request limit, NAME=N (repeatable; "
                                  "names in docs/tinker.md, e.g. max_samples=256).")


@app.command()
def serve(
    manifest: str = typer.Option("local", "--manifest", "-m", help="Manifest whose training backend serves."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to bind (0: any free port)."),
    limit: list[str] = SERVE_LIMIT_OPTION,
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="Largest request body in MiB, before and "
                                      "after decompression; larger ones get 413."),
    idle_timeout: float = typer.Option(60.0, "--idle-timeout", help="Seconds a connection may sit idle (or "
                                       "take to send a request) before it is closed."),
    max_connections: int = typer.Option(256, "--max-connections", help="Connections open at once; beyond "
                                        "it the longest-idle one is closed, or the new one gets 503."),
) -> None:
    """Serve the Tinker API on this machine, over the manifest's training backend.

    Clients must send the key in $TINKEX_SERVE_API_KEY (else $TINKER_API_KEY): 'tml-' then 16 or more
    characters; point them at it with TINKER_BASE_URL=http://HOST:PORT.
    """
    from tinkex_cookbook import CookbookError, Settings
    from tinkex_cookbook.serve import ServeLimits, serve_manifest
    from tinkex_cookbook.serve.keys import MAKE_ONE

    try:
        limits = ServeLimits.from_options(max_body_mb, idle_timeout, max_connections, limit)
        settings = Settings()
        secret = settings.serve_api_key or settings.tinker_api_key
        key = secret.get_secret_value() if secret else ""
        if not key.startswith("tml-"):
            _fail(ValueError("set TINKEX_SERVE_API_KEY (or TINKER_API_KEY) to the key clients must send; "
                             f"the Tinker SDK only sends keys that start with 'tml-'. Make one with: {MAKE_ONE}"))
        serve_manifest(manifest, host, port, key, announce=typer.echo, settings=settings, limits=limits)
    except CookbookError as exc:
        _fail(exc)


@app.command()
def spec(
    recipe: str = typer.Argument(..., help="Recipe name, e.g. sl_basic."),
    overrides: list[str] = typer.Argument(None, help="Config overrides as key=value."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Print RECIPE's experiment spec as JSON (replay it with `run-spec FILE`).

    Without a log_path override the spec names no run folder: each `run-spec` of it starts a new
    timestamped one (and saves the spec, with that folder, in it).
    """
    from tinkex_cookbook import CookbookError, Runtime
    from tinkex_cookbook.runtime.config_file import config_from

    try:
        typer.echo(Runtime.build_spec(recipe, config_from(config, overrides or [])).to_json())
    except CookbookError as exc:
        _fail(exc)


def _listing(load: Any, plugin: str | None) -> tuple[str, bool]:
    """One listing line's description and whether it loaded; a broken plugin is named, not raised."""
    from tinkex_cookbook.errors import CookbookError

    origin = f"  [plugin {plugin}]" if plugin else ""
    try:
        return load() + origin, True
    except CookbookError as exc:
        typer.echo(f"error: {exc}", err=True)
        return "(cannot be loaded: see the error above)" + origin, False


@recipes_app.command("list")
def recipes_list() -> None:
    """Every registered recipe (plugins' too) with the first line of its description."""
    from tinkex_cookbook.recipes import RECIPES, get_recipe
    from tinkex_cookbook.recipes.base import recipe_summary

    loaded = []
    for name in RECIPES.names():
        text, ok = _listing(lambda name=name: recipe_summary(get_recipe(name)), RECIPES.plugin(name))
        typer.echo(f"{name:<14} {text}")
        loaded.append(ok)
    if not all(loaded):
        raise typer.Exit(1)


@adapters_app.command("list")
def adapters_list(
    port: str | None = typer.Argument(None, help="Only this port's adapters, e.g. blob_store."),
) -> None:
    """Every adapter name a manifest can bind (plugins' too), per port, with its summary."""
    from tinkex_cookbook.errors import CookbookError
    from tinkex_cookbook.runtime import ADAPTERS

    try:
        ports = [port] if port else ADAPTERS.ports()
        names = [(p, name) for p in ports for name in ADAPTERS.names(p)]
    except CookbookError as exc:
        _fail(exc)
    loaded = []
    for p, name in names:
        text, ok = _listing(lambda p=p, name=name: ADAPTERS.get(p, name).summary, ADAPTERS.plugin(p, name))
        typer.echo(f"{p:<17} {name:<18} {text}")
        loaded.append(ok)
    if not all(loaded):
        raise typer.Exit(1)


@recipes_app.command("describe")
def recipes_describe(name: str = typer.Argument(..., help="Recipe name.")) -> None:
    """RECIPE's config fields (type, default, help), the stages it runs and the ports they use."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.recipes import describe_recipe

    try:
        typer.echo(describe_recipe(name))
    except CookbookError as exc:
        _fail(exc)


@manifests_app.command("list")
def manifests_list() -> None:
    """The shipped manifests with their descriptions."""
    from tinkex_cookbook.runtime.manifest import load_chain, shipped_manifest_names

    for name in shipped_manifest_names():
        typer.echo(f"{name:<8} {load_chain(name)[-1][1].description}")


@manifests_app.command("show")
def manifests_show(
    name: str = typer.Argument(..., help="Manifest name or YAML path."),
) -> None:
    """The merged manifest (after extends and environment overrides) and settings, secrets redacted."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runtime import ADAPTERS, ManifestLoader, Settings

    try:
        settings = Settings()
        resolved = ManifestLoader(ADAPTERS).resolve(name, settings.ports)
    except CookbookError as exc:
        _fail(exc)
    shown = {"manifest": resolved.to_dict(), "settings": settings.redacted()}
    typer.echo(settings.scrub(json.dumps(shown, indent=2, sort_keys=True)))


def main() -> None:
    install_scrubbed_output()
    app()


if __name__ == "__main__":
    main()
