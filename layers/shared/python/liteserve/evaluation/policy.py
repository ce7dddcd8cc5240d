"""The retrain decision: the ONE place that says when a model is retrained.

Configured by one JSON document (env LITESERVE_RETRAIN_POLICY, a template parameter), every key optional:

    {"accuracy_floor": 0.90, "max_accuracy_drop": 0.03, "on_dataset_drift": true,
     "min_labelled": 500, "cooldown_hours": 24,
     "drift": {"psi": 0.2, "js": 0.2, "per_feature": {"px_0_0": {"psi": 0.5}}, "dataset_share": 0.25,
               "prediction_psi": 0.2, "min_rows": 200},
     "label_free": "alert", "label_free_min_predictions": 200,
     "quality": {"missing_share": 0.0, "out_of_range_share": 0.05, "range_tolerance": 0.0, "min_rows": 200},
     "trend_reports": 6, "trend_max_drop": 0.05}

Label-free findings (dataset drift, prediction drift, data-quality violations) need no labels: with `label_free`
"alert" they emit `DriftDetected`, with "retrain" they request a retraining on their own, with "off" they are only
reported. The rate-of-change trigger compares the accuracy with the best of the last `trend_reports` reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from liteserve.evaluation.drift import Thresholds
from liteserve.evaluation.quality import QualityThresholds

LABEL_FREE_ACTIONS = ("alert", "retrain", "off")


@dataclass(frozen=True)
class RetrainPolicy:
    """Triggers (any one suffices) and the guards applied before any of them (sample size, cooldown)."""

    accuracy_floor: float = 0.90
    max_accuracy_drop: float = 0.03  # absolute drop from the manifest's validation accuracy (0.03 = 3 points)
    on_dataset_drift: bool = True
    min_labelled: int = 500
    cooldown_hours: float = 24.0
    drift: Thresholds = field(default_factory=Thresholds)
    label_free: str = "alert"
    label_free_min_predictions: int = 200
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    trend_reports: int = 6  # 0 turns the rate-of-change trigger off
    trend_max_drop: float = 0.05

    def __post_init__(self) -> None:
        if self.label_free not in LABEL_FREE_ACTIONS:
            raise ValueError(f"label_free must be one of {list(LABEL_FREE_ACTIONS)}, got {self.label_free!r}")

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RetrainPolicy:
        """Parse the policy document; unknown keys are refused so a typo cannot silently disable a trigger."""
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown retrain policy key(s) {sorted(unknown)}; known: {sorted(known)}")
        values = {k: v for k, v in doc.items() if k not in ("drift", "quality")}
        return cls(
            **values,
            drift=Thresholds.from_dict(doc.get("drift") or {}),
            quality=QualityThresholds.from_dict(doc.get("quality") or {}),
        )

    @classmethod
    def from_env(cls) -> RetrainPolicy:
        """LITESERVE_RETRAIN_POLICY (JSON; empty = defaults)."""
        text = os.environ.get("LITESERVE_RETRAIN_POLICY", "").strip()
        return cls.from_dict(orjson.loads(text) if text else {})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into every report)."""
        plain = {k: v for k, v in self.__dict__.items() if k not in ("drift", "quality")}
        return {**plain, "drift": self.drift.as_dict(), "quality": self.quality.as_dict()}


@dataclass(frozen=True)
class Decision:
    """What the policy concluded for one model in one window."""

    retrain: bool
    reasons: list[str]
    checks: dict[str, Any]
    alert: bool = False  # label-free findings to report as DriftDetected (when no retraining is requested)
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "retrain": self.retrain,
            "reasons": self.reasons,
            "checks": self.checks,
            "alert": self.alert,
            "findings": self.findings,
        }


def decide(
    policy: RetrainPolicy,
    labelled: int,
    accuracy: float | None,
    baseline_accuracy: float | None,
    dataset_drift: bool,
    drifted_share: float,
    *,
    predictions: int = 0,
    findings: list[str] | None = None,
    trend: str | None = None,
) -> Decision:
    """Apply the triggers to one model version's window. Cooldown is applied by the caller (it needs state).

    `findings` are the label-free ones (drift, data quality) and `trend` the rate-of-change reason, if any."""
    findings = list(findings or [])
    checks: dict[str, Any] = {
        "labelled": labelled,
        "min_labelled": policy.min_labelled,
        "accuracy": accuracy,
        "accuracy_floor": policy.accuracy_floor,
        "baseline_accuracy": baseline_accuracy,
        "max_accuracy_drop": policy.max_accuracy_drop,
        "dataset_drift": dataset_drift,
        "drifted_share": drifted_share,
        "predictions": predictions,
        "label_free_min_predictions": policy.label_free_min_predictions,
    }
    reasons: list[str] = []
    labelled_enough = labelled >= policy.min_labelled and accuracy is not None
    if labelled_enough and accuracy is not None:
        if accuracy < policy.accuracy_floor:
            reasons.append(f"accuracy {accuracy:.4f} below the floor {policy.accuracy_floor}")
        if baseline_accuracy is not None and baseline_accuracy - accuracy > policy.max_accuracy_drop:
            reasons.append(
                f"accuracy {accuracy:.4f} dropped {baseline_accuracy - accuracy:.4f} from the validation accuracy "
                f"{baseline_accuracy:.4f} (> {policy.max_accuracy_drop})"
            )
        if trend:
            reasons.append(trend)
        if policy.on_dataset_drift and dataset_drift:
            share = policy.drift.dataset_share
            reasons.append(f"dataset drift: {drifted_share:.0%} of the features drifted (>= {share:.0%})")
    label_free = bool(findings) and predictions >= policy.label_free_min_predictions
    if not reasons and label_free and policy.label_free == "retrain":
        reasons = [f"label-free: {f}" for f in findings]
    if reasons:
        return Decision(True, reasons, checks, findings=findings)
    alert = label_free and policy.label_free == "alert"
    if not labelled_enough:
        reasons = [f"only {labelled} labelled predictions (< {policy.min_labelled}): no decision"]
    return Decision(False, reasons, checks, alert=alert, findings=findings)
