"""Pure promotion decisions: the candidate gate and the canary review."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# The same fidelity bar the training build enforces (training/build.py); re-checked here from the manifest, so a
# candidate written by anything else cannot slip through.
MAX_INT8_DROP = 0.005
MIN_INT8_AGREEMENT = 0.99


@dataclass(frozen=True)
class PromotionPolicy:
    """Knobs of the gate and the canary (env LITESERVE_PROMOTION_* / LITESERVE_CANARY_*)."""

    margin: float = 0.01  # candidate holdout accuracy must beat the live model's by at least this
    canary_weight: float = 0.1  # share of live traffic the candidate gets while it is a canary
    canary_min_labelled: int = 100  # labelled canary predictions before the canary is judged
    canary_tolerance: float = 0.0  # the canary may trail the primary by at most this accuracy

    @classmethod
    def from_env(cls) -> PromotionPolicy:
        """From LITESERVE_PROMOTION_MARGIN, LITESERVE_CANARY_WEIGHT, _MIN_LABELLED, _TOLERANCE."""
        env = os.environ
        d = cls()
        policy = cls(
            margin=float(env.get("LITESERVE_PROMOTION_MARGIN", d.margin)),
            canary_weight=float(env.get("LITESERVE_CANARY_WEIGHT", d.canary_weight)),
            canary_min_labelled=int(env.get("LITESERVE_CANARY_MIN_LABELLED", d.canary_min_labelled)),
            canary_tolerance=float(env.get("LITESERVE_CANARY_TOLERANCE", d.canary_tolerance)),
        )
        if not 0 < policy.canary_weight < 1:  # the alias's extra-version weight is a share of the traffic below 1
            raise ValueError(f"canary weight {policy.canary_weight} is not in (0, 1)")
        return policy

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded with every decision)."""
        return asdict(self)


@dataclass
class Verdict:
    """An outcome with the reasons and numbers that led to it."""

    action: str
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def accuracy(class_ids: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose predicted class id equals the label index."""
    if len(labels) == 0:
        raise ValueError("no labelled rows")
    return float(np.mean(np.asarray(class_ids) == np.asarray(labels)))


def int8_fidelity(manifest_metrics: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether the manifest's float-vs-int8 numbers meet the bar; the reasons when they do not."""
    try:
        f_acc = float(manifest_metrics["float"]["accuracy"])
        q_acc = float(manifest_metrics["int8"]["accuracy"])
        agreement = float(manifest_metrics["int8"]["argmax_agreement"])
    except (KeyError, TypeError, ValueError):
        return False, ["the candidate manifest has no float/int8 fidelity metrics"]
    reasons = []
    if f_acc - q_acc > MAX_INT8_DROP:
        reasons.append(f"int8 accuracy {q_acc:.4f} is more than {MAX_INT8_DROP} below float {f_acc:.4f}")
    if agreement < MIN_INT8_AGREEMENT:
        reasons.append(f"int8/float argmax agreement {agreement:.4f} < {MIN_INT8_AGREEMENT}")
    return not reasons, reasons


def gate(
    live_accuracy: float,
    candidate_accuracy: float,
    holdout_rows: int,
    manifest_metrics: dict[str, Any],
    all_int8: bool,
    policy: PromotionPolicy,
) -> Verdict:
    """`canary` when the candidate beats the live model by the margin on the same holdout and its int8 fidelity
    holds; otherwise `reject` with every failed condition."""
    _, reasons = int8_fidelity(manifest_metrics)
    if not all_int8:
        reasons.append("not every signature of the candidate is int8")
    gain = candidate_accuracy - live_accuracy
    if gain < policy.margin:
        reasons.append(
            f"holdout accuracy {candidate_accuracy:.4f} vs live {live_accuracy:.4f}: gain {gain:+.4f} < margin "
            f"{policy.margin}"
        )
    numbers = {
        "holdout_rows": holdout_rows,
        "live_accuracy": live_accuracy,
        "candidate_accuracy": candidate_accuracy,
        "gain": gain,
        "margin": policy.margin,
    }
    if reasons:
        return Verdict("reject", reasons, numbers)
    return Verdict("canary", [f"holdout accuracy {candidate_accuracy:.4f} beats live {live_accuracy:.4f}"], numbers)


def review_canary(primary: dict[str, Any] | None, canary: dict[str, Any] | None, policy: PromotionPolicy) -> Verdict:
    """Judge a canary on predictions both versions served since it started (`{"labelled", "accuracy"}` each):
    `wait` for enough labelled canary rows, then `promote` unless it trails the primary by more than the tolerance
    (`rollback`)."""
    c_n = int((canary or {}).get("labelled") or 0)
    p_n = int((primary or {}).get("labelled") or 0)
    numbers: dict[str, Any] = {
        "canary_labelled": c_n,
        "primary_labelled": p_n,
        "min_labelled": policy.canary_min_labelled,
        "tolerance": policy.canary_tolerance,
    }
    if c_n < policy.canary_min_labelled:
        return Verdict("wait", [f"{c_n} labelled canary predictions < {policy.canary_min_labelled}"], numbers)
    c_acc = float(canary["accuracy"])  # type: ignore[index]
    numbers["canary_accuracy"] = c_acc
    if p_n == 0:
        # Weight 100 % or no primary traffic since the canary started: nothing to compare with, judge alone.
        return Verdict("promote", ["no primary predictions since the canary started"], numbers)
    p_acc = float(primary["accuracy"])  # type: ignore[index]
    numbers["primary_accuracy"] = p_acc
    if c_acc + policy.canary_tolerance < p_acc:
        return Verdict(
            "rollback", [f"canary accuracy {c_acc:.4f} trails primary {p_acc:.4f} by more than the tolerance"], numbers
        )
    return Verdict("promote", [f"canary accuracy {c_acc:.4f} holds against primary {p_acc:.4f}"], numbers)
