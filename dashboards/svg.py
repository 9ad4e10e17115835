"""A tiny inline-SVG chart renderer for the local dashboard: horizontal bars, a daily line, budget burn.

Hand-written rather than a vendored chart library: the page stays one self-contained file that works offline and
renders without JavaScript. Geometry may use floats (it is only pixels); every number a reader sees is formatted
by the caller from ``Decimal`` and passed in as text, so the labels are exact to the cent.

Each chart is ``<svg data-chart="ID" data-points="N">`` and each data point is one element with a class the tests
count: ``rect.bar`` (bars), ``circle.point`` (line points), ``rect.spend`` / ``rect.forecast`` / ``line.budget``
(budget burn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

PALETTE = ("#2f6fb3", "#e07b39", "#3a9e6e", "#b8476a", "#7a5fb0", "#c9a227", "#4bb3c4", "#8c6d52")
WIDTH = 720
BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 260
VALUE_WIDTH = 110


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    text: str  # the value as the reader sees it (formatted from Decimal by the caller)


@dataclass(frozen=True)
class Point:
    label: str  # x-axis label (a day)
    value: Decimal
    text: str


@dataclass(frozen=True)
class Burn:
    label: str
    spend: Decimal
    forecast: Decimal
    budget: Decimal | None
    text: str  # e.g. "$3.10 spent, $4.20 forecast of $5.00"


def _scale(values: Sequence[Decimal]) -> float:
    top = max((float(v) for v in values), default=0.0)
    return top if top > 0 else 1.0


def _svg(chart_id: str, title: str, points: int, height: int, body: str) -> str:
    return (f'<svg class="chart" data-chart="{escape(chart_id)}" data-points="{points}" role="img" '
            f'aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
            f"<title>{escape(title)}</title>{body}</svg>")


def _empty(chart_id: str, title: str) -> str:
    body = '<text class="empty" x="12" y="28">No data in this period</text>'
    return _svg(chart_id, title, 0, 44, body)


def bar_chart(*, chart_id: str, title: str, bars: Sequence[Bar]) -> str:
    """Horizontal bars, largest first as given; one ``rect.bar`` per bar."""
    if not bars:
        return _empty(chart_id, title)
    top = _scale([b.value for b in bars])
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    parts = []
    for i, bar in enumerate(bars):
        y = 6 + i * (BAR_HEIGHT + BAR_GAP)
        width = max(1.0, span * max(float(bar.value), 0.0) / top)
        parts.append(
            f'<g class="row"><text class="label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(_clip(bar.label))}</text>"
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(bar.label)}: {escape(bar.text)}</title></rect>'
            f'<text class="value" x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 15}">{escape(bar.text)}</text></g>')
    height = 12 + len(bars) * (BAR_HEIGHT + BAR_GAP)
    return _svg(chart_id, title, len(bars), height, "".join(parts))


def line_chart(*, chart_id: str, title: str, points: Sequence[Point], axis_text: str) -> str:
    """One line through the points (in order), one ``circle.point`` per point; ``axis_text`` labels the top."""
    if not points:
        return _empty(chart_id, title)
    height, left, right, top_pad, bottom_pad = 240, 56, 16, 24, 36
    top = _scale([p.value for p in points])
    step = (WIDTH - left - right) / max(len(points) - 1, 1)
    xy = [(left + i * step, top_pad + (height - top_pad - bottom_pad) * (1 - max(float(p.value), 0.0) / top))
          for i, p in enumerate(points)]
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base = height - bottom_pad
    parts = [f'<line class="axis" x1="{left}" y1="{base}" x2="{WIDTH - right}" y2="{base}" stroke="#999"/>',
             f'<text class="axis-label" x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{escape(axis_text)}</text>',
             f'<text class="axis-label" x="{left - 6}" y="{base + 4}" text-anchor="end">0</text>',
             f'<path class="series" d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>']
    for (x, y), p in zip(xy, points, strict=True):
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
                     f"<title>{escape(p.label)}: {escape(p.text)}</title></circle>")
    last = len(points) - 1
    for i in sorted({0, last // 2, last}):  # first, middle, last day; the ends anchored inside the chart
        anchor = "start" if i == 0 else "end" if i == last else "middle"
        parts.append(f'<text class="x-label" x="{xy[i][0]:.1f}" y="{base + 18}" text-anchor="{anchor}">'
                     f"{escape(points[i].label)}</text>")
    return _svg(chart_id, title, len(points), height, "".join(parts))


def burn_chart(*, chart_id: str, title: str, rows: Sequence[Burn]) -> str:
    """Per team: the month-end forecast (pale), the spend so far (solid) and the budget (a dark tick).

    Each row is drawn against its own largest figure (budget, forecast or spend): a burn chart answers "how far
    through its budget is this team", and one team's large budget must not flatten everyone else's bars.
    """
    if not rows:
        return _empty(chart_id, title)
    span = WIDTH - LABEL_WIDTH - 300  # room on the right for "spent · forecast · budget"
    parts = []
    for i, row in enumerate(rows):
        y = 6 + i * (BAR_HEIGHT + BAR_GAP)
        top = _scale([row.spend, row.forecast, row.budget or Decimal(0)])
        over = row.budget is not None and row.forecast > row.budget
        colour = "#c0392b" if over else PALETTE[2]
        forecast_w = max(1.0, span * max(float(row.forecast), 0.0) / top)
        spend_w = max(1.0, span * max(float(row.spend), 0.0) / top)
        parts.append(
            f'<g class="row"><text class="label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(_clip(row.label))}</text>"
            f'<rect class="forecast" x="{LABEL_WIDTH}" y="{y}" width="{forecast_w:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour}" fill-opacity="0.3"/>'
            f'<rect class="spend" x="{LABEL_WIDTH}" y="{y}" width="{spend_w:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour}"><title>{escape(row.label)}: {escape(row.text)}</title></rect>')
        if row.budget is not None:
            x = LABEL_WIDTH + span * float(row.budget) / top
            parts.append(f'<line class="budget" x1="{x:.1f}" y1="{y - 3}" x2="{x:.1f}" y2="{y + BAR_HEIGHT + 3}" '
                         f'stroke="#222" stroke-width="3"/>')
        parts.append(f'<text class="value" x="{LABEL_WIDTH + span + 10}" y="{y + 15}">{escape(row.text)}</text></g>')
    height = 12 + len(rows) * (BAR_HEIGHT + BAR_GAP)
    return _svg(chart_id, title, len(rows), height, "".join(parts))


def _clip(label: str, limit: int = 38) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
