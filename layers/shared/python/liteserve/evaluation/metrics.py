"""Classification and regression metrics of labelled predictions (numpy only: see `drift` for why not scipy/sklearn)."""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-7


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class (0 where undefined, as sklearn's zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def log_loss(probs: np.ndarray, y_true: np.ndarray, eps: float = EPS) -> float:
    """Mean negative log-likelihood of the true class (rows renormalized, clipped to [eps, 1])."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / np.clip(p.sum(axis=1, keepdims=True), eps, None)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y_true)), y_true], eps, 1.0))))


def calibration(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error (top-label confidence, equal-width bins) and the reliability table."""
    conf = np.max(probs, axis=1)
    correct = np.argmax(probs, axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += n / len(conf) * abs(acc - mean_conf)
            bounds = [float(edges[b]), float(edges[b + 1])]
            table.append({"bin": bounds, "n": n, "accuracy": acc, "confidence": mean_conf})
    return {"ece": float(ece), "bins": table}


def classification_report(
    y_true: np.ndarray, probs: np.ndarray | None, y_pred: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Every headline metric of one group of labelled predictions."""
    n_classes = len(labels)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    pc = per_class(cm)
    present = pc["support"] > 0
    report: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else None,
        # Macro over the classes present in the labels (sklearn's default averages over labels seen in either).
        "macro_f1": float(pc["f1"][present | (cm.sum(axis=0) > 0)].mean()) if len(y_true) else None,
        "per_class_recall": {labels[i]: float(pc["recall"][i]) for i in range(n_classes) if present[i]},
        "confusion_matrix": cm.tolist(),
        "label_distribution": np.bincount(y_true, minlength=n_classes).tolist(),
        "prediction_distribution": np.bincount(y_pred, minlength=n_classes).tolist(),
    }
    if probs is not None and len(y_true):
        report["log_loss"] = log_loss(probs, y_true)
        cal = calibration(probs, y_true)
        report["ece"] = cal["ece"]
        report["calibration"] = cal["bins"]
    return report


def residual_histogram(residuals: np.ndarray, bins: int = 12) -> dict[str, list]:
    """Counts of residuals (prediction - label) on equal-width edges symmetric around 0."""
    r = np.asarray(residuals, dtype=np.float64)
    top = float(np.max(np.abs(r))) if len(r) else 0.0
    top = top if top > 0 else 1.0
    counts, edges = np.histogram(r, bins=bins, range=(-top, top))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R² (None for fewer than two labels or constant labels), the mean error (bias) and the residual
    histogram of one group of labelled predictions."""
    y = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(y_pred, dtype=np.float64) - y
    n = len(y)
    if not n:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "mean_error": None, "residuals": None}
    mse = float(np.mean(err**2))
    var = float(np.var(y))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - mse / var if n > 1 and var > 0 else None,
        "mean_error": float(np.mean(err)),
        "label_mean": float(np.mean(y)),
        "prediction_mean": float(np.mean(y_pred)),
        "residuals": residual_histogram(err),
    }
