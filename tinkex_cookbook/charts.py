"""Line charts as inline SVG: axes, round tick values and units, with no plotting library.

A chart is a page's own markup, so a run's report and ``runs compare`` open anywhere (a
browser from a local folder, an S3 console) with nothing to load. The run report draws one
small chart per metric (``pipeline/report.py``); ``runs compare`` / ``runs plot`` draw one
metric with a line per run (``runs.py``). Points that are not finite are left out, and a
single point or a constant series still gets a readable range.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

Point = tuple[float, float]
Series = tuple[str, Sequence[Point]]
"""A chart line: its label and ``(step, value)`` points."""

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MAX_TICKS = 8
"""At most this many ticks on an axis (``nice_ticks`` gives 3 to 10 in every case)."""
LIMIT = 1e300
"""Values beyond +-LIMIT are as good as infinite: not drawn (and ticks stop there), so no range overflows."""
DOTS_UP_TO = 60
"""A line with this many points or fewer shows each point as a dot; a longer one only its last."""

UNITS = {
    "nats/token": ("mean_nll", "nll", "example_nll", "teacher_kl", "kl_sample_train", "entropy"),
    "nats/pair": ("dpo_loss",),
    "nats": ("margin",),
    "reward": ("reward_mean", "reward_std", "reward", "chosen_reward", "rejected_reward"),
    "fraction": ("accuracy", "correct", "format", "pass@1"),
    "L2 norm": ("grad_norm",),
    "s": ("step_seconds", "sample_seconds"),
    "tokens/s": ("tokens_per_second",),
    "tokens": ("num_tokens", "tokens_seen", "tokens", "ac_tokens_per_turn"),
}
"""Each metric's unit, by its name with any ``<task>/`` and ``train_``/``test_``/``eval_`` prefix removed."""
_UNIT_OF = {name: unit for unit, names in UNITS.items() for name in names}


def base_name(metric: str) -> str:
    """``metric`` without its ``<task>/`` or ``env/`` part and its ``train_``/``test_``/``eval_`` prefix."""
    name = metric.rsplit("/", 1)[-1]
    for prefix in ("train_", "test_", "eval_"):
        name = name.removeprefix(prefix)
    return name


def unit_of(metric: str) -> str:
    """The unit a metric is measured in (``nats/token`` for an NLL), or ``""`` when it has none or is unknown."""
    return _UNIT_OF.get(base_name(metric), _UNIT_OF.get(metric.rsplit("/", 1)[-1], ""))


def axis_label(metric: str) -> str:
    unit = unit_of(metric)
    return f"{metric} ({unit})" if unit else metric


# --- ticks --------------------------------------------------------------------------------------------


def _steps_from(smallest: float) -> tuple[float, ...]:
    """Round step sizes (1, 2, 5 x 10^k), increasing over three decades from the power of ten not above
    ``smallest``."""
    power = 10.0 ** math.floor(math.log10(smallest))
    return tuple(m * power * 10.0**k for k in range(4) for m in (1, 2, 5))


def _padded(low: float, high: float) -> tuple[float, float]:
    """A range wide enough to divide: a single value (or one too close to its neighbour to tell apart at
    float precision) gets a tenth of its size, or 1 around zero, on either side."""
    if high - low > max(abs(low), abs(high)) * 1e-9 and high - low > 1 / LIMIT:
        return low, high
    pad = max(abs(low) * 0.1, 1 / LIMIT) if low else 1.0
    return low - pad, high + pad


def nice_ticks(low: float, high: float, integer: bool = False) -> list[float]:
    """Tick values covering ``[low, high]`` at a round step (1, 2 or 5 x 10^k): the first at or below
    ``low``, the last at or above ``high``, 3 to 10 of them. ``integer`` keeps the step at 1 or more
    (optimizer steps are whole numbers)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks need a finite range, got {low!r} to {high!r}")
    low, high = (min(max(value, -LIMIT), LIMIT) for value in (min(low, high), max(low, high)))
    low, high = _padded(low, high)
    first = last = 0
    step = 1.0
    for step in _steps_from(max((high - low) / 10, 1.0) if integer else (high - low) / 10):
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        if last - first + 1 <= MAX_TICKS:
            break
    if last - first < 2:  # only when ``integer`` holds the step at 1 over a short range
        last = first + 2
    digits = max(0, -math.floor(math.log10(step))) + 1
    return [round(i * step, digits) + 0.0 for i in range(first, last + 1)]  # + 0.0: no "-0"


def tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs (``0.25``, ``1500``), very large or very
    small numbers in exponent form."""
    step_power = math.floor(math.log10(step) + 1e-9)  # 0.0999...98, a difference of two ticks, is 0.1
    magnitude = max(abs(value), step)
    if 1e-4 <= step and magnitude < 1e6:
        return f"{value + 0.0:.{max(0, -step_power)}f}"  # + 0.0: no "-0.0"
    if value == 0:
        return "0"
    digits = max(1, math.floor(math.log10(magnitude)) - step_power + 1)
    return f"{value:.{digits}g}"


# --- drawing ------------------------------------------------------------------------------------------


def finite_points(points: Sequence[Point]) -> list[Point]:
    """The points a chart can draw: both coordinates finite and within +-``LIMIT``."""
    return [(x, y) for x, y in points if abs(x) <= LIMIT and abs(y) <= LIMIT]


class _Frame:
    """The plot area inside the SVG, and where a data point lands in it."""

    LEFT, RIGHT, TOP, BOTTOM = 64, 14, 30, 40

    def __init__(self, width: int, height: int, x_ticks: list[float], y_ticks: list[float]) -> None:
        self.x0, self.x1 = self.LEFT, width - self.RIGHT
        self.y0, self.y1 = self.TOP, height - self.BOTTOM  # y0 is the top edge
        self.x_ticks, self.y_ticks = x_ticks, y_ticks

    def x(self, value: float) -> float:
        low, high = self.x_ticks[0], self.x_ticks[-1]
        return self.x0 + (value - low) / (high - low) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return self.y1 - (value - low) / (high - low) * (self.y1 - self.y0)


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" text-anchor="{anchor}"{extra}>'
            f"{html.escape(text)}</text>")


def _axes(frame: _Frame, x_label: str, y_label: str) -> list[str]:
    """Grid lines and labels at every tick, the two axis lines, and what each axis measures."""
    x_step = frame.x_ticks[1] - frame.x_ticks[0]
    y_step = frame.y_ticks[1] - frame.y_ticks[0]
    parts = []
    for tick in frame.x_ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{frame.y0}" x2="{x:.1f}" y2="{frame.y1 + 4}" stroke="#eee"/>')
        parts.append(_text(x, frame.y1 + 16, tick_label(tick, x_step)))
    for tick in frame.y_ticks:
        y = frame.y(tick)
        parts.append(f'<line x1="{frame.x0 - 4}" y1="{y:.1f}" x2="{frame.x1}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(_text(frame.x0 - 6, y + 4, tick_label(tick, y_step), anchor="end"))
    parts.append(f'<path fill="none" stroke="#666" d="M{frame.x0},{frame.y0} V{frame.y1} H{frame.x1}"/>')
    middle_y = (frame.y0 + frame.y1) / 2
    parts.append(_text((frame.x0 + frame.x1) / 2, frame.y1 + 32, x_label))
    parts.append(_text(14, middle_y, y_label, extra=f' transform="rotate(-90 14 {middle_y:.1f})"'))
    return parts


def _line(frame: _Frame, label: str, points: list[Point], color: str) -> str:
    coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in points)
    line = f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>' if len(points) > 1 else ""
    dots = "".join(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>'
                   for x, y in (points if len(points) <= DOTS_UP_TO else points[-1:]))
    return f"<g><title>{html.escape(label)}</title>{line}{dots}</g>"


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _legend(lines: Sequence[tuple[int, str, list[Point]]], top: float) -> list[str]:
    return [
        f'<rect x="{_Frame.LEFT}" y="{top + 16 * row - 8:.1f}" width="10" height="10" fill="{_color(index)}"/>'
        + _text(_Frame.LEFT + 14, top + 16 * row + 1, label, anchor="start")
        for row, (index, label, _points) in enumerate(lines)
    ]


def line_chart(
    series: Sequence[Series], title: str, y_label: str, x_label: str = "step",
    width: int = 380, height: int = 240, legend: bool | None = None,
) -> str:
    """An SVG of ``series`` on shared axes, with ``title`` above and the legend below (by default only
    when there is more than one line). Non-finite points are dropped; with none left, a note says so.
    The n-th series has the n-th colour of ``PALETTE`` whether or not the ones before it are drawn."""
    drawable = [(index, label, finite_points(points)) for index, (label, points) in enumerate(series)]
    lines = [(index, label, points) for index, label, points in drawable if points]
    show_legend = len(lines) > 1 if legend is None else legend
    total = height + (16 * len(lines) + 4 if show_legend else 0)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
            f'viewBox="0 0 {width} {total}" font-family="sans-serif">')
    parts = [_text(width / 2, 16, title, extra=' font-weight="bold"')]
    if not lines:
        parts.append(_text(width / 2, height / 2, "no finite values recorded"))
        return head + "".join(parts) + "</svg>"
    xs = [x for _, _, points in lines for x, _ in points]
    ys = [y for _, _, points in lines for _, y in points]
    frame = _Frame(width, height, nice_ticks(min(xs), max(xs), integer=True), nice_ticks(min(ys), max(ys)))
    parts += _axes(frame, x_label, y_label)
    parts += [_line(frame, label, points, _color(index)) for index, label, points in lines]
    if show_legend:
        parts += _legend(lines, height + 8)
    return head + "".join(parts) + "</svg>"
