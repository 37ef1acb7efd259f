"""Small inline SVG figures for the self-contained review report (no script, no network).

Each function returns one ``<svg>`` element as text, with a ``<title>`` for screen readers and a
``data-figure`` attribute the browser test looks for. Text is escaped here.
"""

from __future__ import annotations

import math
from html import escape

#: Colours of the four vote choices (model A, tie, both bad, model B) and of marks.
COLOURS = {"a": "#4c78a8", "tie": "#bab0ac", "both_bad": "#e45756", "b": "#f58518",
           "mark": "#222222", "pass": "#2e7d32", "fail": "#c62828", "none": "#9e9e9e",
           "grid": "#dddddd"}

_FONT = "font-family:system-ui,sans-serif;font-size:12px"


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _scale(lo: float, hi: float, x0: float, x1: float):
    span = (hi - lo) or 1.0
    return lambda v: x0 + (min(max(v, lo), hi) - lo) / span * (x1 - x0)


def forest(name: str, title: str, rows: list[tuple[str, float, float, float]], *,
           x_range: tuple[float, float], reference: float | None = None,
           x_label: str = "", width: int = 720) -> str:
    """A forest plot: one row per ``(label, estimate, low, high)``, a point and its interval,
    and a dashed vertical line at ``reference``. Rows without a finite estimate say "no data"."""
    label_w, row_h, top, bottom = 260, 26, 28, 34
    height = top + row_h * max(1, len(rows)) + bottom
    x = _scale(*x_range, label_w + 10, width - 20)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{escape(name)}" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{_FONT}">',
             f"<title>{escape(title)}</title>",
             f'<text x="4" y="16" font-weight="600">{escape(title)}</text>']
    for tick in _ticks(*x_range):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{height - bottom}" '
                     f'stroke="{COLOURS["grid"]}"/>')
        parts.append(f'<text x="{tx:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
                     f'{tick:g}</text>')
    if reference is not None:
        rx = x(reference)
        parts.append(f'<line x1="{rx:.1f}" y1="{top - 4}" x2="{rx:.1f}" y2="{height - bottom}" '
                     f'stroke="{COLOURS["mark"]}" stroke-dasharray="4 3"/>')
    for i, (label, est, lo, hi) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        parts.append(f'<text x="4" y="{cy + 4:.1f}">{escape(_short(label, 40))}</text>')
        if _finite(lo, hi):
            parts.append(f'<line x1="{x(lo):.1f}" y1="{cy:.1f}" x2="{x(hi):.1f}" y2="{cy:.1f}" '
                         f'stroke="{COLOURS["a"]}" stroke-width="3"/>')
        if _finite(est):
            parts.append(f'<circle cx="{x(est):.1f}" cy="{cy:.1f}" r="5" fill="{COLOURS["mark"]}"/>')
        else:
            parts.append(f'<text x="{label_w + 14}" y="{cy + 4:.1f}" fill="{COLOURS["none"]}">'
                         f'no data</text>')
    parts.append(f'<text x="{(label_w + width) / 2:.0f}" y="{height - 4}" text-anchor="middle">'
                 f'{escape(x_label)}</text></svg>')
    return "".join(parts)


def stacked(name: str, title: str, rows: list[tuple[str, dict[str, int]]], *,
            legend: dict[str, str], width: int = 720) -> str:
    """Horizontal stacked bars: one row per ``(label, {segment: count})``, segments in the order
    of ``legend`` (segment -> legend text), each bar scaled to its own total."""
    label_w, row_h, top = 260, 26, 44
    height = top + row_h * max(1, len(rows)) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{escape(name)}" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{_FONT}">',
             f"<title>{escape(title)}</title>",
             f'<text x="4" y="16" font-weight="600">{escape(title)}</text>']
    lx = 4
    for key, text in legend.items():
        parts.append(f'<rect x="{lx}" y="24" width="12" height="12" fill="{COLOURS[key]}"/>'
                     f'<text x="{lx + 16}" y="34">{escape(text)}</text>')
        lx += 24 + 7 * len(text)
    for i, (label, counts) in enumerate(rows):
        y = top + row_h * i + 4
        parts.append(f'<text x="4" y="{y + 13}">{escape(_short(label, 40))}</text>')
        total = sum(counts.values()) or 1
        x0 = float(label_w)
        for key in legend:
            w = counts.get(key, 0) / total * (width - label_w - 20)
            if w > 0:
                parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="18" '
                             f'fill="{COLOURS[key]}"><title>{escape(legend[key])}: '
                             f'{counts.get(key, 0)}</title></rect>')
                if w > 18:
                    parts.append(f'<text x="{x0 + w / 2:.1f}" y="{y + 13}" text-anchor="middle" '
                                 f'fill="#fff">{counts.get(key, 0)}</text>')
                x0 += w
    parts.append("</svg>")
    return "".join(parts)


def strip(name: str, estimate: float, low: float, high: float, threshold: float,
          passed: bool | None, *, width: int = 220) -> str:
    """A one-line figure of one criterion: the evidence and its interval against the threshold
    (red dashed line), the point coloured by pass or fail."""
    values = [v for v in (estimate, low, high, threshold) if _finite(v)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.15 or abs(hi) * 0.2 or 1.0
    x = _scale(lo - pad, hi + pad, 8, width - 8)
    colour = COLOURS["none" if passed is None else ("pass" if passed else "fail")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{escape(name)}" role="img" '
             f'width="{width}" height="28" viewBox="0 0 {width} 28" style="{_FONT}">',
             f"<title>{escape(name)}</title>",
             f'<line x1="8" y1="14" x2="{width - 8}" y2="14" stroke="{COLOURS["grid"]}"/>',
             f'<line x1="{x(threshold):.1f}" y1="2" x2="{x(threshold):.1f}" y2="26" '
             f'stroke="{COLOURS["fail"]}" stroke-dasharray="3 2"/>']
    if _finite(low, high):
        parts.append(f'<line x1="{x(low):.1f}" y1="14" x2="{x(high):.1f}" y2="14" '
                     f'stroke="{colour}" stroke-width="3"/>')
    if _finite(estimate):
        parts.append(f'<circle cx="{x(estimate):.1f}" cy="14" r="5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / 4))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
