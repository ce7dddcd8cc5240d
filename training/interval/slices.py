"""Accuracy of successive fixed-width time slices after the cut-off."""

from __future__ import annotations

from typing import Any

import numpy as np
from liteserve.times import iso

from training.interval.rows import DAY, InputError


def slice_accuracy(
    t: np.ndarray, correct: np.ndarray, cutoff: float, width: float, seen: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Accuracy of each `width`-second slice from `cutoff` to the last row; `t_days` is the slice midpoint in days
    after the cutoff. `seen` (optional bool per row) marks inputs that also occur in the training rows."""
    t = np.asarray(t, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    after = t >= cutoff
    if not after.any():
        raise InputError(f"no rows at or after the cutoff {iso(cutoff)} (last row {iso(float(t.max()))})")
    idx = np.floor((t[after] - cutoff) / width).astype(np.int64)
    ok = correct[after]
    seen_after = np.asarray(seen, dtype=bool)[after] if seen is not None else None
    out = []
    for i in range(int(idx.max()) + 1):
        mask = idx == i
        n = int(mask.sum())
        start = cutoff + i * width
        row: dict[str, Any] = {
            "slice": i,
            "start": iso(start),
            "t_days": (i + 0.5) * width / DAY,
            "n": n,
            "accuracy": float(ok[mask].mean()) if n else None,
        }
        if seen_after is not None:
            row["seen_share"] = float(seen_after[mask].mean()) if n else None
        out.append(row)
    return out
