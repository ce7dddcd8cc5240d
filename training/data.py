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

from liteserve_dev.packaging import baseline
from liteserve_dev.packaging.metrics import accuracy as accuracy
from liteserve_dev.packaging.metrics import calibration as calibration
from liteserve_dev.packaging.metrics import log_loss as log_loss

SEED = 42
TEST_SIZE = 0.2
N_FEATURES = 64
LABELS: list[str] = [str(i) for i in range(10)]
FEATURE_NAMES: list[str] = [f"px_{r}_{c}" for r in range(8) for c in range(8)]
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
    """Per-feature statistics (the packaging baseline's) with the digits' names and fixed [0, 1] histogram edges."""
    return baseline.feature_stats(
        x, names if names is not None else FEATURE_NAMES, edges if edges is not None else HIST_EDGES
    )


def training_stats(x: np.ndarray, y: np.ndarray, n_classes: int = len(LABELS)) -> dict[str, Any]:
    """Return the manifest's `training_stats` block: row count, label counts and per-feature statistics."""
    return {
        "n": len(y),
        "label_counts": [int(c) for c in np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)],
        "features": feature_stats(x),
    }
