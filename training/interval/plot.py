"""The SVG plot of the slices' accuracy, the chosen fit, the threshold and the interval (no plotting library)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np

from training.interval.decay import DecayFit


def _nice_step(span: float, max_ticks: int) -> float:
    """The smallest of 1, 2, 5 × 10^n giving at most `max_ticks` intervals over `span`."""
    base = 10.0 ** math.floor(math.log10(span / max_ticks)) if span > 0 else 1.0
    return next(m * base for m in (1, 2, 5, 10) if span / (m * base) <= max_ticks)


def svg_plot(
    slices: list[dict[str, Any]],
    estimate: dict[str, Any],
    title: str,
    width: int = 760,
    height: int = 340,
) -> str:
    """Accuracy per slice (dots, area ∝ rows), the chosen fit, the threshold line and the interval (inline SVG);
    the verdict is the subtitle."""
    pts = [(s["t_days"], s["accuracy"]) for s in slices if s.get("used")]
    fit = DecayFit(estimate["model"], dict(estimate["fit"]["params"]), 0.0, 0.0, 0.0)
    horizon = max(estimate["horizon_days"], 1e-9)
    ts = np.linspace(0.0, horizon, 200)
    curve = fit.value(ts)
    threshold, baseline = estimate["threshold_accuracy"], estimate["baseline_accuracy"]
    values = [a for _, a in pts] + [threshold, baseline, *curve.tolist()]
    lo, hi = max(0.0, min(values)), min(1.0, max(values))
    pad = max((hi - lo) * 0.06, 0.005)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    left, right, top, bottom = 56, 20, 48, 52
    pw, ph = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + pw * v / horizon

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / ((hi - lo) or 1))

    nmax = max([s["n"] for s in slices if s.get("used")] or [1])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><style>text{{font:11px system-ui,sans-serif}}</style>',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>',
        f'<text x="{left}" y="32">{escape(estimate["verdict"])}</text>',
    ]
    ystep = _nice_step(hi - lo, 6)
    decimals = max(0, -math.floor(math.log10(ystep)))
    v = math.ceil(lo / ystep - 1e-9) * ystep
    while v <= hi + 1e-9:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.{decimals}f}</text>')
        v += ystep
    xstep = _nice_step(horizon, 10)
    tick = 0.0
    while tick <= horizon + 1e-9:
        out.append(f'<text x="{px(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:g}</text>')
        tick += xstep
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - bottom + 32}" text-anchor="middle">days after the cutoff</text>'
    )
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{py(threshold):.1f}" y2="{py(threshold):.1f}" '
        f'stroke="#d62728" stroke-dasharray="6,4"/>'
        f'<text x="{width - right}" y="{py(threshold) - 4:.1f}" text-anchor="end" fill="#d62728">'
        f"threshold {threshold:.3f} (baseline {baseline:.3f} − {estimate['tolerated_drop']:g})</text>"
    )
    path = " ".join(f"{px(float(a)):.1f},{py(float(b)):.1f}" for a, b in zip(ts, curve, strict=True))
    out.append(f'<polyline points="{path}" fill="none" stroke="#ff7f0e" stroke-width="2"/>')
    for s in slices:
        if s.get("used"):
            r = 2 + 3 * math.sqrt(s["n"] / nmax)
            out.append(
                f'<circle cx="{px(s["t_days"]):.1f}" cy="{py(s["accuracy"]):.1f}" r="{r:.1f}" fill="#1f77b4">'
                f"<title>{escape(s['start'])}: accuracy {s['accuracy']:.4f} on {s['n']} rows</title></circle>"
            )
    if estimate["interval_days"] is not None:
        days = estimate["interval_days"]
        x = px(days)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#2ca02c" stroke-dasharray="3,3"/>'
            f'<text x="{x + 4:.1f}" y="{top + ph - 6}" fill="#2ca02c">fitted drop reached after {days:.2f} d</text>'
        )
    legend = f"dots: accuracy per slice (area ∝ rows) · orange: {estimate['fit']['formula']} ({estimate['model']})"
    out.append(f'<text x="{left}" y="{height - 6}" fill="#555">{escape(legend)}</text>')
    out.append("</svg>")
    return "".join(out)
