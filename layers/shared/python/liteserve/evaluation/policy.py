"""The retrain decision: the ONE place that says when a model is retrained.

Configured by one JSON document (env LITESERVE_RETRAIN_POLICY, a template parameter), every key optional:

    {"accuracy_floor": 0.90, "max_accuracy_drop": 0.03, "on_dataset_drift": true,
     "min_labelled": 500, "cooldown_hours": 24,
     "drift": {"psi": 0.2, "js": 0.2, "per_feature": {"px_0_0": {"psi": 0.5}}, "dataset_share": 0.25,
               "prediction_psi": 0.2, "min_rows": 200}}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from liteserve.evaluation.drift import Thresholds


@dataclass(frozen=True)
class RetrainPolicy:
    """Triggers (any one suffices) and the guards applied before any of them (sample size, cooldown)."""

    accuracy_floor: float = 0.90
    max_accuracy_drop: float = 0.03  # absolute drop from the manifest's validation accuracy (0.03 = 3 points)
    on_dataset_drift: bool = True
    min_labelled: int = 500
    cooldown_hours: float = 24.0
    drift: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RetrainPolicy:
        """Parse the policy document; unknown keys are refused so a typo cannot silently disable a trigger."""
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown retrain policy key(s) {sorted(unknown)}; known: {sorted(known)}")
        values = {k: v for k, v in doc.items() if k != "drift"}
        return cls(**values, drift=Thresholds.from_dict(doc.get("drift") or {}))

    @classmethod
    def from_env(cls) -> RetrainPolicy:
        """LITESERVE_RETRAIN_POLICY (JSON; empty = defaults)."""
        text = os.environ.get("LITESERVE_RETRAIN_POLICY", "").strip()
        return cls.from_dict(orjson.loads(text) if text else {})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into every report)."""
        return {**{k: v for k, v in self.__dict__.items() if k != "drift"}, "drift": self.drift.as_dict()}


@dataclass(frozen=True)
class Decision:
    """What the policy concluded for one model in one window."""

    retrain: bool
    reasons: list[str]
    checks: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"retrain": self.retrain, "reasons": self.reasons, "checks": self.checks}


def decide(
    policy: RetrainPolicy,
    labelled: int,
    accuracy: float | None,
    baseline_accuracy: float | None,
    dataset_drift: bool,
    drifted_share: float,
) -> Decision:
    """Apply the triggers to one model version's window. Cooldown is applied by the caller (it needs state)."""
    checks: dict[str, Any] = {
        "labelled": labelled,
        "min_labelled": policy.min_labelled,
        "accuracy": accuracy,
        "accuracy_floor": policy.accuracy_floor,
        "baseline_accuracy": baseline_accuracy,
        "max_accuracy_drop": policy.max_accuracy_drop,
        "dataset_drift": dataset_drift,
        "drifted_share": drifted_share,
    }
    if labelled < policy.min_labelled or accuracy is None:
        return Decision(False, [f"only {labelled} labelled predictions (< {policy.min_labelled}): no decision"], checks)
    reasons = []
    if accuracy < policy.accuracy_floor:
        reasons.append(f"accuracy {accuracy:.4f} below the floor {policy.accuracy_floor}")
    if baseline_accuracy is not None and baseline_accuracy - accuracy > policy.max_accuracy_drop:
        reasons.append(
            f"accuracy {accuracy:.4f} dropped {baseline_accuracy - accuracy:.4f} from the validation accuracy "
            f"{baseline_accuracy:.4f} (> {policy.max_accuracy_drop})"
        )
    if policy.on_dataset_drift and dataset_drift:
        share = policy.drift.dataset_share
        reasons.append(f"dataset drift: {drifted_share:.0%} of the features drifted (>= {share:.0%})")
    return Decision(bool(reasons), reasons, checks)
