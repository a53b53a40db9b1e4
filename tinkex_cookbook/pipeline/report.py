"""A run's report page (``loss.html``): a small chart per metric, the held-out replies, links to the
run's other pages. Self-contained: inline SVG (``charts.py``), no plotting library, opens anywhere.

The charts come from the ``metrics.jsonl`` rows alone, so every recipe gets its own: the headline
metric of each (SL ``train_mean_nll``, DPO ``dpo_loss``, RL ``reward_mean``, distillation
``teacher_kl``), the accuracy, margin and ``env/*`` metrics a recipe logs, the gradient norm, and
each evaluation task's ``<task>/<metric>`` rows. A held-out measure of a training metric
(``test_mean_nll`` beside ``train_mean_nll``, ``eval_teacher_kl`` beside ``teacher_kl``) shares its
chart, being on the same scale.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

from tinkex_cookbook.charts import Point, Series, axis_label, line_chart

STEP_CHARTS = ("train_mean_nll", "dpo_loss", "reward_mean", "teacher_kl", "accuracy", "margin")
"""``train.step`` metrics charted, in this order (then ``env/*``, then ``grad_norm``)."""
LAST_CHARTS = ("grad_norm",)
EVAL_COUNTS = frozenset({"examples", "tokens"})
"""``<task>/<metric>`` fields that count what was measured: not charted."""


def _step_chart(key: str) -> bool:
    return key in STEP_CHARTS or key in LAST_CHARTS or key.startswith("env/")


def chart_of(event: str, key: str) -> str | None:
    """The chart a row field is drawn on (named by the training metric it belongs to), or ``None``."""
    if event == "train.step":
        return key if _step_chart(key) else None
    if event != "train.eval":
        return None
    held_out = key.removeprefix("test_").removeprefix("eval_")
    for name in (held_out, f"train_{held_out}"):
        if _step_chart(name):
            return name
    if "/" in key and not key.startswith(("test_", "eval_")) and key.rsplit("/", 1)[1] not in EVAL_COUNTS:
        return key
    return None


def _order(chart: str) -> tuple[int, int, str]:
    if chart in STEP_CHARTS:
        return (0, STEP_CHARTS.index(chart), "")
    if chart.startswith("env/"):
        return (1, 0, chart)
    if chart in LAST_CHARTS:
        return (2, LAST_CHARTS.index(chart), "")
    return (3, 0, chart)


def report_charts(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Series]]]:
    """Each chart (named by its metric) with its lines: one per row field drawn on it, labelled by the
    field. Fields that are not numbers, and points that are not finite, are left out."""
    charts: dict[str, dict[str, list[Point]]] = {}
    for row in rows:
        step, event = _number(row.get("step")), str(row.get("event"))
        for key, value in row.items():
            chart, number = chart_of(event, key), _number(value)
            if chart is not None and step is not None and number is not None:
                charts.setdefault(chart, {}).setdefault(key, []).append((step, number))
    found = []
    for chart in sorted(charts, key=_order):
        keys = sorted(charts[chart], key=lambda key: key != chart)  # the training metric's line first
        found.append((chart, [(key, charts[chart][key]) for key in keys]))
    return found


def _number(value: Any) -> float | None:
    """A finite float; ``None`` for text, flags, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def chart_title(chart: str) -> str:
    """``mean_nll`` for the chart of ``train_mean_nll`` and ``test_mean_nll``; other charts keep their name."""
    return chart.removeprefix("train_")


def charts_html(rows: Sequence[dict[str, Any]]) -> str:
    """The small multiples: one chart per metric, wrapped to the page's width."""
    charts = report_charts(rows)
    if not charts:
        return "<p>No steps recorded yet.</p>"
    figures = []
    for chart, lines in charts:
        title = chart_title(chart)
        figures.append(f"<figure style='margin:0'>{line_chart(lines, title, axis_label(title), legend=True)}</figure>")
    return f"<div style='display:flex;flex-wrap:wrap;gap:16px'>{''.join(figures)}</div>"


def links_html(links: Sequence[str]) -> str:
    """The run's other pages (``.html``: transcripts, plots) and files, linked relative to the report,
    which sits in the same folder."""
    pages = [name for name in links if name.endswith(".html")]
    files = [name for name in links if not name.endswith(".html")]
    parts = [f"{heading}: " + " &middot; ".join(f"<a href='{html.escape(n)}'>{html.escape(n)}</a>" for n in names)
             for heading, names in (("Other pages", pages), ("Files", files)) if names]
    return f"<p style='font-size:small'>{'<br>'.join(parts)}</p>" if parts else ""


def samples_html(samples: Sequence[dict[str, Any]]) -> str:
    """Held-out prompts with the base model's reply beside the final model's (and the data's own)."""
    if not samples:
        return ""
    cell = "style='border:1px solid #ccc;padding:4px;vertical-align:top;white-space:pre-wrap'"
    rows = []
    for sample in samples:
        last = (sample.get("messages") or [{}])[-1]
        prompt = last.get("content") if isinstance(last.get("content"), str) else json.dumps(last.get("content"))
        texts = (prompt, sample.get("base"), sample.get("final"), sample.get("reference"))
        rows.append("<tr>" + "".join(f"<td {cell}>{html.escape(str(t or ''))}</td>" for t in texts) + "</tr>")
    head = "".join(f"<th {cell}>{name}</th>" for name in ("prompt", "base model", "final model", "reference"))
    return f"<h3>Replies before and after</h3><table style='border-collapse:collapse'><tr>{head}</tr>{''.join(rows)}</table>"


def summary_html(summary: dict[str, Any]) -> str:
    base = summary.get("base", {}).get("test_mean_nll")
    final = summary.get("final", {}).get("test_mean_nll")
    if base is None or final is None:
        return ""
    return f"<p><b>held-out NLL</b>: base model {base:.4f} &rarr; final model {final:.4f}</p>"


def loss_curve_html(
    rows: Sequence[dict[str, Any]], title: str, samples: Sequence[dict[str, Any]] = (),
    summary: dict[str, Any] | None = None, links: Sequence[str] = (),
) -> str:
    """The run's page: links to its other files, an SL run's held-out NLL before and after, a chart per
    metric (``report_charts``; a run with no rows yet gets a note), the replies of both models, and the
    rows themselves as JSON for whoever wants the numbers."""
    data = html.escape(json.dumps(list(rows)))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'><h3>{html.escape(title)}</h3>{links_html(links)}"
        f"{summary_html(summary or {})}{charts_html(rows)}{samples_html(samples)}"
        f"<script type='application/json' id='metrics'>{data}"
        "</script></body></html>"
    )
