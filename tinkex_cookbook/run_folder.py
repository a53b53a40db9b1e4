"""A run folder: everything one run keeps, under its ``log_path`` in the blob store.

The layout is defined here once; the runtime writes a folder through ``RunFolder``
and ``runs list/show`` read it back through the same class, over any blob store
(a local root or S3). Deleting every key under the folder removes all of the run:
its files, its lock, and the local backend's checkpoint weights (``checkpoints/``).

    <log_path>/
      run.lock            the lease: one run at a time (``runtime/lease.py``)
      config.json         the recipe config; a folder with checkpoints refuses another
      spec.json           the experiment spec, replayable with ``run-spec``
      manifest.json       the resolved manifest (secret values scrubbed)
      metrics.jsonl       ``train.step`` / ``train.eval`` rows, appended
      run.log             the console's lines, timestamped, appended across attempts
      checkpoints.jsonl   one record per saved state, appended
      checkpoints/        the local backend's weights (Tinker keeps its own server-side)
      summary.json, samples.jsonl   held-out replies of the base and final model (SL)
      loss.html           the report written when the run ends
      evals/<task>/<step>.jsonl   per-example records of the evaluations run during training (``evals=``)
      transcripts/<step>.jsonl    a few of the step's prompts and completions with rewards (RL, distillation);
                                  the step in six digits, e.g. transcripts/000001.jsonl
      transcripts.html    the transcripts and evaluation examples, step by step, written when the run ends

Importing this module imports no pipeline, recipe or adapter: browsing stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tinkex_cookbook.errors import BlobNotFoundError, ConfigError, CookbookError
from tinkex_cookbook.jsonio import problem
from tinkex_cookbook.line_files import Kind, LinesFile, mend, parse_lines
from tinkex_cookbook.ports.blobs import BlobStore

if TYPE_CHECKING:
    from tinkex_cookbook.pipeline.telemetry import BlobLinesSink
    from tinkex_cookbook.runtime.lease import RunLease

LOCK = "run.lock"
CONFIG = "config.json"
SPEC = "spec.json"
MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
LOG = "run.log"
CHECKPOINTS = "checkpoints.jsonl"
CHECKPOINT_STATES = "checkpoints"
"""The folder the local backend's checkpoint weights go in for a run (``checkpoints/<model id>/<name>/``)."""
SUMMARY = "summary.json"
SAMPLES = "samples.jsonl"
REPORT = "loss.html"
EVALS = "evals"
"""Per-example records of the evaluations a run ran (``evals=``): ``evals/<task>/<step>.jsonl``."""
TRANSCRIPTS = "transcripts"
"""What RL and distillation steps generated, a few rows per step: ``transcripts/<step>.jsonl``."""
TRANSCRIPTS_PAGE = "transcripts.html"
"""The page that shows ``transcripts/`` and the ``evals/`` examples, written with the report (an artifact)."""
RUN_MARKERS = (SPEC, METRICS)
"""A folder holding either is a run folder."""
LINKED_FILES = (CONFIG, SPEC, METRICS, LOG, CHECKPOINTS, SUMMARY, SAMPLES)
"""The run's data files its report links to when they exist (after its other pages)."""
ARTIFACTS = (METRICS, CHECKPOINTS, LOG, REPORT, SAMPLES, SUMMARY)
"""Files a finished run lists in ``RunResult.artifacts`` when they exist (besides the run files it saved)."""


@runtime_checkable
class CheckpointPlacement(Protocol):
    """A training backend that writes checkpoint weights into the blob store (the local one; Tinker keeps
    its own server-side). The runtime tells it, for a run, to write under the run folder's
    ``checkpoints/``; outside a run (``Runtime.open``, ``serve``) it keeps its own default place."""

    def place_checkpoints(self, prefix: str) -> None:
        """Write checkpoints saved from now on under the blob key folder ``prefix``."""
        ...


@runtime_checkable
class LocatesKeys(Protocol):
    """A blob store that can read back the locations its ``uri`` prints (a path, a ``file://`` or ``s3://``
    URI), so a ``log_path`` copied from a run's output names the same folder."""

    def key_for(self, location: str) -> str | None:
        """The key ``location`` names in this store; ``None`` if it is a plain key. A location of this
        store's kind that lies outside it raises ``ConfigError``."""
        ...


def folder_key(store: BlobStore, log_path: str) -> str:
    """The run folder's key for ``log_path``: a key as given, or a location the store printed (its root
    stripped). A location that is not this store's, or its root itself, is a ``ConfigError``."""
    key = store.key_for(log_path) if isinstance(store, LocatesKeys) else None
    if key is None:
        if "://" in log_path:
            raise ConfigError(f"log_path {log_path!r} is not a location in this blob store ({store!r}): give "
                              "a folder relative to its root (e.g. 'sl_basic/my-run') or a location it printed")
        return log_path.strip("/")
    if not key:
        raise ConfigError(f"log_path {log_path!r} is the blob store's root itself, not a folder in it: name one "
                          f"inside it, e.g. {store.uri('sl_basic/my-run')!r}")
    if store.exists(key):  # e.g. a run's spec.json, copied from the lines the CLI prints
        folder = key.rpartition("/")[0]
        hint = f"its run folder is {store.uri(folder)!r}" if folder else "name a folder"
        raise ConfigError(f"log_path {log_path!r} is a file, not a run folder: {hint}")
    return key


class RunFolder:
    """One run's folder in ``store`` under ``prefix``: names its files, holds its lease, writes and reads them."""

    def __init__(self, store: BlobStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"RunFolder({self.uri()!r})"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri(self, name: str | None = None) -> str:
        return self.store.uri(self.key(name) if name else self.prefix or ".")

    @property
    def checkpoint_states(self) -> str:
        """The key prefix the local backend writes this run's checkpoint weights under."""
        return self.key(CHECKPOINT_STATES)

    def keys(self) -> list[str]:
        """Every key of the run (its files, lock and checkpoint weights)."""
        return self.store.list(self.key("") if self.prefix else "")

    def delete(self) -> None:
        for key in self.keys():
            self.store.delete(key)

    # -- reading -----------------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return self.store.exists(self.key(name))

    def read(self, name: str) -> bytes | None:
        try:
            return self.store.read(self.key(name))
        except BlobNotFoundError:
            return None

    def read_json(self, name: str) -> dict[str, Any]:
        """The file's JSON object, or ``{}`` if missing or unreadable (one bad run must not stop a listing;
        ``json_object`` also says what is wrong with it)."""
        return self.json_object(name)[0]

    def load_json(self, name: str, error: type[CookbookError] = ConfigError,
                  fix: str = "restore the file from the run that wrote it, or delete it") -> dict[str, Any]:
        """The file's JSON object, ``{}`` if missing; ``error`` naming the file's location, what is wrong and
        ``fix`` if it cannot be read as one (where going on without it would quietly change what runs)."""
        data, wrong = self.json_object(name)
        if wrong is not None:
            raise error(f"{self.uri(name)}: {wrong}. Fix: {fix}")
        return data

    def json_object(self, name: str) -> tuple[dict[str, Any], str | None]:
        """``(object, None)``; ``({}, None)`` if the file is missing; ``({}, what is wrong)`` if it cannot be
        read as a JSON object, e.g. ``config.json nests arrays or objects too deeply to read``."""
        raw = self.read(name)
        if raw is None:
            return {}, None
        data, wrong = problem(raw)
        if wrong is not None:
            return {}, f"{name} {wrong}"
        if not isinstance(data, dict):
            return {}, f"{name} holds a JSON {type(data).__name__}, not an object"
        return data, None

    def read_rows(self, name: str) -> list[dict[str, Any]]:
        """The JSON objects of a lines file; a torn last line and damaged lines are skipped (``line_files``)."""
        return self.lines_file(name, Kind.ROWS).items

    def read_lines(self, name: str) -> list[str]:
        """The UTF-8 lines of a text file; a torn last line and lines that are not UTF-8 are skipped."""
        return self.lines_file(name, Kind.TEXT).items

    def lines_file(self, name: str, kind: Kind) -> LinesFile:
        """A lines file's good and damaged lines (``line_files``), e.g. to tell a damaged middle from a tail."""
        return parse_lines(self.read(name) or b"", kind, self.uri(name))

    # -- writing a run -----------------------------------------------------------------------------------

    def lease(self) -> RunLease:
        """``with folder.lease() as lease:`` holds the folder for one run (see ``runtime/lease.py``)."""
        from tinkex_cookbook.runtime.lease import RunLease

        return RunLease(self.store, self.prefix)

    def refuse_changed_config(self, config_json: str, ignore: Collection[str] = ()) -> None:
        """A folder with checkpoints belongs to the config that made them: resuming it under another config
        would continue old checkpoints and metrics with new settings, and overwrite the record of the old ones.
        Keys in ``ignore`` may change (where metrics are sent besides the folder)."""
        if not self.exists(CHECKPOINTS) or not self.exists(CONFIG):
            return
        saved, wrong = self.json_object(CONFIG)
        if wrong is not None:
            raise ConfigError(f"log_path {self.prefix!r} holds checkpoints, but its saved config {self.uri(CONFIG)} "
                              f"cannot be read ({wrong}); restore it, or pick a new log_path")
        new = {k: v for k, v in json.loads(config_json).items() if k not in ignore}
        saved = {k: v for k, v in saved.items() if k not in ignore}
        if saved == new:
            return
        absent = object()
        changed = sorted(k for k in saved.keys() | new.keys() if saved.get(k, absent) != new.get(k, absent))
        shown = "; ".join(f"{k}: saved {_json_value(saved, k)}, now {_json_value(new, k)}" for k in changed)
        raise ConfigError(
            f"log_path {self.prefix!r} holds checkpoints of a run with another config ({self.uri(CONFIG)}): "
            f"{shown}; rerun with the saved values, or pick a new log_path"
        )

    def mend_appended_files(self) -> list[str]:
        """Before a run appends to the folder again: its ``run.log`` (kept across attempts) and, when it
        resumes from a checkpoint, its ``metrics.jsonl`` (else the run replaces it) must end in whole lines.
        A damaged tail is cut off; a warning line per file cut is returned. A damaged middle raises
        ``BlobStoreError`` naming the file, the line and the fix, before any file changes (``line_files``)."""
        files = [(self.key(LOG), Kind.TEXT)]
        if self.exists(CHECKPOINTS):
            files.append((self.key(METRICS), Kind.ROWS))
        return mend(self.store, files)

    def save_run_files(self, config_json: str, spec_json: str, manifest_json: str) -> dict[str, str]:
        """Save the config, the spec and the resolved manifest (already scrubbed); their URIs by name."""
        files = {CONFIG: config_json, SPEC: spec_json, MANIFEST: manifest_json}
        artifacts = {"run": self.uri()}
        for name, text in files.items():
            self.store.write(self.key(name), text.encode())
            artifacts[name] = self.uri(name)
        return artifacts

    def sinks(self, scrub: Callable[[str], str] = str) -> list[BlobLinesSink]:
        """The sinks that append to this folder: ``metrics.jsonl`` and ``run.log`` (its lines through ``scrub``)."""
        from tinkex_cookbook.pipeline.telemetry import JsonlMetricsSink, LogFileSink

        return [JsonlMetricsSink(self.store, self.key(METRICS)), LogFileSink(self.store, self.key(LOG), scrub=scrub)]

    def write_report(self, title: str) -> None:
        """``loss.html``: a chart per metric, the held-out replies and summary when the run wrote them, and
        links to the folder's other pages and files (``report_links``)."""
        from tinkex_cookbook.pipeline.report import loss_curve_html
        from tinkex_cookbook.pipeline.transcripts import write_transcripts_page

        write_transcripts_page(self, title)  # before the report, so a report linking the pages beside it finds this one
        if self.exists(METRICS):
            html = loss_curve_html(self.read_rows(METRICS), title, self.read_rows(SAMPLES), self.read_json(SUMMARY),
                                   self.report_links())
            self.store.write(self.key(REPORT), html.encode())

    def report_links(self) -> list[str]:
        """What the report links to, by name: every other page at the folder's top (any ``.html``: the
        transcripts, charts ``runs plot`` wrote), then the ``LINKED_FILES`` it holds. A page written after
        the report is linked the next time the report is written."""
        start = len(self.key(""))
        names = {key[start:] for key in self.keys()}
        pages = sorted(name for name in names if name.endswith(".html") and "/" not in name and name != REPORT)
        return pages + [name for name in LINKED_FILES if name in names]

    def artifacts(self) -> dict[str, str]:
        """The URIs of the run's files that exist (``ARTIFACTS``), and of its ``evals/`` folder if it wrote one."""
        found = {name: self.uri(name) for name in (*ARTIFACTS, TRANSCRIPTS_PAGE) if self.exists(name)}
        if self.store.list(self.key(EVALS + "/")):
            found[EVALS] = self.uri(EVALS)
        if self.store.list(self.key(TRANSCRIPTS + "/")):
            found[TRANSCRIPTS] = self.uri(TRANSCRIPTS)
        return found


def config_json(config: dict[str, Any], scrub: Callable[[str], str] = str) -> str:
    """A run's config as ``config.json`` holds it (and the config check compares it)."""
    return scrub(json.dumps(config, indent=2, sort_keys=True))


def _json_value(config: dict[str, Any], key: str) -> str:
    return json.dumps(config[key]) if key in config else "(absent)"
