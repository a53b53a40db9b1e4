"""Browse run folders: find them in a blob store, summarise one, chart a metric across several.

A run folder is any folder holding ``spec.json`` or ``metrics.jsonl`` (the layout
is ``run_folder.py``'s). Runs sit at any depth under a root: a local directory
(``$TINKEX_LOG_DIR``, else ``./runs``) or a manifest's blob store (S3 for
``prod``), read through ``RunFolder`` either way. Everything here only reads
those files: no recipe, port or backend is imported, so browsing stays fast.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinkex_cookbook.charts import PALETTE, Series, axis_label, line_chart
from tinkex_cookbook.line_files import Kind
from tinkex_cookbook.ports.blobs import BlobStore
from tinkex_cookbook.run_folder import (
    CHECKPOINTS,
    CONFIG,
    LOCK,
    LOG,
    MANIFEST,
    METRICS,
    RUN_MARKERS,
    SPEC,
    SUMMARY,
    RunFolder,
)

LOSS_METRICS = ("train_mean_nll", "dpo_loss", "reward_mean", "teacher_kl")
"""The metric a run is judged by, in the order looked for: SL, DPO, RL, distillation."""
COUNTERS = frozenset({"step", "total_steps", "batch", "epoch"})
"""Numeric row fields that are positions, not metrics."""
CHART_FORMATS = (".html", ".svg", ".png")
LABEL_KEYS = 4
"""``runs compare`` names runs by their differing config values when at most this many keys differ."""


class RunsError(ValueError):
    """A missing or non-run folder, or an absent metric; the CLI prints it as one line and exits 2."""


def default_root() -> Path:
    """``TINKEX_LOG_DIR`` (through ``Settings``), else ``./runs``."""
    from tinkex_cookbook.errors import CookbookError
    from tinkex_cookbook.runtime.settings import Settings

    try:
        log_dir = Settings().log_dir
    except CookbookError:  # a bad TINKEX_PORTS must not stop browsing
        log_dir = None
    return Path(log_dir or "runs")


def local_store(root: Path) -> BlobStore:
    """The blob store over a local directory of runs (the ``local`` adapter, as a run writes through it)."""
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore

    return LocalBlobStore(root)


def _log_time(line: str) -> float:
    """The UTC timestamp a ``run.log`` line starts with, or 0."""
    try:
        return datetime.strptime(line[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _metric_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every numeric field some row holds, counters (step, epoch ...) left out, sorted."""
    return sorted({k for row in rows for k, v in row.items() if k not in COUNTERS and _number(v) is not None})


def _number(value: Any) -> float | None:
    """A finite float for metric values; None for text, flags, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Run:
    """What one run folder holds, read once through its ``RunFolder``."""

    folder: RunFolder
    spec: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    """``summary.json``: held-out NLL and replies of the base and the final model (SL runs)."""
    log: list[str] = field(default_factory=list)
    lock: bytes | None = None
    damage: list[str] = field(default_factory=list)
    """Why ``metrics.jsonl`` or ``run.log`` cannot be trusted: a damaged line with whole lines after it (what
    a resume refuses). Browsing skips the run, or stops, saying this."""
    notes: list[str] = field(default_factory=list)
    """Damaged lines at the end of those files: left out of ``rows`` and ``log`` (a resume cuts them off)."""
    unreadable: list[str] = field(default_factory=list)
    """What is wrong with each of its JSON files that cannot be read (it is then read as empty)."""

    @classmethod
    def load(cls, where: RunFolder | Path) -> Run:
        """The run in ``where``: a ``RunFolder``, or a local directory."""
        folder = where if isinstance(where, RunFolder) else RunFolder(local_store(where.parent), where.name)
        metrics, log = folder.lines_file(METRICS, Kind.ROWS), folder.lines_file(LOG, Kind.TEXT)
        files = {name: folder.json_object(name) for name in (SPEC, CONFIG, MANIFEST, SUMMARY)}
        return cls(
            folder=folder,
            spec=files[SPEC][0],
            config=files[CONFIG][0],
            manifest=files[MANIFEST][0],
            rows=metrics.items,
            checkpoints=folder.read_rows(CHECKPOINTS),
            summary=files[SUMMARY][0],
            log=log.items,
            lock=folder.read(LOCK),
            damage=[str(error) for error in (metrics.middle_error(), log.middle_error()) if error is not None],
            notes=[note for note in (metrics.tail_note("ignored"), log.tail_note("ignored")) if note is not None],
            unreadable=[wrong for _, wrong in files.values() if wrong is not None],
        )

    def check(self) -> Run:
        """This run, if its files can be trusted; else ``RunsError`` saying why (for commands on one run)."""
        if self.damage:
            raise RunsError(self.damage[0])
        return self

    @property
    def path(self) -> str:
        """Where the folder is: a directory for a local store, a URL (``s3://...``) otherwise."""
        return self.folder.uri()

    @property
    def updated(self) -> float:
        """When the run last wrote: its newest timestamped ``run.log`` line, or its lock's heartbeat; 0 if neither."""
        holder = self._holder()
        heartbeat = holder.heartbeat if holder is not None else 0.0
        last = next((stamp for line in reversed(self.log) if (stamp := _log_time(line))), 0.0)  # an error's
        return max(last, heartbeat)  # message can span lines with no time of their own

    @property
    def recipe(self) -> str:
        return str(self.spec.get("recipe") or "-")

    @property
    def manifest_name(self) -> str:
        return str(self.manifest.get("name") or "-")

    @property
    def finished(self) -> bool:
        return any(record.get("final") for record in self.checkpoints)

    def _holder(self) -> Any:
        if self.lock is None:
            return None
        from tinkex_cookbook.runtime.lease import Holder  # only for folders with a lock

        return Holder.parse(self.lock)

    @property
    def running(self) -> bool:
        """The folder's ``run.lock`` names a run that may still be going (not one surely dead)."""
        from tinkex_cookbook.runtime.lease import stale_reason

        holder = self._holder()
        return holder is not None and stale_reason(holder, time.time()) is None

    @property
    def failed(self) -> bool:
        """Its last attempt ended in an error (``run.log``'s last workflow line is the exception)."""
        events = [line.split(" ", 2)[1] for line in self.log if " workflow." in line and len(line.split(" ", 2)) > 1]
        return bool(events) and events[-1] == "workflow.exception"

    @property
    def status(self) -> str:
        """finished, running, failed (the last attempt raised; see run.log), or incomplete (stopped or killed)."""
        if self.finished:
            return "finished"
        if self.running:
            return "running"
        return "failed" if self.failed else "incomplete"

    def event_rows(self, event: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("event") == event]

    @property
    def last_step_row(self) -> dict[str, Any]:
        steps = self.event_rows("train.step")
        return steps[-1] if steps else {}

    @property
    def steps(self) -> str:
        last = self.last_step_row
        if not last:
            return "-"
        return f"{last.get('step', '?')}/{last.get('total_steps', '?')}"

    @property
    def last_loss(self) -> tuple[str, float] | None:
        """The first of ``LOSS_METRICS`` in the newest step row that has one (any row if no step row does)."""
        for rows in (self.event_rows("train.step"), self.rows):
            for row in reversed(rows):
                for name in LOSS_METRICS:
                    value = _number(row.get(name))
                    if value is not None:
                        return name, value
        return None

    @property
    def metric_names(self) -> list[str]:
        """Every numeric field some row holds, counters (step, epoch ...) left out, sorted."""
        return _metric_keys(self.rows)

    def series(self, metric: str) -> list[tuple[float, float]]:
        """``(step, value)`` for each row holding ``metric``, in step order."""
        points = []
        for row in self.rows:
            step, value = _number(row.get("step")), _number(row.get(metric))
            if step is not None and value is not None:
                points.append((step, value))
        return sorted(points, key=lambda p: p[0])


def is_run_folder(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def find_run_folders(root: Path) -> list[Path]:
    """Run folders in a local directory (itself included), as ``run_prefixes`` finds them."""
    return [root / prefix if prefix else root for prefix in run_prefixes(local_store(root))]


def run_prefixes(store: BlobStore, prefix: str = "") -> list[str]:
    """The folders under ``prefix`` in ``store`` holding a run marker, not looking inside a run folder or a
    hidden folder; ``""`` is the root itself."""
    found: set[str] = set()
    for key in store.list(prefix):
        folder, _, name = key.rpartition("/")
        if name in RUN_MARKERS and not any(part.startswith(".") for part in folder.split("/") if part):
            found.add(folder)
    return sorted(f for f in found if not any(f.startswith(g + "/") or g == "" for g in found if g != f))


def find_runs(store: BlobStore, prefix: str = "", skipped: list[tuple[str, str]] | None = None) -> list[tuple[str, Run]]:
    """Every run under ``prefix`` in ``store`` with its label (its folder below the prefix), newest first.

    A folder that cannot be read, or whose ``metrics.jsonl`` or ``run.log`` is damaged before whole lines
    (``Run.damage``), is left out, and named in ``skipped`` with why: one bad folder must not hide the rest."""
    base = prefix.strip("/")
    runs = []
    for folder in run_prefixes(store, f"{base}/" if base else ""):
        label = _below(folder, base)
        try:
            run = Run.load(RunFolder(store, folder))
            updated = run.updated  # reads the lock too
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with one folder, list the others
            if skipped is not None:
                skipped.append((label, f"cannot be read: {type(exc).__name__}: {str(exc)[:300]}"))
            continue
        if run.damage:
            if skipped is not None:
                skipped.append((label, run.damage[0]))
            continue
        runs.append((updated, label, run))
    return [(label, run) for _updated, label, run in sorted(runs, key=lambda f: (f[0], f[1]), reverse=True)]


def _below(folder: str, base: str) -> str:
    return (folder[len(base) :].strip("/") if base else folder) or "."


def resolve_run(arg: str, store: BlobStore, where: str) -> Run:
    """The run folder ``arg`` names: a key folder in ``store`` (``where`` says what the store is, for errors)."""
    root_uri = store.uri("_").removesuffix("_")  # where keys start: the store has no empty key to ask about
    arg = arg.removeprefix(root_uri)  # the URI a run prints (``run: s3://bucket/prefix/name``)
    prefix = arg.strip("/")
    if prefix in ("", "."):
        prefix = ""
    inside = run_prefixes(store, f"{prefix}/" if prefix else "")
    if prefix in inside:
        return Run.load(RunFolder(store, prefix)).check()
    if not inside and not store.list(f"{prefix}/" if prefix else ""):
        raise RunsError(f"no such run folder: {arg} in {where}")
    hint = (f"; it holds {len(inside)} run folder(s), e.g. {inside[0]} (see `runs list`)" if inside else "")
    raise RunsError(f"{arg} is not a run folder: it has no spec.json or metrics.jsonl{hint}")


def resolve_local_run(arg: str, root: Path) -> Run:
    """The run folder ``arg`` names, as a local path or relative to ``root``."""
    path = Path(arg)
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        path = root / path
    if not path.exists():
        raise RunsError(f"no such directory: {arg}")
    if not path.is_dir():
        raise RunsError(f"{arg} is not a directory; pass a run folder (it holds spec.json or metrics.jsonl)")
    if not is_run_folder(path):
        inside = find_run_folders(path)
        hint = (f"; it holds {len(inside)} run folder(s), e.g. {inside[0]} (see `runs list --root {arg}`)"
                if inside else "")
        raise RunsError(f"{arg} is not a run folder: it has no spec.json or metrics.jsonl{hint}")
    return Run.load(path).check()


def run_labels(paths: Sequence[str], root: str) -> list[str]:
    """Short, distinct names for chart legends: each folder below ``root`` (as ``runs list`` shows it), else
    its last two parts (``sl_basic/20261123-120000``); the full locations if those collide."""
    labels = []
    base = root.rstrip("/") + "/"
    for path in paths:
        labels.append(path[len(base):] if path.startswith(base) else "/".join(path.rstrip("/").split("/")[-2:]))
    if all(label not in ("", ".") for label in labels) and len(set(labels)) == len(labels):
        return labels
    return list(paths)


def _metric_list(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none (its metrics.jsonl has no metric rows yet)"


def pick_metric(runs: Sequence[Run], metric: str | None) -> str:
    """``metric`` if every run has it, else the first loss-like metric all share; errors name what exists."""
    if metric is not None:
        for run in runs:
            if metric not in run.metric_names:
                raise RunsError(
                    f"{run.path} has no metric {metric!r}; its metrics: {_metric_list(run.metric_names)}")
        return metric
    shared = set.intersection(*(set(run.metric_names) for run in runs))
    for name in LOSS_METRICS:
        if name in shared:
            return name
    if len(runs) == 1:
        raise RunsError(f"{runs[0].path} has none of {', '.join(LOSS_METRICS)}; pass --metric, one of: "
                        f"{_metric_list(runs[0].metric_names)}")
    raise RunsError(f"no loss-like metric ({', '.join(LOSS_METRICS)}) is in every run; pass --metric, one of "
                    f"the metrics all share: {', '.join(sorted(shared)) or 'none'}")


def chart_file_name(*parts: str) -> str:
    """A file name from ``parts`` (``plot``, a metric such as ``env/correct``): ``plot-env_correct.html``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("_") + ".html"


def compare_file_name(now: float) -> str:
    """``compare-<UTC time>.html``: a new name for each comparison, in the clock order of the run folders."""
    return f"compare-{datetime.fromtimestamp(now, UTC):%Y%m%d-%H%M%S}.html"


def config_labels(runs: Sequence[Run], names: Sequence[str]) -> list[str]:
    """Each run named by the config values that tell it from the others (``learning_rate=1e-4``), leaving
    out ``log_path``, where the run logged (W&B, TensorBoard ...) and the keys equal in every run. Its name from ``names`` instead when no key differs
    or more than ``LABEL_KEYS`` do (runs of different recipes), and beside the values when two runs have
    the same ones."""
    from tinkex_cookbook.recipes.sink_keys import SINK_KEYS  # where a run logged, not what it trained

    keys = sorted({key for run in runs for key in run.config} - {"log_path", *SINK_KEYS})
    differing = [key for key in keys if len({_config_value(run.config, key) for run in runs}) > 1]
    if not differing or len(differing) > LABEL_KEYS:
        return list(names)
    labels = [", ".join(f"{key}={_config_value(run.config, key)}" for key in differing) for run in runs]
    return [f"{label} ({name})" if labels.count(label) > 1 else label
            for label, name in zip(labels, names, strict=True)]


def _config_value(config: dict[str, Any], key: str) -> str:
    if key not in config:
        return "(absent)"
    value = config[key]
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and value != 0 and math.isfinite(value) and not 1e-2 <= abs(value) < 1e5:
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 1e-4, not 0.0001 or 1e-04
    return format_value(value)


# --- charts -------------------------------------------------------------------------------------------


def chart_svg(series: Sequence[Series], metric: str, legend: bool = True) -> str:
    """One line per run on shared axes: ticks, the metric and its unit, and (unless the page around it
    has one) a legend."""
    return line_chart(series, metric, axis_label(metric), width=720, height=360, legend=legend)


def chart_html(series: Sequence[Series], metric: str, title: str) -> str:
    """A self-contained page: the SVG, a legend with each run's last value, and the points as JSON."""
    legend = "".join(
        f'<li><span style="color:{PALETTE[i % len(PALETTE)]}">&#9632;</span> {html.escape(label)}: '
        f"{len(points)} points, last {points[-1][1]:.4g} at step {points[-1][0]:g}</li>"
        for i, (label, points) in enumerate(series) if points
    )
    data = html.escape(json.dumps({"metric": metric, "series": {label: points for label, points in series}}))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'><h3>{html.escape(title)}</h3>"
        f"<div style='display:inline-block;border:1px solid #ccc'>{chart_svg(series, metric, legend=False)}</div>"
        f"<ul style='list-style:none;padding:0'>{legend}</ul>"
        f"<script type='application/json' id='series'>{data}</script></body></html>"
    )


def _png(path: Path, series: Sequence[Series], metric: str, title: str) -> bytes:
    try:
        from matplotlib.figure import Figure  # pyright: ignore[reportMissingImports]  # optional: PNG charts only
    except ImportError:
        raise RunsError(f"cannot write {path}: PNG needs matplotlib, which is not installed "
                        f"(pip install matplotlib); or write --out {path.with_suffix('.html')}") from None
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for index, (label, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        axes.plot([p[0] for p in points], [p[1] for p in points], label=label, color=color)
    axes.set_xlabel("step")
    axes.set_ylabel(axis_label(metric))
    axes.set_title(title)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def render_chart(path: Path, series: Sequence[Series], metric: str, title: str) -> bytes:
    """The chart in the format ``path``'s suffix names: .html (inline SVG), .svg, or .png (with matplotlib)."""
    suffix = path.suffix.lower()
    if suffix not in CHART_FORMATS:
        raise RunsError(f"cannot write {path}: --out must end in {', '.join(CHART_FORMATS)}")
    if suffix == ".png":
        return _png(path, series, metric, title)
    if suffix == ".svg":
        return chart_svg(series, metric).encode()
    return chart_html(series, metric, title).encode()


def write_chart(path: Path, series: Sequence[Series], metric: str, title: str) -> Path:
    """The chart as a local file, written whole (a temp file beside it, renamed into place)."""
    data = render_chart(path, series, metric, title)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise RunsError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def store_chart(store: BlobStore, key: str, series: Sequence[Series], metric: str, title: str) -> str:
    """The chart as an HTML page under ``key`` in ``store`` (beside the runs it charts); its URI."""
    store.write(key, chart_html(series, metric, title).encode())
    return store.uri(key)


# --- text summaries -----------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value)


def adapter_lines(manifest: dict[str, Any]) -> list[str]:
    lines = []
    for port, binding in sorted((manifest.get("ports") or {}).items()):
        if isinstance(binding, dict):
            options = ", ".join(
                f"{k}={format_value(v)}" for k, v in sorted(binding.items()) if k != "adapter")
            lines.append(f"{port}: {binding.get('adapter', '?')}" + (f" ({options})" if options else ""))
        else:
            lines.append(f"{port}: {binding}")
    return lines


def eval_summary(run: Run) -> list[str]:
    """Per eval metric: its value at the first and last eval, and its range."""
    rows = run.event_rows("train.eval")
    lines = []
    for name in _metric_keys(rows):
        values = [(row.get("step"), _number(row.get(name))) for row in rows]
        points = [(step, value) for step, value in values if value is not None]
        (first_step, first), (last_step, last) = points[0], points[-1]
        line = f"{name}: {first:.6g} (step {first_step})"
        if len(points) > 1:
            low, high = min(v for _, v in points), max(v for _, v in points)
            line += f" -> {last:.6g} (step {last_step}), min {low:.6g}, max {high:.6g}"
        lines.append(line)
    return lines
