"""Label-free data quality: served inputs checked against the packaged training statistics, with no labels at all
(as SageMaker Model Monitor's data-quality baseline does). Pure numpy over the window's logged inputs.

Checks per feature: the share of missing / non-finite values, and the share of values outside the training range
(the manifest's per-feature `min`/`max`, widened by a tolerance). A check over its threshold is a *violation*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from liteserve.evaluation.drift import value_columns


@dataclass(frozen=True)
class QualityThresholds:
    """When a feature's served values violate its training baseline."""

    missing_share: float = 0.0  # any missing or non-finite value is a violation
    out_of_range_share: float = 0.05  # more than this share of a feature's values outside the training range
    range_tolerance: float = 0.0  # widen [min, max] by this fraction of (max - min) on each side
    min_rows: int = 200  # fewer served rows than this: quality is not judged
    rejected_share: float = 0.05  # more than this share of a model's inference requests refused as bad input
    min_requests: int = 20  # fewer requests than this: the rejection rate is not judged

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> QualityThresholds:
        """From the policy document's `quality` block (unknown names are refused)."""
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown quality setting(s) {sorted(unknown)}")
        return cls(**doc)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into the report)."""
        return dict(self.__dict__)


def data_quality(
    x: np.ndarray, training_features: list[dict[str, Any]], thresholds: QualityThresholds, rows: int | None = None
) -> dict[str, Any]:
    """Missing and out-of-range shares per feature of `x` (values, features) and the violations among them;
    `rows` is the number of served instances when each holds several values of a feature (see drift)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(training_features):
        raise ValueError(f"inputs have shape {list(x.shape)}; the manifest describes {len(training_features)} features")
    values = len(x)
    rows = values if rows is None else rows
    judged = rows >= thresholds.min_rows
    finite = np.isfinite(x)
    missing = (~finite).sum(axis=0)
    lo = np.asarray([f["min"] for f in training_features], dtype=np.float64)
    hi = np.asarray([f["max"] for f in training_features], dtype=np.float64)
    pad = (hi - lo) * thresholds.range_tolerance
    with np.errstate(invalid="ignore"):
        outside = (finite & ((x < lo - pad) | (x > hi + pad))).sum(axis=0)
    features, violations = [], []
    for j, stats in enumerate(training_features):
        name = stats["name"]
        miss = float(missing[j] / values) if values else 0.0
        out = float(outside[j] / values) if values else 0.0
        features.append(
            {"name": name, "missing_share": miss, "out_of_range_share": out, "range": [float(lo[j]), float(hi[j])]}
        )
        if not judged:
            continue
        if miss > thresholds.missing_share:
            violations.append(
                _violation("missing", name, miss, thresholds.missing_share, f"{miss:.1%} of '{name}' is missing")
            )
        if out > thresholds.out_of_range_share:
            message = f"{out:.1%} of '{name}' lies outside the training range [{lo[j]:.4g}, {hi[j]:.4g}]"
            violations.append(_violation("out_of_range", name, out, thresholds.out_of_range_share, message))
    return {"rows": rows, "judged": judged, "features": features, "violations": violations}


def inputs_quality(
    arrays: dict[str, np.ndarray], baselines: dict[str, dict[str, Any]], thresholds: QualityThresholds, rows: int
) -> dict[str, Any] | None:
    """`data_quality` of every input with a packaged baseline (features or channels, as drift reads them), as one
    result; None when no input has one."""
    parts = [
        data_quality(*value_columns(x, baselines[name], name), thresholds, rows=len(x))
        for name, x in arrays.items()
        if name in baselines
    ]
    if not parts:
        return None
    return {
        "rows": rows,
        "judged": any(p["judged"] for p in parts),
        "features": [f for p in parts for f in p["features"]],
        "violations": [v for p in parts for v in p["violations"]],
    }


def _violation(check: str, feature: str, observed: float, threshold: float, message: str) -> dict[str, Any]:
    return {"check": check, "feature": feature, "observed": observed, "threshold": threshold, "message": message}


def metric_trend(history: list[tuple[str, float]], current: float | None, reports: int, max_drop: float) -> str | None:
    """Rate of change: the reason when `current` is more than `max_drop` below the best of the last `reports`
    values of the same metric (oldest first), else None."""
    recent = [v for _, v in history[-reports:] if v is not None]
    if current is None or not recent or reports <= 0:
        return None
    best = max(recent)
    if best - current > max_drop:
        return (
            f"accuracy {current:.4f} fell {best - current:.4f} below the best of the last {len(recent)} reports "
            f"({best:.4f}; > {max_drop})"
        )
    return None


def error_trend(
    history: list[tuple[str, float]], current: float | None, reports: int, max_increase: float
) -> str | None:
    """Rate of change of an error (RMSE): the reason when `current` is more than `max_increase` (relative) above the
    best (lowest) of the last `reports` values (oldest first), else None."""
    recent = [v for _, v in history[-reports:] if v is not None]
    if current is None or not recent or reports <= 0:
        return None
    best = min(recent)
    if best > 0 and current > best * (1 + max_increase):
        return (
            f"RMSE {current:.4g} rose {current / best - 1:.0%} above the best of the last {len(recent)} reports "
            f"({best:.4g}; > {max_increase:.0%})"
        )
    return None
