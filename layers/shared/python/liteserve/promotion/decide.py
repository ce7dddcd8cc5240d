"""Pure promotion decisions: the candidate gate and the canary review, by the model's task (a classifier's accuracy,
a regression's RMSE; a task without a labelled metric is not judged)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from liteserve import settings
from liteserve.evaluation.task import task_metric

# The same fidelity bar the training build enforces (training/build.py); re-checked here from the manifest, so a
# candidate written by anything else cannot slip through.
MAX_INT8_DROP = 0.005
MIN_INT8_AGREEMENT = 0.99
# Regression: packaging's default bound on max |Δ score| / mean |source score| (liteserve_dev/packaging/fidelity.py),
# used when the manifest records none, and how much higher the int8 model's holdout RMSE may be than the float one's.
MAX_REL_ERROR = 0.05
MAX_INT8_RMSE_RISE = 0.05


@dataclass(frozen=True)
class PromotionPolicy:
    """Knobs of the gate and the canary (env LITESERVE_PROMOTION_* / LITESERVE_CANARY_*)."""

    # The candidate's holdout metric must beat the live model's by at least this: accuracy points for a classifier,
    # a share of the live RMSE for a regression (0.01: at least 1 % lower).
    margin: float = 0.01
    canary_weight: float = 0.1  # share of live traffic the candidate gets while it is a canary
    canary_min_labelled: int = 100  # labelled canary predictions before the canary is judged
    canary_tolerance: float = 0.0  # the canary may trail the primary by at most this (accuracy points, RMSE share)

    @classmethod
    def from_env(cls) -> PromotionPolicy:
        """From LITESERVE_PROMOTION_MARGIN, LITESERVE_CANARY_WEIGHT, _MIN_LABELLED, _TOLERANCE."""
        env = os.environ
        d = cls()
        policy = cls(
            margin=float(env.get(settings.PROMOTION_MARGIN, d.margin)),
            canary_weight=float(env.get(settings.CANARY_WEIGHT, d.canary_weight)),
            canary_min_labelled=int(env.get(settings.CANARY_MIN_LABELLED, d.canary_min_labelled)),
            canary_tolerance=float(env.get(settings.CANARY_TOLERANCE, d.canary_tolerance)),
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


def int8_fidelity(
    manifest_metrics: dict[str, Any],
    task: str = "classification",
    fidelity: dict[str, Any] | None = None,
    max_rel_error: float = MAX_REL_ERROR,
) -> tuple[bool, list[str]]:
    """Whether the manifest's numbers of the int8 model against its float source meet the bar; the reasons when
    they do not. A classifier: float/int8 accuracy and argmax agreement (`metrics`). A regression: the packaging's
    largest relative score error (`fidelity.regression.max_rel_error` <= `max_rel_error`) and the int8 holdout
    RMSE at most MAX_INT8_RMSE_RISE above the float one (`metrics`)."""
    if task == "regression":
        return _regression_fidelity(manifest_metrics, fidelity or {}, max_rel_error)
    if task != "classification":
        return False, [f"no int8 fidelity check for a {task} model"]
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


def _regression_fidelity(
    manifest_metrics: dict[str, Any], fidelity: dict[str, Any], max_rel_error: float
) -> tuple[bool, list[str]]:
    reasons = []
    try:
        rel = float(fidelity["regression"]["max_rel_error"])
    except (KeyError, TypeError, ValueError):
        reasons.append("the candidate manifest has no regression fidelity numbers (fidelity.regression)")
    else:
        if not rel <= max_rel_error:  # `not <=`: a NaN fails too
            reasons.append(f"int8/float max relative score error {rel:.4f} > {max_rel_error}")
    try:
        f_rmse = float(manifest_metrics["float"]["rmse"])
        q_rmse = float(manifest_metrics["int8"]["rmse"])
    except (KeyError, TypeError, ValueError):
        reasons.append("the candidate manifest has no float/int8 rmse metrics")
    else:
        if not q_rmse <= f_rmse * (1 + MAX_INT8_RMSE_RISE):
            reasons.append(f"int8 rmse {q_rmse:.4f} is more than {MAX_INT8_RMSE_RISE:.0%} above float {f_rmse:.4f}")
    return not reasons, reasons


def not_judged(task: str, step: str = "gate") -> list[str]:
    """Why a model of a task without a labelled metric is neither gated nor judged as a canary."""
    what = "the gate cannot judge a candidate" if step == "gate" else "the canary is not judged"
    return [f"a model of task {task!r} has no labelled metric to compare: {what} (canary/promote/rollback by hand)"]


def gate(
    live_score: float,
    candidate_score: float,
    holdout_rows: int,
    manifest_metrics: dict[str, Any],
    all_int8: bool,
    policy: PromotionPolicy,
    task: str = "classification",
    fidelity: dict[str, Any] | None = None,
    max_rel_error: float = MAX_REL_ERROR,
) -> Verdict:
    """`canary` when the candidate beats the live model by the margin on the same holdout by its task's metric
    (accuracy; RMSE, relative) and its int8 fidelity holds; otherwise `reject` with every failed condition. A task
    without a labelled metric (embedding) is rejected."""
    metric = task_metric(task)
    if metric is None:
        return Verdict("reject", not_judged(task), {"task": task, "holdout_rows": holdout_rows})
    _, reasons = int8_fidelity(manifest_metrics, task, fidelity, max_rel_error)
    if not all_int8:
        reasons.append("not every signature of the candidate is int8")
    name = metric.name
    gain = metric.gain(live_score, candidate_score)
    if not gain >= policy.margin:
        reasons.append(
            f"holdout {name} {candidate_score:.4f} vs live {live_score:.4f}: gain {metric.show(gain)} < margin "
            f"{metric.show(policy.margin, signed=False)}"
        )
    numbers = {
        "task": task,
        "metric": name,
        "holdout_rows": holdout_rows,
        f"live_{name}": live_score,
        f"candidate_{name}": candidate_score,
        "gain": gain,
        "margin": policy.margin,
    }
    if reasons:
        return Verdict("reject", reasons, numbers)
    better = "beats" if metric.higher_is_better else "is below"
    return Verdict(
        "canary",
        [f"holdout {name} {candidate_score:.4f} {better} live {live_score:.4f} (gain {metric.show(gain)})"],
        numbers,
    )


def review_canary(
    primary: dict[str, Any] | None,
    canary: dict[str, Any] | None,
    policy: PromotionPolicy,
    task: str = "classification",
) -> Verdict:
    """Judge a canary on predictions both versions served since it started (`{"labelled", <metric>}` each: accuracy
    of a classifier, rmse of a regression): `wait` for enough labelled canary rows, then `promote` unless it trails
    the primary by more than the tolerance (`rollback`; a regression's tolerance is a share of the primary's RMSE).
    A task without a labelled metric waits for a person."""
    metric = task_metric(task)
    c_n = int((canary or {}).get("labelled") or 0)
    p_n = int((primary or {}).get("labelled") or 0)
    numbers: dict[str, Any] = {
        "task": task,
        "metric": metric.name if metric else None,
        "canary_labelled": c_n,
        "primary_labelled": p_n,
        "min_labelled": policy.canary_min_labelled,
        "tolerance": policy.canary_tolerance,
    }
    if metric is None:
        return Verdict("wait", not_judged(task, "canary"), numbers)
    name = metric.name
    if c_n < policy.canary_min_labelled:
        return Verdict("wait", [f"{c_n} labelled canary predictions < {policy.canary_min_labelled}"], numbers)
    c_value = (canary or {}).get(name)
    if c_value is None:
        return Verdict("wait", [f"no canary {name} among the numbers since the canary started"], numbers)
    c_value = numbers[f"canary_{name}"] = float(c_value)
    p_value = (primary or {}).get(name)
    if p_n == 0 or p_value is None:
        # Weight 100 % or no primary traffic since the canary started: nothing to compare with, judge alone.
        return Verdict("promote", ["no primary predictions since the canary started"], numbers)
    p_value = numbers[f"primary_{name}"] = float(p_value)
    gain = numbers["gain"] = metric.gain(p_value, c_value)
    if gain < -policy.canary_tolerance:
        return Verdict(
            "rollback",
            [
                f"canary {name} {c_value:.4f} trails primary {p_value:.4f} ({metric.show(gain)}) by more than the "
                f"tolerance {metric.show(policy.canary_tolerance, signed=False)}"
            ],
            numbers,
        )
    return Verdict("promote", [f"canary {name} {c_value:.4f} holds against primary {p_value:.4f}"], numbers)
