"""`tinkex-cookbook runs`: browse run folders and chart their metrics.

    tinkex-cookbook runs list
    tinkex-cookbook runs list --manifest prod         # the runs in the prod manifest's blob store (S3)
    tinkex-cookbook runs show sl_basic/20261123-120000
    tinkex-cookbook runs compare runs/sl_basic/a runs/sl_basic/b --metric test_mean_nll   # runs/compare-<time>.html
    tinkex-cookbook runs compare runs/sl_basic/a runs/sl_basic/b --out nll.svg
    tinkex-cookbook runs plot runs/rl_basic/20261123-120000 --metric reward_mean   # in the run folder

Mounted by ``cli.py`` as ``app.add_typer(runs_app, name="runs")``. Errors follow
``cli._fail``: one line on stderr, exit status 2. Only typer is imported here;
``tinkex_cookbook.runs`` and rich load when a command runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from tinkex_cookbook.ports.blobs import BlobStore
    from tinkex_cookbook.runs import Run

runs_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None,
    help="Browse run folders: list, show, compare and plot their metrics.")

ROOT_HELP = "Folder holding run folders, searched at any depth (default: $TINKEX_LOG_DIR, else ./runs)."
DIR_HELP = "A run folder (one holding spec.json or metrics.jsonl), as a path or relative to the root."
METRIC_HELP = ("Metric to plot against step (default: the first of train_mean_nll, dpo_loss, reward_mean, "
               "teacher_kl that every run has).")
OUT_HELP = "Output file: .html (inline SVG, the default), .svg, or .png (needs matplotlib)."
MANIFEST_HELP = ("Read the runs in this manifest's blob store (e.g. prod: S3) instead of a local folder; "
                 "run folders are then named by their log_path.")


@dataclass
class Runs:
    """Where the runs are: a blob store, the key folder searched in it, and how to name both to a user."""

    store: BlobStore
    where: str
    root: Path | None = None
    """The local root, when browsing a directory: run arguments may then also be paths."""

    def resolve(self, arg: str) -> Run:
        """The run ``arg`` names; ``RunsError`` (one line) for a folder whose files cannot be read."""
        from tinkex_cookbook import CookbookError
        from tinkex_cookbook.runs import RunsError, resolve_local_run, resolve_run

        try:
            if self.root is not None:
                return resolve_local_run(arg, self.root)
            return resolve_run(arg, self.store, self.where)
        except (ValueError, RecursionError, ArithmeticError) as exc:  # RunsError is a ValueError too
            if isinstance(exc, RunsError | CookbookError):
                raise
            raise RunsError(f"{arg}: its files cannot be read: {type(exc).__name__}: {str(exc)[:300]}") from None

    def chart_place(self, runs: list[Run], metric: str, compare: bool) -> tuple[BlobStore, str]:
        """Where a chart goes without ``--out``: one run's ``plot-METRIC.html`` in its own folder; a
        comparison's ``compare-<time>.html`` in the root the runs were found in (runs given by a path
        outside the local root: the folder holding them all)."""
        from tinkex_cookbook.runs import chart_file_name, compare_file_name, local_store

        if not compare:
            folder = runs[0].folder
            return folder.store, folder.key(chart_file_name("plot", metric))
        name = compare_file_name(time.time())
        if self.root is None:
            return self.store, name
        root = os.path.abspath(self.root)
        paths = [os.path.abspath(run.path) for run in runs]
        if all(os.path.commonpath([root, path]) == root for path in paths):
            return self.store, name
        return local_store(Path(os.path.commonpath(paths))), name

    def labels(self, runs: list[Run]) -> list[str]:
        from tinkex_cookbook.runs import run_labels

        if self.root is not None:
            return run_labels([run.path for run in runs], str(self.root.absolute()))
        names = [run.folder.prefix or "." for run in runs]
        return names if len(set(names)) == len(names) else [run.path for run in runs]


@contextmanager
def _runs(root: Path | None, manifest: str | None, listing: bool = False) -> Iterator[Runs]:
    """The local root (default ``$TINKEX_LOG_DIR``, else ./runs; it must exist when ``listing``), or the
    manifest's blob store, opened through the runtime (only that port) and closed on exit."""
    from tinkex_cookbook.runs import RunsError, default_root, local_store

    if manifest is None:
        root = root or default_root()
        if listing and not root.is_dir():
            raise RunsError(f"no such directory: {root} (pass --root DIR or set $TINKEX_LOG_DIR)")
        yield Runs(local_store(root), str(root), root)
        return
    from tinkex_cookbook.runtime import Runtime

    with Runtime.open(manifest) as opened:
        store = opened.blob_store
        yield Runs(store, f"the blob store of manifest {manifest!r} ({store!r})")


def _fail(exc: Exception) -> NoReturn:
    """As ``cli._fail``: one line on stderr, exit status 2."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _is_terminal() -> bool:
    from rich.console import Console

    return Console().is_terminal


def _print(renderable: Any, terminal: bool) -> None:
    """Rich at a terminal; piped or captured, plain text at full width with no colour or trailing blanks."""
    from rich.console import Console

    if terminal:
        Console(highlight=False).print(renderable)
        return
    console = Console(highlight=False, width=1000, color_system=None, no_color=True)
    with console.capture() as captured:
        console.print(renderable)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _table(headers: list[str], rows: list[list[str]], terminal: bool, wrap: tuple[str, ...] = ()) -> Any:
    """Columns named in ``wrap`` fold when the terminal is narrow; the others keep their width."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD if terminal else None, pad_edge=False, show_edge=False,
                  collapse_padding=terminal)  # piped: two spaces between columns
    for header in headers:
        table.add_column(header, no_wrap=header not in wrap, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: a '[...]' in a value is not rich markup
    return table


def _lines(lines: list[str], terminal: bool) -> None:
    from rich.text import Text

    _print(Text("\n".join(lines)), terminal)


def _scrubber() -> Callable[[str], str]:
    """Hides this environment's secrets (``Settings.secret_values``) in text: a run folder saved with a secret
    pasted into a manifest option (a URL with a key in it) must not show it again."""
    from tinkex_cookbook.errors import CookbookError
    from tinkex_cookbook.runtime.settings import Settings

    try:
        return Settings().scrub
    except CookbookError:  # a bad TINKEX_PORTS must not stop browsing
        return str


def _last_loss(run: Run) -> str:
    loss = run.last_loss
    return f"{loss[0]}={loss[1]:.4g}" if loss else "-"


@runs_app.command("list")
def runs_list(
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP, show_default=False),
    manifest: str | None = typer.Option(None, "--manifest", help=MANIFEST_HELP, show_default=False),
) -> None:
    """Every run folder under the root, newest first: recipe, manifest, status, steps and last loss.

    Status is 'finished' when checkpoints.jsonl holds a final checkpoint, 'running' while a live run
    holds the folder's run.lock, 'failed' when its last attempt raised (run.log says why), else
    'incomplete' (stopped or killed). Rerun with its log_path to resume either. 'updated' is the
    time of the run's last run.log line. A folder that cannot be read (a damaged line in the middle
    of its metrics.jsonl or run.log) is skipped, and a line on stderr says which and why.
    """
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runs import RunsError, find_runs

    skipped: list[tuple[str, str]] = []
    try:
        with _runs(root, manifest, listing=True) as runs:
            found = find_runs(runs.store, skipped=skipped)
            where = runs.where
    except (RunsError, CookbookError) as exc:
        _fail(exc)
    rows = []
    for label, run in found:
        try:
            rows.append(_list_row(label, run))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with one folder, list the others
            skipped.append((label, f"cannot be read: {type(exc).__name__}: {str(exc)[:300]}"))
    scrub = _scrubber()
    for label, run in found:
        for note in run.notes:
            typer.echo(scrub(f"note: {label}: {note}"), err=True)
    for label, why in skipped:
        typer.echo(scrub(f"skipped {label}: {why}"), err=True)
    if not rows:
        typer.echo(f"no run folders under {where}" + (f" that can be read ({len(skipped)} skipped)" if skipped else ""))
        return
    terminal = _is_terminal()
    headers = ["run", "recipe", "manifest", "status", "steps", "last loss", "updated"]
    _print(_table(headers, rows, terminal, wrap=("run", "last loss")), terminal)


def _list_row(label: str, run: Run) -> list[str]:
    updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.updated)) if run.updated else "-"
    return [label, run.recipe, run.manifest_name, run.status, run.steps, _last_loss(run), updated]


@runs_app.command("show")
def runs_show(
    run_dir: str = typer.Argument(..., metavar="DIR", help=DIR_HELP),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP, show_default=False),
    manifest: str | None = typer.Option(None, "--manifest", help=MANIFEST_HELP, show_default=False),
) -> None:
    """One run: config, manifest and its adapters, checkpoints, last metrics row and evals."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runs import RunsError

    try:
        with _runs(root, manifest) as runs:
            run = runs.resolve(run_dir)
    except (RunsError, CookbookError) as exc:
        _fail(exc)
    for note in run.notes:
        typer.echo(_scrubber()(f"note: {note}"), err=True)
    _show(run)


def _show(run: Run) -> None:
    from rich.padding import Padding

    from tinkex_cookbook.run_folder import CONFIG
    from tinkex_cookbook.runs import adapter_lines, eval_summary, format_value

    terminal = _is_terminal()
    head = [
        f"run: {run.path}",
        f"experiment: {run.spec.get('name', '-')}",
        f"recipe: {run.recipe}",
        f"status: {run.status} (steps {run.steps}, last {_last_loss(run)})",
        f"manifest: {run.manifest_name}",
        *(f"  {line}" for line in adapter_lines(run.manifest)),
        "config:" if run.config else f"config: none ({'unreadable' if run.folder.exists(CONFIG) else 'no'} {CONFIG})",
        *(f"  {key}: {format_value(value)}" for key, value in sorted(run.config.items())),
        f"checkpoints: {len(run.checkpoints) or 'none'}",
        *(f"unreadable: {wrong}" for wrong in run.unreadable),
    ]
    scrub = _scrubber()
    _lines([scrub(line) for line in head], terminal)
    if run.checkpoints:
        rows = [[str(c.get("step", "?")), str(c.get("name", "?")), "yes" if c.get("final") else "no",
                 scrub(str(c.get("state_path") or "-"))] for c in run.checkpoints]
        table = _table(["step", "name", "final", "state path"], rows, terminal, wrap=("state path",))
        _print(Padding(table, (0, 0, 0, 2)), terminal)
    last = run.last_step_row
    tail = [f"last metrics (train.step, step {last.get('step', '?')}):" if last
            else "last metrics: none (no train.step rows)"]
    tail += [f"  {key}: {format_value(value)}" for key, value in sorted(last.items()) if key != "event"]
    evals = run.event_rows("train.eval")
    tail.append(f"evals: {len(evals)} row{'s' if len(evals) > 1 else ''}" if evals else "evals: none")
    tail += [f"  {line}" for line in eval_summary(run)]
    _lines([scrub(line) for line in tail], terminal)


def _chart(
    run_dirs: list[str], metric: str | None, out: Path | None, root: Path | None, manifest: str | None,
    compare: bool,
) -> None:
    """Chart ``metric`` for the runs, into ``out`` or beside the runs (``Runs.chart_place``); print where."""
    from tinkex_cookbook import CookbookError
    from tinkex_cookbook.runs import RunsError, config_labels, pick_metric, store_chart, write_chart

    try:
        with _runs(root, manifest) as runs:
            found = [runs.resolve(run_dir) for run_dir in run_dirs]
            names = runs.labels(found)
            chosen = pick_metric(found, metric)
            labels = config_labels(found, names) if compare else names
            series = [(label, run.series(chosen)) for label, run in zip(labels, found, strict=True)]
            if compare:
                title = f"{chosen}: {' vs '.join(labels)}"
            else:
                title = f"{chosen}: {labels[0]} ({found[0].spec.get('name', found[0].recipe)})"
            if out is not None:
                written = str(write_chart(out, series, chosen, title))
            else:
                written = store_chart(*runs.chart_place(found, chosen, compare), series, chosen, title)
    except (RunsError, CookbookError) as exc:
        _fail(exc)
    typer.echo(written)


@runs_app.command("compare")
def runs_compare(
    run_dirs: list[str] = typer.Argument(
        ..., metavar="DIR", help="Run folders to put on one chart."),
    metric: str | None = typer.Option(None, "--metric", "-m", help=METRIC_HELP, show_default=False),
    out: Path | None = typer.Option(
        None, "--out", "-o", help=OUT_HELP + " Default: compare-<time>.html in the root the runs are in.",
        show_default=False),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP, show_default=False),
    manifest: str | None = typer.Option(None, "--manifest", help=MANIFEST_HELP, show_default=False),
) -> None:
    """Chart one metric against step for several runs on shared axes, each run named by the config values
    that differ between them (learning_rate=1e-4); prints where the chart went."""
    _chart(run_dirs, metric, out, root, manifest, compare=True)


@runs_app.command("plot")
def runs_plot(
    run_dir: str = typer.Argument(..., metavar="DIR", help=DIR_HELP),
    metric: str | None = typer.Option(None, "--metric", "-m", help=METRIC_HELP, show_default=False),
    out: Path | None = typer.Option(
        None, "--out", "-o", help=OUT_HELP + " Default: plot-METRIC.html in the run's folder.", show_default=False),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP, show_default=False),
    manifest: str | None = typer.Option(None, "--manifest", help=MANIFEST_HELP, show_default=False),
) -> None:
    """Chart one metric of one run against step; prints where the chart went."""
    _chart([run_dir], metric, out, root, manifest, compare=False)
