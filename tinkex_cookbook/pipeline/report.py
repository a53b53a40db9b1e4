"""A self-contained loss-curve page for a run: inline SVG, no plotting library, opens anywhere."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

SERIES = (
    ("train_mean_nll", "train.step", "#1f77b4"), ("test_mean_nll", "train.eval", "#d62728"),
    ("reward_mean", "train.step", "#2ca02c"),  # RL runs
)
WIDTH, HEIGHT, PAD = 720, 360, 48


def _points(rows: Sequence[dict[str, Any]], key: str, event: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in rows if r.get("event") == event and key in r]


def _polyline(points: list[tuple[float, float]], bounds: tuple[float, float, float, float], color: str) -> str:
    x0, x1, y0, y1 = bounds
    scale_x = (WIDTH - 2 * PAD) / ((x1 - x0) or 1.0)
    scale_y = (HEIGHT - 2 * PAD) / ((y1 - y0) or 1.0)
    coords = " ".join(f"{PAD + (x - x0) * scale_x:.1f},{HEIGHT - PAD - (y - y0) * scale_y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'


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
    summary: dict[str, Any] | None = None,
) -> str:
    """Train and test NLL (SL) or mean reward (RL) against step, axis ranges printed; empty runs get a note.
    An SL run adds its held-out NLL before and after, and the replies of both models."""
    series = [(key, _points(rows, key, event), color) for key, event, color in SERIES]
    everything = [p for _, points, _ in series for p in points]
    if not everything:
        body = "<p>No steps recorded yet.</p>"
    else:
        xs, ys = [p[0] for p in everything], [p[1] for p in everything]
        bounds = (min(xs), max(xs), min(ys), max(ys))
        lines = "".join(_polyline(points, bounds, color) for _, points, color in series if points)
        legend = " ".join(f'<span style="color:{c}">&#9632; {k}</span>' for k, p, c in series if p)
        body = (
            f'<svg width="{WIDTH}" height="{HEIGHT}" style="border:1px solid #ccc">{lines}</svg>'
            f"<p>{legend}</p><p>steps {bounds[0]:g} to {bounds[1]:g}; values {bounds[2]:.4g} to {bounds[3]:.4g}</p>"
        )
    data = html.escape(json.dumps(list(rows)))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h3>{html.escape(title)}</h3>{summary_html(summary or {})}{body}{samples_html(samples)}"
        f"<script type='application/json' id='metrics'>{data}"
        "</script></body></html>"
    )
