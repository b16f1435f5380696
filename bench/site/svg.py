"""Small inline SVG charts (line charts with intervals, scatter plots), drawn in Python.

Inline SVG needs no JavaScript library and no network, prints and scales well, and
is tiny for the few dozen points of a leaderboard. Every text that reaches the SVG
(labels, model ids in tooltips) is escaped here, so the result can be marked safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#3b6ea8", "#d1603d", "#4f9d69", "#8e5ba8", "#c49a2c", "#5a8f9e", "#b5475c", "#6b6b6b")
_W, _H = 380, 240
_M = dict(left=58, right=14, top=14, bottom=44)
_MAX_MARKERS = 40      # denser series (spectra) are drawn as a line only
_LEGEND_CHARS = 18
_LEGEND_W = 120        # room right of a scatter plot for its legend


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    lo: list[float | None] | None = None
    hi: list[float | None] | None = None


@dataclass
class Point:
    x: float
    y: float
    label: str
    group: str = ""
    lo: float | None = None
    hi: float | None = None
    href: str | None = None


def fmt(v: float) -> str:
    """A number in at most 4 significant digits, without trailing zeros."""
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:.4g}"


def fmt_pm(v: float) -> str:
    """An interval half-width: two significant digits are all it means."""
    return f"{v:.2g}"


class _Scale:
    def __init__(self, values: list[float], lo_px: float, hi_px: float, log: bool):
        finite = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.06
        self.lo, self.hi, self.log = lo - pad, hi + pad, log
        self.lo_px, self.hi_px = lo_px, hi_px

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.lo_px + (t - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px)

    def ticks(self) -> list[float]:
        if self.log:
            ticks = [10.0 ** k for k in range(math.ceil(self.lo), math.floor(self.hi) + 1)]
            return ticks if len(ticks) >= 2 else [10 ** self.lo, 10 ** ((self.lo + self.hi) / 2), 10 ** self.hi]
        raw = (self.hi - self.lo) / 5
        mag = 10 ** math.floor(math.log10(raw))
        step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
        start = math.ceil(self.lo / step) * step
        return [start + i * step for i in range(int((self.hi - start) / step) + 1)]


def wants_log(values: list[float]) -> bool:
    """Log axis for positive values spanning more than two orders of magnitude."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100


def _frame(xs: _Scale, ys: _Scale, x_label: str, y_label: str) -> list[str]:
    left, bottom = _M["left"], _H - _M["bottom"]
    parts = [f'<rect x="{left}" y="{_M["top"]}" width="{_W - left - _M["right"]}" '
             f'height="{bottom - _M["top"]}" class="plot-bg"/>']
    for t in xs.ticks():
        x = xs(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_M["top"]}" y2="{bottom}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">{escape(fmt(t))}</text>')
    for t in ys.ticks():
        y = ys(t)
        parts.append(f'<line x1="{left}" x2="{_W - _M["right"]}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 5}" y="{y + 3:.1f}" class="tick" text-anchor="end">{escape(fmt(t))}</text>')
    parts.append(f'<text x="{(left + _W - _M["right"]) / 2:.0f}" y="{_H - 8}" class="axis-label" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(13 {(_M["top"] + bottom) / 2:.0f}) rotate(-90)" '
                 f'class="axis-label" text-anchor="middle">{escape(y_label)}</text>')
    return parts


def _short(text: str) -> str:
    return text if len(text) <= _LEGEND_CHARS else text[:_LEGEND_CHARS - 1] + "…"


def _svg(parts: list[str], title: str, width: int = _W) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {_H}" role="img" aria-label="{escape(title)}">'
                  f'<title>{escape(title)}</title>{"".join(parts)}</svg>')


def _scales(xs: list[float], ys: list[float], log_x: bool, log_y: bool) -> tuple[_Scale, _Scale]:
    return (_Scale(xs, _M["left"], _W - _M["right"], log_x),
            _Scale(ys, _H - _M["bottom"], _M["top"], log_y))


def _ok(v: float | None, log: bool) -> bool:
    return v is not None and math.isfinite(v) and (v > 0 or not log)


def line_chart(series: list[Series], *, x_label: str, y_label: str, title: str,
               log_y: bool | None = None) -> Markup:
    """Lines with markers and, where given, vertical interval bars; a legend when several."""
    all_y = [v for s in series for v in s.y + [b for b in (s.lo or []) + (s.hi or []) if b is not None]]
    log_y = wants_log(all_y) if log_y is None else log_y
    xs, ys = _scales([v for s in series for v in s.x], all_y, False, log_y)
    parts = _frame(xs, ys, x_label, y_label)
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = [(xs(x), ys(y)) for x, y in zip(s.x, s.y) if _ok(y, log_y)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        for i, (x, y) in enumerate(zip(s.x, s.y)):
            if not _ok(y, log_y):
                continue
            lo = s.lo[i] if s.lo else None
            hi = s.hi[i] if s.hi else None
            if _ok(lo, log_y) and _ok(hi, log_y):
                parts.append(f'<line x1="{xs(x):.1f}" x2="{xs(x):.1f}" y1="{ys(lo):.1f}" y2="{ys(hi):.1f}" '
                             f'stroke="{color}" stroke-width="1.2"/>')
            if len(s.x) <= _MAX_MARKERS:
                parts.append(f'<circle cx="{xs(x):.1f}" cy="{ys(y):.1f}" r="2.6" fill="{color}">'
                             f'<title>{escape(s.label)}: {escape(fmt(x))}, {escape(fmt(y))}</title></circle>')
        if len(series) > 1:
            parts.append(f'<text x="{_W - _M["right"] - 4}" y="{_M["top"] + 12 + 12 * k}" class="legend" '
                         f'text-anchor="end" fill="{color}">{escape(_short(s.label))}</text>')
    return _svg(parts, title)


def scatter_chart(points: list[Point], *, x_label: str, y_label: str, title: str) -> Markup:
    """Points coloured by group, with vertical interval bars and a tooltip naming each point."""
    log_x = wants_log([p.x for p in points])
    log_y = wants_log([v for p in points for v in (p.y, p.lo, p.hi) if v is not None])
    xs, ys = _scales([p.x for p in points], [v for p in points for v in (p.y, p.lo, p.hi) if v is not None],
                     log_x, log_y)
    parts = _frame(xs, ys, x_label + (" (log)" if log_x else ""), y_label + (" (log)" if log_y else ""))
    groups = sorted({p.group for p in points})
    for p in points:
        if not (_ok(p.x, log_x) and _ok(p.y, log_y)):
            continue
        color = PALETTE[groups.index(p.group) % len(PALETTE)]
        x, y = xs(p.x), ys(p.y)
        if _ok(p.lo, log_y) and _ok(p.hi, log_y):
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ys(p.lo):.1f}" y2="{ys(p.hi):.1f}" '
                         f'stroke="{color}" stroke-width="1.2"/>')
        dot = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}" class="point">'
               f'<title>{escape(p.label)}: {escape(fmt(p.x))}, {escape(fmt(p.y))}</title></circle>')
        parts.append(f'<a href="{escape(p.href)}">{dot}</a>' if p.href else dot)
    legend_x = _W - _M["right"] + 10
    for k, g in enumerate(groups):
        parts.append(f'<circle cx="{legend_x}" cy="{_M["top"] + 8 + 14 * k}" r="4" '
                     f'fill="{PALETTE[k % len(PALETTE)]}"/>'
                     f'<text x="{legend_x + 8}" y="{_M["top"] + 12 + 14 * k}" class="legend" '
                     f'fill="{PALETTE[k % len(PALETTE)]}">{escape(_short(g))}<title>{escape(g)}</title></text>')
    return _svg(parts, title, width=_W + _LEGEND_W)
