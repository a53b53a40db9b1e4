"""The evaluation folder: what was asked, the numbers, every example, and a page to read them on.

    <folder>/eval.json                   tasks (with their configs), targets, seed, manifest
    <folder>/summary.json                {task: {target: metrics}}
    <folder>/summary.txt                 the table the command printed
    <folder>/details.json                {task: {target: details}}, e.g. where inspect-ai wrote its log
    <folder>/records/<task>/<target>.jsonl   one line per example (prompt, replies, verdicts, scores)
    <folder>/report.html                 the table, then each task's examples with every target's
                                         reply side by side

Files are written through the blob store (atomic writes), so the folder may be local or in S3.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tinkex_cookbook.eval.suite import EvalReport, TaskOutcome
from tinkex_cookbook.ports import BlobStore

EXAMPLES_SHOWN = 20
"""Examples per task on the HTML page (every one is in the records)."""


def safe_name(label: str) -> str:
    """A target label as a file name: ``runs/x @ final`` -> ``runs_x_final``."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", label).strip("_") or "target"


def records_jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, default=str, allow_nan=False) + "\n" for r in _finite(records)).encode()


def _finite(records: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Records with NaN or infinite floats as ``None``: strict JSON readers reject bare ``NaN``."""
    for record in records:
        yield {k: (None if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))) else v)
               for k, v in record.items()}


def write_report(store: BlobStore, prefix: str, report: EvalReport, request: Mapping[str, Any]) -> dict[str, str]:
    """Write the evaluation folder under ``prefix``; returns each file's URI by name."""
    files: dict[str, bytes] = {
        "eval.json": json.dumps(request, indent=2, default=str).encode(),
        "summary.json": json.dumps(report.summary(), indent=2, default=_jsonable).encode(),
        "summary.txt": (report.table() + "\n").encode(),
    }
    if report.outcome_details():
        files["details.json"] = json.dumps(report.outcome_details(), indent=2, default=str).encode()
    for outcome in report.outcomes:
        files[f"records/{outcome.task.name}/{safe_name(outcome.label)}.jsonl"] = records_jsonl(outcome.result.records)
    files["report.html"] = render_html(report).encode()
    uris = {}
    for name, data in files.items():
        store.write(f"{prefix}/{name}", data)
        uris[name] = store.uri(f"{prefix}/{name}")
    return uris


def _jsonable(value: Any) -> Any:
    return str(value)


def render_html(report: EvalReport) -> str:
    """One self-contained page: the table, then per task its examples with each target's reply side by side."""
    parts = ["<!doctype html><meta charset='utf-8'><title>evaluation</title>", STYLE,
             "<h1>Evaluation</h1>", _summary_table(report)]
    for task in report.tasks:
        outcomes = [o for o in report.outcomes if o.task.name == task.name]
        parts.append(f"<h2>{html.escape(task.name)} <small>{html.escape(task.evaluator)}"
                     f"{' — ' + html.escape(task.description) if task.description else ''}</small></h2>")
        parts.append(_metrics_table(outcomes))
        parts.extend(f"<p><b>{html.escape(o.label)}</b>: " + ", ".join(
            f"{html.escape(str(k))} <code>{html.escape(str(v))}</code>" for k, v in o.result.details.items()) + "</p>"
            for o in outcomes if o.result.details)
        parts.append(examples_table([(o.label, o.result.records) for o in outcomes]))
    return "\n".join(parts)


def _summary_table(report: EvalReport) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in report.labels)
    rows = []
    for task in report.tasks:
        name, higher, values = report.headline(task)
        given = [v for v in values.values() if v is not None]
        top = (max(given) if higher else min(given)) if given else None
        cells = []
        for value in values.values():
            mark = " class='best'" if value is not None and value == top and len(given) > 1 else ""
            cells.append(f"<td{mark}>{'-' if value is None else f'{value:.4f}'}</td>")
        rows.append(f"<tr><td>{html.escape(task.name)}</td><td>{html.escape(name)} "
                    f"({'↑' if higher else '↓'})</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>task</th><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _metrics_table(outcomes: list[TaskOutcome]) -> str:
    names = list(dict.fromkeys(k for o in outcomes for k in o.result.metrics))
    head = "".join(f"<th>{html.escape(o.label)}</th>" for o in outcomes)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(
            f"<td>{_cell(o.result.metrics.get(n))}</td>" for o in outcomes) + "</tr>" for n in names)
    seconds = "".join(f"<td>{o.seconds:.1f}</td>" for o in outcomes)
    return f"<table class='metrics'><tr><th>metric</th>{head}</tr>{rows}<tr><td>seconds</td>{seconds}</tr></table>"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


_SHOWN_KEYS = ("prompt", "conversation", "reference", "chosen", "rejected")


def examples_table(columns: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], shown: int = EXAMPLES_SHOWN) -> str:
    """The first ``shown`` examples, one row each, with every column's (label, records) reply side by side."""
    if not columns or not columns[0][1]:
        return ""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)
    rows = []
    for i, first in enumerate(columns[0][1][:shown]):
        shown_keys = "".join(f"<div><b>{k}</b><pre>{html.escape(str(first[k]))}</pre></div>"
                             for k in _SHOWN_KEYS if first.get(k) not in (None, ""))
        cells = []
        for _, records in columns:
            record = records[i] if i < len(records) else {}
            cells.append(f"<td>{_record_cell(record)}</td>")
        rows.append(f"<tr><td class='ex'>#{first.get('index', i)}{shown_keys}</td>{''.join(cells)}</tr>")
    return f"<table class='examples'><tr><th>example</th>{head}</tr>{''.join(rows)}</table>"


def _record_cell(record: Mapping[str, Any]) -> str:
    out = []
    replies = record.get("replies") or ([record["reply"]] if "reply" in record else [])
    verdicts = record.get("correct")
    for j, reply in enumerate(replies[:4]):
        verdict = verdicts[j] if isinstance(verdicts, list) and j < len(verdicts) else verdicts
        mark = "" if verdict is None else (" class='ok'" if verdict else " class='bad'")
        out.append(f"<pre{mark}>{html.escape(str(reply))}</pre>")
    for key in ("nll", "score", "chosen_logprob", "rejected_logprob", "rewards", "reasoning"):
        if key in record and record[key] is not None:
            value = record[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            out.append(f"<div><b>{key}</b> {html.escape(text)}</div>")
    if not replies and isinstance(verdicts, bool):
        out.append("<div class='ok'>correct</div>" if verdicts else "<div class='bad'>wrong</div>")
    return "".join(out)


STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4}td.best{font-weight:bold;background:#eef8ee}pre{white-space:pre-wrap;margin:2px 0;
max-width:42em}pre.ok{border-left:4px solid #3a3}pre.bad{border-left:4px solid #c33}.ok{color:#262}
.bad{color:#a22}td.ex{max-width:30em}small{color:#666;font-weight:normal}
</style>"""
