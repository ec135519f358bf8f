"""Charts drawn on the server as SVG: no JavaScript, no network at view time.

``line_chart`` takes named series of ``(x label, y)`` points and returns an ``SvgChart``
whose ``svg`` is markup built only from numbers and escaped text (the page inserts it as
is). Points carry ``data-x`` / ``data-y`` and a ``<title>`` so a reader (or a test) can
check what is drawn.

>>> chart = line_chart({"accuracy": [("1.0.0", 0.81), ("1.1.0", 0.84)]}, marked={"1.1.0"})
>>> chart.points
2
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape as _escape

__all__ = ["SvgChart", "line_chart"]

# Colour-blind-safe (Okabe-Ito) colours, one per series in turn.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 48
MAX_LABELS = 12  # x labels written under the axis at most (every point keeps its title)


def escape(text: str) -> str:
    """Text for the SVG: escaped, control characters (not allowed in XML) shown as '?'."""
    return _escape("".join(c if c >= " " or c in "\t" else "?" for c in text))


@dataclass(frozen=True)
class SvgChart:
    svg: str
    points: int
    series: tuple[str, ...]


def _fmt(value: float) -> str:
    if abs(value) < 1e-12:
        return "0"
    if 0.001 <= abs(value) < 100_000:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _nice_range(low: float, high: float, count: int = 5) -> tuple[float, float, float]:
    """Axis bounds and a step of 1, 2 or 5 times a power of ten around ``low..high`` (a
    reader reads 0.80, 0.85, 0.90, not 0.8028, 0.8289)."""
    plain = (low, high, (high - low) / max(1, count - 1))
    try:
        raw = (high - low) / max(1, count - 1)
        power = 10.0 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
        nice = (float(math.floor(low / step) * step), float(math.ceil(high / step) * step),
                step)
    except (OverflowError, ValueError, StopIteration):  # spans near the float limits
        return plain
    return nice if all(math.isfinite(v) for v in nice) and nice[2] > 0 else plain


def line_chart(series: Mapping[str, Sequence[tuple[str, float | None]]], *,
               marked: Iterable[str] = (), marked_label: str = "production",
               y_label: str = "", title: str = "") -> SvgChart:
    """One line per series over shared x labels (in first-seen order); ``None`` values are
    gaps. Labels in ``marked`` get a dashed vertical rule (the production holder)."""
    labels: list[str] = []
    seen: set[str] = set()
    for points in series.values():
        for label, _ in points:
            if label not in seen:
                seen.add(label)
                labels.append(label)
    values = [float(y) for points in series.values() for _, y in points
              if y is not None and math.isfinite(float(y))]
    # The legend takes rows of four under the axis labels: the picture grows, the plot not.
    legend_rows = max(1, math.ceil(len(series) / 4))
    width, height = WIDTH, HEIGHT + 14 * (legend_rows - 1)
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {width} {height}" width="100%" '
             f'aria-label="{escape(title or y_label or "chart")}">']
    if not values:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     'class="empty">nothing recorded yet</text></svg>')
        return SvgChart("".join(parts), 0, tuple(series))
    low, high = min(values), max(values)
    if high == low:
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    if min(values) >= 0:  # counts and latencies never go below zero on the axis
        low = max(0.0, low)
    low, high, step = _nice_range(low, high)

    def x_of(index: int) -> float:
        return LEFT + (plot_w * (index + 0.5) / len(labels))

    def y_of(value: float) -> float:
        # halves first: a span from -1.7e308 to 1.7e308 is no float, its half is
        share = (value / 2 - low / 2) / (high / 2 - low / 2)
        return TOP + plot_h * (1 - share)

    index_of = {label: i for i, label in enumerate(labels)}
    try:
        ticks = [low + i * step for i in range(min(20, round((high - low) / step)) + 1)]
    except (OverflowError, ValueError, ZeroDivisionError):  # a span past the float range
        ticks = [low, high]
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'class="tick">{escape(_fmt(tick))}</text>')
    # At most one label per 90 px of axis; the others are in each point's title.
    room = max(2, min(MAX_LABELS, plot_w // 90))
    every = max(1, math.ceil(len(labels) / room))
    for i, label in enumerate(labels):
        if i % every == 0:
            short = label if len(label) <= 14 else label[:13] + "…"
            parts.append(f'<text x="{x_of(i):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle" class="tick">{escape(short)}</text>')
    for label in marked:
        if label in index_of:
            x = x_of(index_of[label])
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                         'class="marked"/>')
            parts.append(f'<text x="{x + 4:.1f}" y="{TOP + 12}" class="marked-label">'
                         f'{escape(marked_label)}</text>')
    count = 0
    for n, (name, data) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        path: list[str] = []
        for label, value in data:
            if value is None or not math.isfinite(float(value)):
                path.append("")  # a gap: the line breaks here
                continue
            x, y = x_of(index_of[label]), y_of(float(value))
            path.append(f"{'M' if not path or not path[-1] else 'L'}{x:.1f},{y:.1f}")
        drawn = " ".join(p for p in path if p)
        if drawn:
            parts.append(f'<path d="{drawn}" fill="none" stroke="{colour}" '
                         'stroke-width="2"/>')
        for label, value in data:
            if value is None or not math.isfinite(float(value)):
                continue
            x, y = x_of(index_of[label]), y_of(float(value))
            count += 1
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                         f'fill="{colour}" data-series="{escape(name)}" '
                         f'data-x="{escape(label)}" data-y="{float(value)!r}">'
                         f'<title>{escape(name)} {escape(label)}: {escape(_fmt(float(value)))}'
                         '</title></circle>')
    for n, name in enumerate(series):
        x = LEFT + 8 + (n % 4) * 170
        y = HEIGHT - 12 + 14 * (n // 4)
        parts.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" '
                     f'fill="{COLOURS[n % len(COLOURS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="{y + 1}" class="legend">'
                     f'{escape(name if len(name) <= 22 else name[:21] + "…")}</text>')
    if y_label:
        parts.append(f'<text x="12" y="{TOP + plot_h / 2}" class="tick" '
                     f'transform="rotate(-90 12 {TOP + plot_h / 2})" text-anchor="middle">'
                     f'{escape(y_label)}</text>')
    parts.append("</svg>")
    return SvgChart("".join(parts), count, tuple(series))
