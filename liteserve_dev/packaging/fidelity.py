"""How close the packaged model is to its source on the data, and whether that is close enough (numpy only).

classification: top-1 agreement and the largest |Δ probability|; regression: error relative to the typical size of
the source's score; embedding: cosine similarity. Every other output of every kept signature: relative error
(‖Δ‖ / ‖source‖ over the data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from liteserve_dev.packaging import tasks


@dataclass(frozen=True)
class Bounds:
    """The bar a packaged model must clear against its source."""

    min_agreement: float = 0.99  # classification: share of rows with the same top-1 class
    max_prob_delta: float = 0.1  # classification: largest |Δ probability| over every row and class
    max_rel_error: float = 0.05  # regression: largest |Δ score| / mean |source score|
    min_cosine: float = 0.98  # embedding: smallest cosine similarity of a row's vectors
    max_output_error: float = 0.1  # any other output: ‖Δ‖ / ‖source‖
    max_accuracy_drop: float | None = None  # with labels: source accuracy minus packaged accuracy

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the manifest)."""
        return asdict(self)


def classification(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], task: dict[str, Any]) -> dict[str, float]:
    """Top-1 agreement and max / mean |Δ probability| (probabilities only when the model has them)."""
    out = {"top1_agreement": float(np.mean(tasks.predicted_class(task, ref) == tasks.predicted_class(task, got)))}
    p_ref, p_got = tasks.probabilities(task, ref), tasks.probabilities(task, got)
    if p_ref is not None and p_got is not None:
        delta = np.abs(p_ref - p_got)
        out["max_abs_prob_delta"] = float(delta.max())
        out["mean_abs_prob_delta"] = float(delta.mean())
    if task.get("class_id") and p_got is not None:
        ids = np.asarray(got[task["class_id"]]).reshape(-1)
        out["class_id_matches_argmax"] = float(np.mean(ids == np.argmax(p_got, axis=1)))
    return out


def regression(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Max / mean |Δ| relative to the mean |source score| (robust to targets near zero), and max |Δ|."""
    r, g = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    delta = np.abs(r - g)
    scale = float(np.mean(np.abs(r))) or 1.0
    return {
        "max_rel_error": float(delta.max()) / scale,
        "mean_rel_error": float(delta.mean()) / scale,
        "max_abs_error": float(delta.max()),
    }


def embedding(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Smallest and mean cosine similarity of the row vectors, and the relative error."""
    r = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    g = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    both_zero = norms == 0
    cos = np.where(both_zero, 1.0, np.sum(r * g, axis=1) / np.where(both_zero, 1.0, norms))
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "rel_error": relative_error(r, g)}


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    """‖got − ref‖ / ‖ref‖ over all values (0 when both are zero)."""
    r, g = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    norm = float(np.linalg.norm(r))
    diff = float(np.linalg.norm(g - r))
    return diff / norm if norm > 0 else diff


def task_numbers(task: dict[str, Any], ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """The task's fidelity numbers for its signature's outputs."""
    if task["kind"] == "classification":
        return classification(ref, got, task)
    if task["kind"] == "regression":
        return regression(ref[task["score"]], got[task["score"]])
    return embedding(ref[task["embedding"]], got[task["embedding"]])


def problems(task: dict[str, Any], numbers: dict[str, float], bounds: Bounds) -> list[str]:
    """Every bound the task's numbers miss, as readable sentences (empty: faithful enough)."""
    checks = {
        "classification": [
            ("top1_agreement", ">=", bounds.min_agreement, "top-1 agreement"),
            ("max_abs_prob_delta", "<=", bounds.max_prob_delta, "max |Δprob|"),
        ],
        "regression": [("max_rel_error", "<=", bounds.max_rel_error, "max relative error")],
        "embedding": [("min_cosine", ">=", bounds.min_cosine, "min cosine similarity")],
    }[task["kind"]]
    out = []
    for key, op, bound, label in checks:
        value = numbers.get(key)
        if value is not None and not (value >= bound if op == ">=" else value <= bound):
            out.append(f"{label} {value:.4f} (bound {op} {bound})")
    return out
