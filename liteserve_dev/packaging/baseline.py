"""Baseline statistics the later paths compare against (drift, data quality): inputs and outputs (numpy only).

Rank-1/2 inputs get per-feature statistics (the manifest's `training_stats.features` shape, which the evaluator's
drift reads); higher-rank inputs per-channel (last axis) and summary statistics; every output its distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES: dict[str, float] = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
BINS = 10
MAX_CHANNELS = 64  # wider last axes of an input are summarised as a whole
MAX_OUTPUT_COLUMNS = 10  # wider outputs (embeddings) get a summary and the row norms, keeping the manifest small


def edges_for(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Equal-width histogram edges spanning the values' range (a unit-wide range around a constant)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def summary(values: np.ndarray, edges: list[float] | None = None) -> dict[str, Any]:
    """Mean, std, min, max, quantiles and a histogram (values outside `edges` clipped into the end bins)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    e = np.asarray(edges if edges is not None else edges_for(v), dtype=np.float64)
    qs = np.quantile(v, list(QUANTILES.values()))
    counts, _ = np.histogram(np.clip(v, e[0], e[-1]), bins=e)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "quantiles": {k: float(q) for k, q in zip(QUANTILES, qs, strict=True)},
        "histogram": {"edges": [float(x) for x in e], "counts": [int(c) for c in counts]},
    }


def feature_stats(x: np.ndarray, names: list[str], edges: list[float] | None = None) -> list[dict[str, Any]]:
    """Per-feature statistics of rows `x` [n, F] (or [n] for one scalar feature), named `names`.

    `edges` fixes every feature's histogram edges (the digits models use [0, 1] in tenths); by default each
    feature gets edges spanning its own range.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if x64.ndim == 1:
        x64 = x64[:, None]
    if x64.ndim != 2 or x64.shape[1] != len(names):
        raise ValueError(f"expected x of shape [n, {len(names)}], got {list(x64.shape)}")
    return [{"name": name, **summary(x64[:, j], edges)} for j, name in enumerate(names)]


def input_stats(x: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """Baseline of one input: `features` for rank 1/2, else per-channel (last axis) and `summary` statistics."""
    if x.ndim <= 2:
        if names is None:
            raise ValueError("a rank-1/2 input needs feature names")
        return {"kind": "features", "features": feature_stats(x, names)}
    out: dict[str, Any] = {"kind": "tensor", "summary": summary(x)}
    if x.shape[-1] <= MAX_CHANNELS:
        flat = x.reshape(-1, x.shape[-1])
        out["channels"] = [summary(flat[:, c]) for c in range(flat.shape[1])]
    return out


def output_stats(y: np.ndarray) -> dict[str, Any]:
    """Distribution of one output over the rows: value counts (integers), per-column or summary statistics."""
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        values, counts = np.unique(y.astype(np.int64), return_counts=True)
        return {"kind": "counts", "values": [int(v) for v in values], "counts": [int(c) for c in counts]}
    flat = y.reshape(len(y), -1)
    if flat.shape[1] <= MAX_OUTPUT_COLUMNS:
        return {"kind": "columns", "columns": [summary(flat[:, j]) for j in range(flat.shape[1])]}
    return {"kind": "summary", "summary": summary(flat), "row_norm": summary(np.linalg.norm(flat, axis=1))}
