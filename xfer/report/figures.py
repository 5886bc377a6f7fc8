"""The report page's figures as inline SVG: every trial a point beside its setting's mean ± 95% interval and the
published mark, and each setting's training curves with every trial a thin line.

Inline SVG, written here rather than drawn by matplotlib: the page must open from a file with nothing beside it,
stay light for 500 trials (a few hundred bytes a trial), and carry each point's value as a tooltip (``<title>``).
Every text from a result file is escaped; coordinates are rounded to 0.1 px.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from xfer.report.metrics_log import Series
from xfer.report.results import Row

LABEL_W, PANEL_W, GAP, ROW_H, TOP, BOTTOM = 250, 230, 18, 18, 30, 26  # the AP chart's layout, px
CURVE_W, CURVE_H, CURVE_PAD = 210, 96, 4  # one curve panel
CURVE_POINTS = 50  # per trial line: a point every 4 px of a panel 210 px wide
SEEDS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")  # by seed order
MEAN, PUBLISHED = "#1a1a1a", "#d62728"


def _n(x: float) -> str:
    """A coordinate, short."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _domain(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = max((hi - lo) * 0.06, 0.5)
    return lo - pad, hi + pad


def _short(text: str, chars: int = 36) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _row_values(r: Row, m: str) -> list[float]:
    s = r.stats.get(m)
    bounds = [s.low, s.high] if s is not None and s.ci95 is not None else []
    published = r.published_value(m)
    return [t.metrics[m] for t in r.done] + [x for x in bounds if x is not None] + ([published] if published is not None else [])


def ap_chart(rows: Sequence[Row], names: Sequence[str]) -> str:
    """One SVG for rows that measured ``names``: a row per setting with a finished trial, a panel per metric."""
    shown = [r for r in rows if r.n]
    if not shown:
        return ""
    width = LABEL_W + len(names) * (PANEL_W + GAP)
    height = TOP + len(shown) * ROW_H + BOTTOM
    out = [f'<svg class="ap" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="AP per trial">']  # fmt: skip
    for i, r in enumerate(shown):
        y = TOP + i * ROW_H + ROW_H / 2
        if i % 2:
            out.append(f'<rect x="0" y="{_n(y - ROW_H / 2)}" width="{width}" height="{ROW_H}" fill="#f4f6f8"/>')
        out.append(f'<text x="4" y="{_n(y + 4)}" class="lbl"><title>{escape(r.key)}</title>{escape(_short(r.key))}</text>')
    for k, m in enumerate(names):
        x0 = LABEL_W + k * (PANEL_W + GAP)
        lo, hi = _domain([v for r in shown for v in _row_values(r, m)])
        x = lambda v, x0=x0, lo=lo, hi=hi: x0 + (v - lo) / (hi - lo) * PANEL_W  # noqa: E731
        out.append(f'<text x="{_n(x0 + PANEL_W / 2)}" y="16" class="ttl" text-anchor="middle">{escape(m)}</text>')
        bottom = TOP + len(shown) * ROW_H
        for t in nice_ticks(lo, hi):
            out.append(f'<line x1="{_n(x(t))}" x2="{_n(x(t))}" y1="{TOP}" y2="{bottom}" stroke="#ddd"/>'
                       f'<text x="{_n(x(t))}" y="{bottom + 16}" class="tick" text-anchor="middle">{t:g}</text>')  # fmt: skip
        for i, r in enumerate(shown):
            out += _ap_row(r, m, TOP + i * ROW_H + ROW_H / 2, x)
    out.append("</svg>")
    return "".join(out)


def _ap_row(r: Row, m: str, y: float, x) -> list[str]:
    """One setting in one metric's panel: its trials' points (seed colours), mean ± 95% CI, the published mark."""
    out = []
    for j, t in enumerate(r.done):
        v = t.metrics[m]
        if math.isfinite(v):
            dy = (j % 5 - 2) * 1.6  # a little apart, so equal values stay visible
            out.append(f'<circle cx="{_n(x(v))}" cy="{_n(y + dy)}" r="2.6" fill="{SEEDS[j % len(SEEDS)]}" '
                       f'fill-opacity=".75"><title>{escape(r.key)} seed{t.seed}: {m} {v:.2f}</title></circle>')  # fmt: skip
    s = r.stats.get(m)
    if s is not None and math.isfinite(s.mean):
        tip = f"{escape(r.key)}: mean {s.mean:.2f}" + (f", 95% CI [{s.low:.2f}, {s.high:.2f}]" if s.ci95 is not None
                                                          else " (one trial)")  # fmt: skip
        if s.ci95 is not None:
            out.append(f'<line x1="{_n(x(s.low))}" x2="{_n(x(s.high))}" y1="{_n(y)}" y2="{_n(y)}" stroke="{MEAN}" '
                       f'stroke-width="1.6"/>')  # fmt: skip
        out.append(f'<line x1="{_n(x(s.mean))}" x2="{_n(x(s.mean))}" y1="{_n(y - 6)}" y2="{_n(y + 6)}" stroke="{MEAN}" '
                   f'stroke-width="2.4"><title>{tip}</title></line>')  # fmt: skip
    published = r.published_value(m)
    if published is not None and math.isfinite(published):
        px = x(published)
        out.append(f'<path d="M{_n(px)} {_n(y - 5)}l5 5-5 5-5-5z" fill="none" stroke="{PUBLISHED}" stroke-width="1.4">'
                   f'<title>{escape(r.key)}: published {m} {published:.2f}</title></path>')  # fmt: skip
    return out


def _thin(series: Series, points: int = CURVE_POINTS) -> Series:
    """At most ``points`` of a series, evenly spaced, its last point kept."""
    if len(series) <= points:
        return series
    step = (len(series) - 1) / (points - 1)
    return [series[round(k * step)] for k in range(points)]


def curve_panel(title: str, lines: Sequence[tuple[str, Series]], log_y: bool = False) -> str:
    """One quantity of one setting: each trial's series (``lines``: its name and points) as a thin line."""
    lines = [(name, _thin([(i, v) for i, v in s if math.isfinite(v) and (v > 0 or not log_y)])) for name, s in lines]
    lines = [(name, s) for name, s in lines if s]
    w, h, p = CURVE_W, CURVE_H, CURVE_PAD
    out = [f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 14}" '
           f'viewBox="0 0 {w} {h + 14}" role="img" aria-label="{escape(title)}">'
           f'<rect x="0" y="0" width="{w}" height="{h}" fill="none" stroke="#ccc"/>']  # fmt: skip
    if lines:
        its = [i for _, s in lines for i, _ in s]
        f = math.log10 if log_y else (lambda v: v)
        vals = [f(v) for _, s in lines for _, v in s]
        x_hi, y_lo, y_hi = max(max(its), 1), min(min(vals), 0.0) if not log_y else min(vals), max(vals)
        y_hi = y_hi if y_hi > y_lo else y_lo + 1
        for j, (name, s) in enumerate(lines):
            pts = " ".join(f"{_n(p + i / x_hi * (w - 2 * p))},{_n(h - p - (f(v) - y_lo) / (y_hi - y_lo) * (h - 2 * p))}"
                           for i, v in s)  # fmt: skip
            out.append(f'<polyline points="{pts}" fill="none" stroke="{SEEDS[j % len(SEEDS)]}" stroke-width="1" '
                       f'stroke-opacity=".8"><title>{escape(name)}</title></polyline>')  # fmt: skip
        top = 10 ** y_hi if log_y else y_hi
        out.append(f'<text x="{p + 2}" y="12" class="tick">{escape(title)} (max {top:.3g})</text>'
                   f'<text x="{w - 2}" y="{h + 12}" class="tick" text-anchor="end">iter {x_hi}</text>')  # fmt: skip
    else:
        out.append(f'<text x="{w / 2}" y="{h / 2}" class="tick" text-anchor="middle">{escape(title)}: nothing logged</text>')
    out.append("</svg>")
    return "".join(out)
