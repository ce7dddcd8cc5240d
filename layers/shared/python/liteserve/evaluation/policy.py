"""The retrain decision: the ONE place that says when a model is retrained.

Configured by one JSON document (env LITESERVE_RETRAIN_POLICY, a template parameter), every key optional:

    {"accuracy_floor": 0.90, "max_accuracy_drop": 0.03, "on_dataset_drift": true,
     "min_labelled": 500, "cooldown_hours": 24,
     "drift": {"psi": 0.2, "js": 0.2, "per_feature": {"px_0_0": {"psi": 0.5}}, "dataset_share": 0.25,
               "prediction_psi": 0.2, "min_rows": 200},
     "label_free": "alert", "label_free_min_predictions": 200,
     "quality": {"missing_share": 0.0, "out_of_range_share": 0.05, "range_tolerance": 0.0, "min_rows": 200},
     "trend_reports": 6, "trend_max_drop": 0.05,
     "max_rmse": null, "min_r2": null, "max_rmse_increase": 0.25, "trend_max_rmse_increase": 0.25}

Label-free findings (dataset drift, prediction drift, data-quality violations) need no labels: with `label_free`
"alert" they emit `DriftDetected`, with "retrain" they request a retraining on their own, with "off" they are only
reported. The rate-of-change trigger compares the accuracy with the best of the last `trend_reports` reports.

The accuracy triggers judge classifiers; regression models are judged on their errors instead: RMSE above
`max_rmse`, R² below `min_r2`, or RMSE more than `max_rmse_increase` (0.25 = 25 %) above the packaged model's RMSE on
its packaging data (the manifest's `metrics`); null switches a trigger off. Their rate-of-change trigger: RMSE more
than `trend_max_rmse_increase` above the best of the last `trend_reports` reports. Embedding models have no label
metrics: only the label-free findings apply to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from liteserve import settings
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
    max_rmse: float | None = None  # regression: absolute ceiling of the window's RMSE
    min_r2: float | None = None  # regression: floor of the window's R²
    max_rmse_increase: float | None = 0.25  # regression: relative rise over the packaged RMSE (0.25 = 25 %)
    trend_max_rmse_increase: float = 0.25  # regression: relative rise over the best RMSE of the last reports

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
        text = os.environ.get(settings.RETRAIN_POLICY, "").strip()
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
    errors: dict[str, Any] | None = None,
    baseline_errors: dict[str, Any] | None = None,
    task: str = "classification",
    drift_where: str = "",
) -> Decision:
    """Apply the triggers to one model version's window. Cooldown is applied by the caller (it needs state).

    `findings` are the label-free ones (drift, data quality) and `trend` the rate-of-change reason, if any.
    A regression model passes its window's `errors` (mae, rmse, r2) and the packaged ones (`baseline_errors`)
    instead of accuracies; an embedding model (`task`) is judged on its label-free findings only. `drift_where`
    names the drifted inputs in the dataset-drift reason (' of input(s) ...')."""
    findings = list(findings or [])
    checks: dict[str, Any] = {}
    if task == "classification":
        checks = {
            "labelled": labelled,
            "min_labelled": policy.min_labelled,
            "accuracy": accuracy,
            "accuracy_floor": policy.accuracy_floor,
            "baseline_accuracy": baseline_accuracy,
            "max_accuracy_drop": policy.max_accuracy_drop,
        }
    elif task == "regression":
        checks = {"labelled": labelled, "min_labelled": policy.min_labelled}
        checks.update(_regression_checks(policy, errors, baseline_errors))
    checks.update(
        {
            "dataset_drift": dataset_drift,
            "drifted_share": drifted_share,
            "predictions": predictions,
            "label_free_min_predictions": policy.label_free_min_predictions,
        }
    )
    reasons: list[str] = []
    measured = accuracy is not None or (task == "regression" and (errors or {}).get("rmse") is not None)
    labelled_enough = labelled >= policy.min_labelled and measured
    if labelled_enough and task == "regression":
        reasons += regression_reasons(policy, errors or {}, baseline_errors or {})
    if labelled_enough and accuracy is not None:
        if accuracy < policy.accuracy_floor:
            reasons.append(f"accuracy {accuracy:.4f} below the floor {policy.accuracy_floor}")
        if baseline_accuracy is not None and baseline_accuracy - accuracy > policy.max_accuracy_drop:
            reasons.append(
                f"accuracy {accuracy:.4f} dropped {baseline_accuracy - accuracy:.4f} from the validation accuracy "
                f"{baseline_accuracy:.4f} (> {policy.max_accuracy_drop})"
            )
    if labelled_enough:
        if trend:
            reasons.append(trend)
        if policy.on_dataset_drift and dataset_drift:
            share = policy.drift.dataset_share
            reasons.append(f"dataset drift: {drifted_share:.0%} of the features{drift_where} drifted (>= {share:.0%})")
    label_free = bool(findings) and predictions >= policy.label_free_min_predictions
    if not reasons and label_free and policy.label_free == "retrain":
        reasons = [f"label-free: {f}" for f in findings]
    if reasons:
        return Decision(True, reasons, checks, findings=findings)
    alert = label_free and policy.label_free == "alert"
    if task not in ("classification", "regression"):
        reasons = [f"{task} model: no label metrics, judged on drift and data quality only"]
    elif not labelled_enough:
        reasons = [f"only {labelled} labelled predictions (< {policy.min_labelled}): no decision"]
    return Decision(False, reasons, checks, alert=alert, findings=findings)


def _regression_checks(
    policy: RetrainPolicy, errors: dict[str, Any] | None, baseline: dict[str, Any] | None
) -> dict[str, Any]:
    errors, baseline = errors or {}, baseline or {}
    return {
        "mae": errors.get("mae"),
        "rmse": errors.get("rmse"),
        "r2": errors.get("r2"),
        "baseline_rmse": baseline.get("rmse"),
        "max_rmse": policy.max_rmse,
        "min_r2": policy.min_r2,
        "max_rmse_increase": policy.max_rmse_increase,
    }


def regression_reasons(policy: RetrainPolicy, errors: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """The regression triggers that fire for a window's errors (see the module docstring)."""
    reasons = []
    rmse, r2, base = errors.get("rmse"), errors.get("r2"), baseline.get("rmse")
    if rmse is not None and policy.max_rmse is not None and rmse > policy.max_rmse:
        reasons.append(f"RMSE {rmse:.4g} above the ceiling {policy.max_rmse}")
    if r2 is not None and policy.min_r2 is not None and r2 < policy.min_r2:
        reasons.append(f"R² {r2:.4f} below the floor {policy.min_r2}")
    if (
        rmse is not None
        and base
        and policy.max_rmse_increase is not None
        and rmse > base * (1 + policy.max_rmse_increase)
    ):
        reasons.append(
            f"RMSE {rmse:.4g} is {rmse / base - 1:.0%} above the packaged model's {base:.4g} "
            f"(> {policy.max_rmse_increase:.0%})"
        )
    return reasons
