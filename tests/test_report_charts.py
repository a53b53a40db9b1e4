"""The run report's charts (``loss.html``) and the chart drawing under it: every recipe's headline metric
on a chart with axes, ticks and units; no division by zero on one point or a flat line; round ticks."""

from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook import Runtime
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.charts import LIMIT, line_chart, nice_ticks, tick_label
from tinkex_cookbook.pipeline.report import loss_curve_html, report_charts
from tinkex_cookbook.run_folder import RunFolder

SVG = "{http://www.w3.org/2000/svg}"

RECIPES: dict[str, tuple[dict[str, Any], dict[str, tuple[str, set[str]]]]] = {
    # recipe: (config, {chart title: (y axis label, lines drawn)})
    "sl_basic": ({"batch_size": 8, "train_size": 16, "test_size": 8, "eval_every": 1}, {
        "mean_nll": ("mean_nll (nats/token)", {"train_mean_nll", "test_mean_nll"}),
        "grad_norm": ("grad_norm (L2 norm)", {"grad_norm"}),
    }),
    "rl_basic": ({"env": "digits", "num_steps": 2, "batch_size": 2}, {
        "reward_mean": ("reward_mean (reward)", {"reward_mean", "test_reward_mean"}),  # rl_evaluate's too
        "env/digit_share": ("env/digit_share", {"env/digit_share", "test_env/digit_share"}),
        "grad_norm": ("grad_norm (L2 norm)", {"grad_norm"}),
    }),
    "math_rl": ({"num_steps": 2, "batch_size": 2}, {
        "reward_mean": ("reward_mean (reward)", {"reward_mean", "test_reward_mean"}),
        "env/correct": ("env/correct (fraction)", {"env/correct", "test_env/correct"}),
    }),
    "dpo": ({"batch_size": 4, "eval_every": 10}, {
        "dpo_loss": ("dpo_loss (nats/pair)", {"dpo_loss", "test_dpo_loss"}),
        "accuracy": ("accuracy (fraction)", {"accuracy", "test_accuracy"}),
        "margin": ("margin (nats)", {"margin", "test_margin"}),
    }),
    "distillation": ({"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 2, "batch_size": 2}, {
        "teacher_kl": ("teacher_kl (nats/token)", {"teacher_kl", "eval_teacher_kl"}),
        "grad_norm": ("grad_norm (L2 norm)", {"grad_norm"}),
    }),
}


def svgs(page: str) -> list[ET.Element]:
    """Every chart on the page, parsed (so each is well-formed XML)."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", page, re.DOTALL)]


def texts(svg: ET.Element) -> list[str]:
    return [text.text or "" for text in svg.iter(f"{SVG}text")]


def chart_parts(svg: ET.Element) -> tuple[str, str, set[str], list[str]]:
    """A chart's title, y axis label, the labels of its lines, and its tick labels."""
    title = next(t.text or "" for t in svg.iter(f"{SVG}text") if t.get("font-weight") == "bold")
    y_label = next(t.text or "" for t in svg.iter(f"{SVG}text") if "rotate" in (t.get("transform") or ""))
    lines = {g.findtext(f"{SVG}title") or "" for g in svg.iter(f"{SVG}g")}
    ticks = [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("text-anchor") in ("middle", "end")
             and t.get("font-weight") is None and "rotate" not in (t.get("transform") or "")]
    return title, y_label, lines, ticks


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_charts_its_headline_metric_with_axes_ticks_and_units(recipe: str) -> None:
    config, expected = RECIPES[recipe]
    store = MemoryBlobStore()
    Runtime.run(recipe, {"renderer_name": "role_colon", "log_path": "run", **config}, manifest="test",
                ports={"blob_store": store})
    page = store.read("run/loss.html").decode()
    charts = {chart_parts(svg)[0]: chart_parts(svg) for svg in svgs(page)}
    for title, (y_label, lines) in expected.items():
        assert title in charts, (title, sorted(charts))
        _title, drawn_y_label, drawn_lines, ticks = charts[title]
        assert drawn_y_label == y_label and drawn_lines == lines
        assert "step" in ticks  # the x axis label
        assert len(ticks) >= 6 and all(re.fullmatch(r"-?[0-9.e+-]+|step", tick) for tick in ticks)
    assert "No steps recorded yet" not in page


def test_evaluation_tasks_get_a_chart_per_metric_and_counts_none() -> None:
    rows = [{"event": "train.step", "step": 1, "total_steps": 2, "train_mean_nll": 2.0},
            {"event": "train.eval", "step": 0, "arithmetic/accuracy": 0.25, "chitchat_nll/nll": 2.1,
             "chitchat_nll/examples": 96, "arithmetic/examples": 32.0},
            {"event": "train.eval", "step": 2, "arithmetic/accuracy": 0.5, "chitchat_nll/nll": 1.9}]
    charts = dict(report_charts(rows))
    assert list(charts) == ["train_mean_nll", "arithmetic/accuracy", "chitchat_nll/nll"]
    assert charts["arithmetic/accuracy"] == [("arithmetic/accuracy", [(0.0, 0.25), (2.0, 0.5)])]
    titles = [chart_parts(svg)[:2] for svg in svgs(loss_curve_html(rows, "run"))]
    assert ("arithmetic/accuracy", "arithmetic/accuracy (fraction)") in titles
    assert ("chitchat_nll/nll", "chitchat_nll/nll (nats/token)") in titles


def test_values_that_are_not_finite_numbers_are_skipped() -> None:
    rows = [{"event": "train.step", "step": step, "dpo_loss": value}
            for step, value in enumerate([0.7, math.nan, math.inf, -math.inf, "0.5", True, None, 0.6], 1)]
    rows.append({"event": "train.step", "step": math.nan, "dpo_loss": 0.1})
    assert report_charts(rows) == [("dpo_loss", [("dpo_loss", [(1.0, 0.7), (8.0, 0.6)])])]
    page = loss_curve_html(rows, "run")
    (svg,) = svgs(page)
    assert len(list(svg.iter(f"{SVG}circle"))) == 2
    assert not any(word in " ".join(texts(svg)).lower() for word in ("nan", "inf"))
    assert "no finite values" in line_chart([("x", [(1.0, math.nan)])], "x", "x")


@pytest.mark.parametrize("points", [
    [(3.0, 0.5)],  # a single point
    [(1.0, 0.5), (2.0, 0.5), (3.0, 0.5)],  # a flat line
    [(0.0, 0.0)],  # a single point at the origin
    [(1.0, -2e-9), (2.0, -2e-9)],  # flat and tiny
])
def test_one_point_or_a_flat_line_still_gets_axes(points: list[tuple[float, float]]) -> None:
    svg = ET.fromstring(line_chart([("metric", points)], "metric", "metric (unit)"))
    _title, _y_label, _lines, ticks = chart_parts(svg)
    assert len(ticks) >= 7  # 3+ on each axis and the x label
    circles = list(svg.iter(f"{SVG}circle"))
    assert len(circles) == len(points)
    for circle in circles:
        x, y = float(circle.get("cx") or "nan"), float(circle.get("cy") or "nan")
        assert 0 <= x <= float(svg.get("width") or 0) and 0 <= y <= float(svg.get("height") or 0)


def test_the_report_links_the_folders_other_pages_and_files() -> None:
    store = MemoryBlobStore()
    folder = RunFolder(store, "team/run")
    for name in ("metrics.jsonl", "config.json", "transcripts.html", "evals/arith/000001.jsonl", "plot-x.html"):
        store.write(folder.key(name), b'{"event": "train.step", "step": 1, "train_mean_nll": 1.0}\n')
    store.write("team/other/transcripts.html", b"")  # another folder's page
    folder.write_report("run")
    assert folder.report_links() == ["plot-x.html", "transcripts.html", "config.json", "metrics.jsonl"]
    page = store.read("team/run/loss.html").decode()
    assert "href='transcripts.html'" in page and "href='metrics.jsonl'" in page and "href='loss.html'" not in page
    assert page.index("Other pages: ") < page.index("transcripts.html") < page.index("Files: ") < page.index("config.json")


def test_a_run_with_no_rows_yet_says_so() -> None:
    assert "No steps recorded yet." in loss_curve_html([], "run")
    assert "No steps recorded yet." in loss_curve_html([{"event": "train.step", "step": 1, "num_tokens": 9}], "run")


def test_tick_labels_show_the_digits_the_step_needs() -> None:
    ticks = nice_ticks(1.1, 1.6)
    assert ticks == [1.1, 1.2, 1.3, 1.4, 1.5, 1.6]
    assert [tick_label(t, ticks[1] - ticks[0]) for t in ticks] == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]
    assert tick_label(0.0, 0.5) == "0.0" and tick_label(-0.0, 1.0) == "0" and tick_label(-0.25, 0.05) == "-0.25"
    assert tick_label(0.0, 2e-6) == "0" and tick_label(8e-6, 2e-6) == "8e-06"
    assert nice_ticks(1, 2, integer=True) == [1, 2, 3] and nice_ticks(0, 23, integer=True) == [0, 5, 10, 15, 20, 25]


def _is_round(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5, 10))


def _clamp(value: float) -> float:
    return min(max(value, -LIMIT), LIMIT)


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False),
       st.booleans())
def test_ticks_are_round_few_and_cover_the_range(a: float, b: float, integer: bool) -> None:
    low, high = _clamp(min(a, b)), _clamp(max(a, b))  # beyond +-LIMIT nothing is drawn
    ticks = nice_ticks(a, b, integer=integer)
    assert 3 <= len(ticks) <= 10
    step = ticks[1] - ticks[0]
    assert step > 0 and _is_round(step) and (step >= 1 or not integer)
    assert all(math.isclose(later - earlier, step, rel_tol=1e-6) for earlier, later in itertools.pairwise(ticks))
    assert all(math.isclose(t / step, round(t / step), abs_tol=1e-6) for t in ticks)  # multiples of the step
    slack = step * 1e-6
    assert ticks[0] <= low + slack and ticks[-1] >= high - slack  # cover the range
    padded = not (high - low > max(abs(low), abs(high)) * 1e-9 and high - low > 1 / LIMIT)  # one value
    if not padded and not (integer and len(ticks) == 3):
        assert ticks[0] > low - step - slack and ticks[-1] < high + step + slack  # no empty step outside
    json.dumps(ticks, allow_nan=False)


@pytest.mark.parametrize(("low", "high"), [(0.0, 5e-324), (-1.7e308, 1.7e308), (1e308, 1e308), (-1e-310, 1e-310)])
def test_ticks_of_extreme_ranges_are_still_ticks(low: float, high: float) -> None:
    for integer in (False, True):
        ticks = nice_ticks(low, high, integer=integer)
        assert 3 <= len(ticks) <= 10 and all(math.isfinite(t) for t in ticks)
    svg = line_chart([("x", [(0.0, low), (1.0, high), (2.0, 0.5)])], "x", "x")
    assert len(list(ET.fromstring(svg).iter(f"{SVG}circle"))) == 3 - sum(abs(v) > LIMIT for v in (low, high))
