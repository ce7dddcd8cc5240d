"""Train on the rows before the cut-off, score every later slice and estimate the interval (`run`); the float Keras
trainer of `training.keras_model` (TensorFlow, `.venv-train`, imported only when it trains)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from liteserve.times import iso

from training import data
from training.interval.decay import estimate_interval
from training.interval.rows import DAY, InputError, Rows
from training.interval.slices import slice_accuracy

Trainer = Callable[[np.ndarray, np.ndarray], tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]]


def keras_trainer(spec_name: str = "digits", epochs: int | None = None) -> Trainer:
    """Train the float Keras model of `training.specs.SPECS[spec_name]` (TensorFlow, `.venv-train`), optionally
    with at most `epochs` epochs instead of the spec's."""

    def trainer(x: np.ndarray, y: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
        from training.keras_model import train
        from training.specs import SPECS

        if spec_name not in SPECS:
            raise InputError(f"--model {spec_name!r}: expected one of {', '.join(sorted(SPECS))}")
        spec = SPECS[spec_name] if epochs is None else replace(SPECS[spec_name], epochs=epochs)
        export_model, info = train(spec, x, y, len(data.LABELS))

        def predict(rows: np.ndarray) -> np.ndarray:
            logits, _ = export_model.predict(np.asarray(rows, dtype=np.float32), batch_size=4096, verbose=0)
            return np.argmax(logits, axis=1)

        return predict, {"model": spec_name, "kind": "float Keras", **info}

    return trainer


def run(
    rows: Rows,
    trainer: Trainer,
    *,
    cutoff: float,
    slice_seconds: float,
    tolerated_drop: float,
    min_rows: int = 30,
    train_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train on the rows before `cutoff` (or on `train_rows`), score every slice after it and estimate the interval.

    Returns the JSON summary; slices with fewer than `min_rows` rows are listed but not fitted."""
    before = rows.t < cutoff
    x_tr, y_tr = (rows.x[before], rows.y[before]) if train_rows is None else train_rows
    counts = np.bincount(y_tr, minlength=len(data.LABELS))
    if len(y_tr) == 0 or counts.min() < 2:
        raise InputError(
            f"{len(y_tr)} training rows before {iso(cutoff)}; every class needs at least 2 (per class: "
            f"{counts.tolist()}) — move the cutoff later"
        )
    t0 = time.perf_counter()
    predict, train_info = trainer(x_tr, y_tr)
    t1 = time.perf_counter()
    after = rows.t >= cutoff
    correct = np.zeros(len(rows.y), dtype=bool)
    if after.any():
        correct[after] = predict(rows.x[after]) == rows.y[after]
    seen_inputs = {r.tobytes() for r in np.ascontiguousarray(x_tr, dtype=np.float32)}
    seen = np.array([r.tobytes() in seen_inputs for r in np.ascontiguousarray(rows.x, dtype=np.float32)])
    t2 = time.perf_counter()
    slices = slice_accuracy(rows.t, correct, cutoff, slice_seconds, seen)
    for s in slices:
        s["used"] = s["n"] >= min_rows
    used = [s for s in slices if s["used"]]
    horizon = len(slices) * slice_seconds / DAY
    estimate = estimate_interval(
        np.array([s["t_days"] for s in used]),
        np.array([s["accuracy"] for s in used]),
        np.array([s["n"] for s in used]),
        tolerated_drop,
        horizon,
        slice_seconds / DAY,
    )
    t3 = time.perf_counter()
    return {
        "data": {
            "rows": len(rows.y),
            "first": iso(float(rows.t.min())),
            "last": iso(float(rows.t.max())),
            "after_cutoff": int(after.sum()),
        },
        "cutoff": iso(cutoff),
        "slice_seconds": slice_seconds,
        "min_rows": min_rows,
        "train": {"rows": len(y_tr), **train_info},
        "slices": slices,
        "estimate": estimate,
        "seconds": {"train": round(t1 - t0, 2), "score": round(t2 - t1, 2), "fit": round(t3 - t2, 3)},
    }
