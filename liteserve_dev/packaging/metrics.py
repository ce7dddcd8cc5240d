"""Task metrics of a model's outputs against labels (numpy only): accuracy, log loss, the calibration table, errors."""

from __future__ import annotations

import numpy as np


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of probability rows against integer labels."""
    return float(np.mean(np.argmax(probs, axis=1) == y))


def log_loss(probs: np.ndarray, y: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped to [eps, 1])."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(y)), y], eps, 1.0)
    return float(-np.mean(np.log(p)))


def calibration(
    probs: np.ndarray, y: np.ndarray, thresholds: list[float] | None = None
) -> list[dict[str, float | int | None]]:
    """Confidence calibration: for each threshold on max-probability, what is accepted locally and how well.

    A case is *accepted* when its max-probability >= threshold, otherwise it *escalates*. Each row holds the
    accepted count, the accuracy of the accepted cases (None if none) and the escalation rate.
    """
    if thresholds is None:
        thresholds = [round(t, 2) for t in np.arange(0.0, 1.0, 0.05)] + [0.96, 0.97, 0.98, 0.99]
    conf = np.max(probs, axis=1)
    correct = np.argmax(probs, axis=1) == y
    rows: list[dict[str, float | int | None]] = []
    for t in thresholds:
        acc_mask = conf >= t
        n_acc = int(acc_mask.sum())
        rows.append(
            {
                "threshold": float(t),
                "accepted": n_acc,
                "accepted_accuracy": float(correct[acc_mask].mean()) if n_acc else None,
                "escalation_rate": round(1.0 - n_acc / len(y), 6),
            }
        )
    return rows


def regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and R² of predictions [n] or [n, 1] against targets [n]."""
    p = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)[:, 0]
    err = p - np.asarray(y, dtype=np.float64)
    var = float(np.var(y))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": 1.0 - float(np.mean(err**2)) / var if var > 0 else None,
    }
