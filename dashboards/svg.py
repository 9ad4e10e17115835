"""A tiny inline-SVG chart renderer for the local dashboard: horizontal bars, a daily line, budget burn.

Hand-written rather than a vendored chart library: the page stays one self-contained file that works offline and
renders without JavaScript. Geometry may use floats (it is only pixels); every number a reader sees is formatted
by the caller from ``Decimal`` and passed in as text, so the labels are exact to the cent.

Each chart is ``<svg data-chart="ID" data-points="N">`` and each data point is one element with a class the tests
count: ``rect.bar`` (bars), ``circle.point`` (line points), ``rect.spend`` / ``rect.forecast`` / ``line.budget``
(budget burn).

Responsive by construction: a chart is drawn in a ``viewBox`` of :data:`WIDTH` user units and the page scales it
to its card (``width: 100%; height: auto``), text included, so a layout that fits the viewBox fits at any width.
SVG text does not wrap, so every text is measured here (:func:`text_width`, a deliberately generous estimate:
wide sans-serif fonts such as DejaVu Sans fit within it) and laid out to fit: a label takes the chart's whole
width on its own line above its bar and is shortened with "…" only past that, with the full text in a ``<title>``
tooltip; budget-burn figures wrap onto as many lines as they need; bars leave room for their value text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

PALETTE = ("#2f6fb3", "#e07b39", "#3a9e6e", "#b8476a", "#7a5fb0", "#c9a227", "#4bb3c4", "#8c6d52")
WIDTH = 480  # viewBox width; the page scales the chart to its card
PAD = 8
FONT = 13  # labels and values (user units, so they scale with the chart)
SMALL = 12  # budget-burn figures
AXIS = 11  # axis labels
BAR_HEIGHT = 16
ROW_GAP = 10

_WIDE = frozenset("mwMW%@<>=+~…—")
_NARROW = frozenset("ijlft.,:;'!|·()[] -/I")


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


def text_width(text: str, size: float) -> float:
    """An upper estimate of ``text``'s advance width at ``size`` in a common sans-serif font."""
    return size * sum(1.0 if c in _WIDE else 0.4 if c in _NARROW else 0.8 if c.isupper() else 0.66 for c in text)


def shorten(text: str, width: float, size: float) -> str:
    """``text`` if it fits in ``width``, else its longest prefix that fits followed by "…"."""
    if text_width(text, size) <= width:
        return text
    cut = len(text)
    while cut > 0 and text_width(text[:cut] + "…", size) > width:
        cut -= 1
    return text[:cut].rstrip() + "…"


def wrap(text: str, width: float, size: float) -> list[str]:
    """``text`` broken at spaces into lines that fit ``width`` (a word too long for a line is shortened)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(trial, size) <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return [shorten(line, width, size) for line in lines] or [""]


def _text(cls: str, x: float, y: float, text: str, *, width: float, size: int, anchor: str = "start") -> str:
    """One line of text shortened to ``width``; the full text in a ``<title>`` when shortened."""
    shown = shorten(text, width, size)
    tip = f"<title>{escape(text)}</title>" if shown != text else ""
    return (f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
            f"{escape(shown)}{tip}</text>")


def _scale(values: Sequence[Decimal]) -> float:
    top = max((float(v) for v in values), default=0.0)
    return top if top > 0 else 1.0


def _svg(chart_id: str, title: str, points: int, height: float, body: str) -> str:
    height = round(height)
    return (f'<svg class="chart" data-chart="{escape(chart_id)}" data-points="{points}" role="img" '
            f'aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
            f'preserveAspectRatio="xMinYMin meet" font-size="{FONT}">'
            f"<title>{escape(title)}</title>{body}</svg>")


def _empty(chart_id: str, title: str) -> str:
    body = _text("empty", PAD + 4, 28, "No data in this period", width=WIDTH - 2 * PAD, size=FONT)
    return _svg(chart_id, title, 0, 44, body)


def bar_chart(*, chart_id: str, title: str, bars: Sequence[Bar]) -> str:
    """Horizontal bars, largest first as given; one ``rect.bar`` per bar, its label on the line above it."""
    if not bars:
        return _empty(chart_id, title)
    top = _scale([b.value for b in bars])
    inner = WIDTH - 2 * PAD
    value_room = min(max(text_width(b.text, FONT) for b in bars) + 8, inner / 2)
    span = inner - value_room
    row = FONT + 5 + BAR_HEIGHT + ROW_GAP
    parts = []
    for i, bar in enumerate(bars):
        y = PAD + i * row
        bar_y = y + FONT + 5
        width = max(1.0, span * max(float(bar.value), 0.0) / top)
        parts.append(
            '<g class="row">' + _text("label", PAD, y + FONT - 2, bar.label, width=inner, size=FONT)
            + f'<rect class="bar" x="{PAD}" y="{bar_y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(bar.label)}: {escape(bar.text)}</title></rect>'
            + _text("value", PAD + width + 6, bar_y + BAR_HEIGHT / 2 + FONT * 0.35, bar.text,
                    width=inner - width - 6, size=FONT) + "</g>")
    return _svg(chart_id, title, len(bars), PAD + len(bars) * row, "".join(parts))


def line_chart(*, chart_id: str, title: str, points: Sequence[Point], axis_text: str) -> str:
    """One line through the points (in order), one ``circle.point`` per point; ``axis_text`` labels the top."""
    if not points:
        return _empty(chart_id, title)
    height, right, top_pad, bottom_pad = 220, 12, 20, 30
    axis_shown = shorten(axis_text, WIDTH / 3, AXIS)
    left = max(40.0, PAD + text_width(axis_shown, AXIS) + 8)
    top = _scale([p.value for p in points])
    step = (WIDTH - left - right) / max(len(points) - 1, 1)
    xy = [(left + i * step, top_pad + (height - top_pad - bottom_pad) * (1 - max(float(p.value), 0.0) / top))
          for i, p in enumerate(points)]
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base = height - bottom_pad
    parts = [f'<line class="axis" x1="{left:.1f}" y1="{base}" x2="{WIDTH - right}" y2="{base}" stroke="#999"/>',
             _text("axis-label", left - 6, top_pad + 4, axis_text, width=WIDTH / 3, size=AXIS, anchor="end"),
             _text("axis-label", left - 6, base + 4, "0", width=left - PAD, size=AXIS, anchor="end"),
             f'<path class="series" d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>']
    for (x, y), p in zip(xy, points, strict=True):
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
                     f"<title>{escape(p.label)}: {escape(p.text)}</title></circle>")
    last = len(points) - 1
    room = (WIDTH - left - right) / 3  # three labels share the axis
    for i in sorted({0, last // 2, last}):  # first, middle, last day; the ends anchored inside the chart
        anchor = "start" if i == 0 else "end" if i == last else "middle"
        parts.append(_text("x-label", xy[i][0], base + 16, points[i].label, width=room, size=AXIS, anchor=anchor))
    return _svg(chart_id, title, len(points), height, "".join(parts))


def burn_chart(*, chart_id: str, title: str, rows: Sequence[Burn]) -> str:
    """Per team: the month-end forecast (pale), the spend so far (solid) and the budget (a dark tick).

    Each row is drawn against its own largest figure (budget, forecast or spend): a burn chart answers "how far
    through its budget is this team", and one team's large budget must not flatten everyone else's bars. The
    team's name is on the line above its bar and its figures on the lines below, wrapped to the chart's width.
    """
    if not rows:
        return _empty(chart_id, title)
    inner = WIDTH - 2 * PAD
    span = inner - 4  # leave room for the budget tick's stroke at 100 %
    parts = []
    y = float(PAD)
    for row in rows:
        bar_y = y + FONT + 7
        top = _scale([row.spend, row.forecast, row.budget or Decimal(0)])
        over = row.budget is not None and row.forecast > row.budget
        colour = "#c0392b" if over else PALETTE[2]
        forecast_w = max(1.0, span * max(float(row.forecast), 0.0) / top)
        spend_w = max(1.0, span * max(float(row.spend), 0.0) / top)
        parts.append(
            '<g class="row">' + _text("label", PAD, y + FONT - 2, row.label, width=inner, size=FONT)
            + f'<rect class="forecast" x="{PAD}" y="{bar_y:.1f}" width="{forecast_w:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour}" fill-opacity="0.3"/>'
            f'<rect class="spend" x="{PAD}" y="{bar_y:.1f}" width="{spend_w:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour}"><title>{escape(row.label)}: {escape(row.text)}</title></rect>')
        if row.budget is not None:
            x = PAD + span * float(row.budget) / top
            parts.append(f'<line class="budget" x1="{x:.1f}" y1="{bar_y - 3:.1f}" x2="{x:.1f}" '
                         f'y2="{bar_y + BAR_HEIGHT + 3:.1f}" stroke="#222" stroke-width="3"/>')
        lines = wrap(row.text, inner, SMALL)
        first = bar_y + BAR_HEIGHT + 4 + SMALL
        spans = "".join(f'<tspan x="{PAD}" y="{first + k * (SMALL + 3):.1f}">{escape(line)}</tspan>'
                        for k, line in enumerate(lines))
        tip = "" if " ".join(lines) == " ".join(row.text.split()) else f"<title>{escape(row.text)}</title>"
        parts.append(f'<text class="value" font-size="{SMALL}">{spans}{tip}</text></g>')
        y = first + (len(lines) - 1) * (SMALL + 3) + 4 + ROW_GAP
    return _svg(chart_id, title, len(rows), y, "".join(parts))
