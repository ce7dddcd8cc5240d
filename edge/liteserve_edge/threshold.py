"""Choosing the escalation threshold from the edge manifest's calibration curve (threshold -> accuracy of the
accepted cases, escalation rate, measured on held-out data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# An int8 softmax output has 256 levels: the largest probability it can express is 255/256.
INT8_MAX_CONFIDENCE = 255 / 256


@dataclass(frozen=True)
class Choice:
    """The chosen threshold, what the curve predicts for it, and whether the target is met."""

    threshold: float
    escalation_rate: float
    edge_accepted_accuracy: float | None
    estimated_accuracy: float | None
    cloud_accuracy: float | None
    target_met: bool
    reason: str


def hard_case_accuracy(cloud_calibration: Sequence[dict[str, Any]]) -> Callable[[float], float | None]:
    """From the cloud model's own calibration: its accuracy on its hardest `e` share of the held-out data.

    Used as the cloud's expected accuracy on the edge's escalated cases (the cases one model finds hard are
    largely the ones the other finds hard too). For share `e` it takes the smallest cloud escalation rate >= e.
    """
    rows = sorted(cloud_calibration, key=lambda r: r["escalation_rate"])
    n = max(int(r["accepted"]) for r in rows)
    total_correct = next(r["accepted_accuracy"] * r["accepted"] for r in rows if int(r["accepted"]) == n)
    pools = []
    for r in rows:
        rejected = n - int(r["accepted"])
        if rejected > 0:
            correct = total_correct - (r["accepted_accuracy"] or 0.0) * int(r["accepted"])
            pools.append((rejected / n, round(correct) / rejected))

    def accuracy(share: float) -> float | None:
        if share <= 0 or not pools:
            return None
        return next((acc for rate, acc in pools if rate >= share - 1e-12), pools[-1][1])

    return accuracy


def trade_off_table(
    calibration: Sequence[dict[str, Any]],
    cloud_accuracy: float | None = None,
    cloud_calibration: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per calibration threshold, with the estimated two-phase accuracy.

    Accepted cases keep the edge's measured accuracy. Escalated cases get, in `optimistic_accuracy`, the cloud's
    overall accuracy (an upper bound: escalated cases are the hard ones), and in `estimated_accuracy` the cloud's
    accuracy on its own hardest cases of the same share when `cloud_calibration` is given (else the optimistic
    value). The benchmark measures the real value.
    """
    hard = hard_case_accuracy(cloud_calibration) if cloud_calibration else None
    rows = []
    for entry in sorted(calibration, key=lambda e: e["threshold"]):
        esc = float(entry["escalation_rate"])
        acc = entry.get("accepted_accuracy")
        optimistic = estimate = None
        if cloud_accuracy is not None:
            optimistic = cloud_accuracy if acc is None else (1 - esc) * float(acc) + esc * cloud_accuracy
            escalated = hard(esc) if hard else None
            if escalated is None:
                estimate = optimistic
            else:
                estimate = escalated if acc is None else (1 - esc) * float(acc) + esc * escalated
        rows.append(
            {
                "threshold": float(entry["threshold"]),
                "escalation_rate": esc,
                "edge_accepted_accuracy": None if acc is None else float(acc),
                "estimated_accuracy": estimate,
                "optimistic_accuracy": optimistic,
                "gap_points": None if estimate is None else round((cloud_accuracy - estimate) * 100, 3),
                "escalates_everything": float(entry["threshold"]) > INT8_MAX_CONFIDENCE,
            }
        )
    return rows


def choose_threshold(
    calibration: Sequence[dict[str, Any]],
    *,
    cloud_accuracy: float | None = None,
    target_accuracy_gap: float | None = None,
    max_escalation: float | None = None,
    cloud_calibration: Sequence[dict[str, Any]] | None = None,
) -> Choice:
    """Pick a threshold for a target.

    `target_accuracy_gap` (points, e.g. 0.5): the smallest escalation rate whose estimated two-phase accuracy is
    within that many points of `cloud_accuracy`. `max_escalation` (fraction, e.g. 0.2): the most accurate threshold
    that escalates at most that share. Both: the first among thresholds allowed by the second. When no threshold
    meets the target, the best trade-off within the escalation limit is returned with `target_met=False`.
    With `cloud_calibration` (the cloud manifest's table) the estimate is the conservative one of `trade_off_table`.
    """
    if target_accuracy_gap is None and max_escalation is None:
        raise ValueError("give target_accuracy_gap and/or max_escalation")
    if target_accuracy_gap is not None and cloud_accuracy is None:
        raise ValueError("target_accuracy_gap needs the cloud model's accuracy")
    table = [
        r for r in trade_off_table(calibration, cloud_accuracy, cloud_calibration) if not r["escalates_everything"]
    ]
    if not table:
        raise ValueError("the calibration table is empty")
    allowed = [r for r in table if max_escalation is None or r["escalation_rate"] <= max_escalation + 1e-12]
    if not allowed:
        allowed = [min(table, key=lambda r: r["escalation_rate"])]

    def accuracy(r: dict[str, Any]) -> float:
        if r["estimated_accuracy"] is not None:
            return r["estimated_accuracy"]
        return r["edge_accepted_accuracy"] if r["edge_accepted_accuracy"] is not None else 0.0

    if target_accuracy_gap is not None:
        floor = cloud_accuracy - target_accuracy_gap / 100
        good = [r for r in allowed if r["estimated_accuracy"] >= floor - 1e-12]
        if good:
            best = min(good, key=lambda r: (r["escalation_rate"], r["threshold"]))
            return _choice(best, cloud_accuracy, True, f"lowest escalation within {target_accuracy_gap} points")
        best = max(allowed, key=lambda r: (accuracy(r), -r["escalation_rate"]))
        return _choice(
            best, cloud_accuracy, False, f"no threshold is within {target_accuracy_gap} points; best trade-off"
        )
    best = max(allowed, key=lambda r: (accuracy(r), -r["escalation_rate"]))
    met = best["escalation_rate"] <= max_escalation + 1e-12
    return _choice(best, cloud_accuracy, met, f"most accurate with escalation <= {max_escalation:.0%}")


def _choice(row: dict[str, Any], cloud_accuracy: float | None, met: bool, reason: str) -> Choice:
    return Choice(
        threshold=row["threshold"],
        escalation_rate=row["escalation_rate"],
        edge_accepted_accuracy=row["edge_accepted_accuracy"],
        estimated_accuracy=row["estimated_accuracy"],
        cloud_accuracy=cloud_accuracy,
        target_met=met,
        reason=reason,
    )


def format_table(table: list[dict[str, Any]], chosen: float | None = None) -> str:
    """The trade-off table as aligned text (the chosen threshold marked with '>')."""

    def pct(v: float | None) -> str:
        return "     -" if v is None else f"{v * 100:6.2f}"

    lines = ["  threshold  escalated%  edge-accepted-acc%  est-two-phase-acc%  gap-to-cloud(pts)  optimistic-acc%"]
    for r in table:
        mark = ">" if chosen is not None and abs(r["threshold"] - chosen) < 1e-12 else " "
        gap = "      -" if r["gap_points"] is None else f"{r['gap_points']:7.2f}"
        lines.append(
            f"{mark} {r['threshold']:9.3f}  {pct(r['escalation_rate']):>10}  {pct(r['edge_accepted_accuracy']):>18}  "
            f"{pct(r['estimated_accuracy']):>18}  {gap:>17}  {pct(r['optimistic_accuracy']):>15}"
        )
    return "\n".join(lines)
