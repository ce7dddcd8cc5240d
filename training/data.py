"""Digits data set, held-out split and training statistics (numpy + scikit-learn only, no TensorFlow).

Tests and serving-side tools import this module to reproduce the exact held-out split the committed models were
evaluated on, and to compute the same per-feature statistics that drift checks compare against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 42
TEST_SIZE = 0.2
N_FEATURES = 64
LABELS: list[str] = [str(i) for i in range(10)]
FEATURE_NAMES: list[str] = [f"px_{r}_{c}" for r in range(8) for c in range(8)]
QUANTILES: dict[str, float] = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
HIST_EDGES: list[float] = [round(float(e), 10) for e in np.linspace(0.0, 1.0, 11)]
DATA_INFO: dict[str, Any] = {
    "source": "sklearn.datasets.load_digits",
    "scale": "x/16",
    "seed": SEED,
    "test_size": TEST_SIZE,
}


@dataclass(frozen=True)
class Split:
    """A seeded, stratified train/held-out split of the digits data (features float32 in [0, 1])."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_xy() -> tuple[np.ndarray, np.ndarray]:
    """Return all digits as (x float32 [n, 64] scaled x/16 into [0, 1], y int64 [n])."""
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return x, y


def split(seed: int = SEED, test_size: float = TEST_SIZE) -> Split:
    """Return the seeded stratified held-out split used to train and evaluate the committed models."""
    x, y = load_xy()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return Split(x_tr, y_tr, x_te, y_te)


def data_info(s: Split) -> dict[str, Any]:
    """Return the manifest's `data` block for split `s`."""
    return {**DATA_INFO, "n_train": len(s.y_train), "n_test": len(s.y_test)}


def feature_stats(
    x: np.ndarray, names: list[str] | None = None, edges: list[float] | None = None
) -> list[dict[str, Any]]:
    """Per-feature mean/std/min/max, quantiles and a histogram on fixed edges (values outside are clipped in)."""
    names = names if names is not None else FEATURE_NAMES
    edges_arr = np.asarray(edges if edges is not None else HIST_EDGES, dtype=np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    if x64.ndim != 2 or x64.shape[1] != len(names):
        raise ValueError(f"expected x of shape [n, {len(names)}], got {list(x64.shape)}")
    qs = np.quantile(x64, list(QUANTILES.values()), axis=0)
    clipped = np.clip(x64, edges_arr[0], edges_arr[-1])
    out: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        counts, _ = np.histogram(clipped[:, j], bins=edges_arr)
        out.append(
            {
                "name": name,
                "mean": float(x64[:, j].mean()),
                "std": float(x64[:, j].std()),
                "min": float(x64[:, j].min()),
                "max": float(x64[:, j].max()),
                "quantiles": {k: float(qs[i, j]) for i, k in enumerate(QUANTILES)},
                "histogram": {"edges": [float(e) for e in edges_arr], "counts": [int(c) for c in counts]},
            }
        )
    return out


def training_stats(x: np.ndarray, y: np.ndarray, n_classes: int = len(LABELS)) -> dict[str, Any]:
    """Return the manifest's `training_stats` block: row count, label counts and per-feature statistics."""
    return {
        "n": len(y),
        "label_counts": [int(c) for c in np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)],
        "features": feature_stats(x),
    }


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
