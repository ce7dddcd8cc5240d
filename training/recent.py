"""Recent labelled data for retraining (TensorFlow-free): the prediction log of a window joined with the labels by
key, a deterministic key-based holdout split, and the oversampling that makes recent rows count.

The readers are the evaluation pipeline's own (`liteserve.records.read_object`, `latest_per_key`,
`LabelStore`); this module only chooses which objects and rows belong to a retraining.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from liteserve.manifest import DEFAULT_SIGNATURE
from liteserve.records import BATCH_PREFIX, ONLINE_PREFIX, hour_path, latest_per_key, record_inputs
from liteserve.times import iso

from liteserve_dev.retraining import Rows

LOG_PREFIXES = (ONLINE_PREFIX, BATCH_PREFIX)
HOLDOUT_BUCKETS = 5  # sha256(key) % 5 == 0 -> holdout: 20 % of the recent labelled keys


@dataclass(frozen=True)
class DataWindow:
    """Predictions made in [start, end] (epoch seconds) are the recent data; `id` names the request it serves."""

    start: float
    end: float
    id: str

    @classmethod
    def ending(cls, end: float, hours: float, window_id: str) -> DataWindow:
        """The `hours` before `end`."""
        if hours <= 0:
            raise ValueError(f"the retraining window must be positive, got {hours} hours")
        return cls(float(end) - hours * 3600.0, float(end), window_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the candidate's lineage)."""
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "start_iso": iso(self.start),
            "end_iso": iso(self.end),
            "hours": round((self.end - self.start) / 3600.0, 6),
        }


def log_objects(keys: Iterable[str], window: DataWindow) -> list[str]:
    """The prediction-log objects that may hold records of the window: those whose hour folder
    (`predictions/{online,batch}/YYYY/MM/DD/HH/`) lies within an hour of it (Firehose files a record by arrival,
    as `Evaluator.load_predictions` assumes)."""
    low, high = hour_path(window.start - 3600), hour_path(window.end + 3600)
    out = []
    for key in keys:
        prefix = next((p for p in LOG_PREFIXES if key.startswith(p)), None)
        if prefix is not None and low <= key[len(prefix) : len(prefix) + 13] <= high:
            out.append(key)
    return sorted(out)


def join(
    records: Iterable[dict[str, Any]],
    labels: Mapping[str, str],
    model: str,
    window: DataWindow,
    inputs: Mapping[str, Mapping[str, Any]],
    class_names: list[str] | None,
) -> tuple[Rows, dict[str, int]]:
    """The window's `serving_default` predictions of `model`, latest per key, joined with their label by key.

    The served inputs (read with `record_inputs`, checked against `inputs`: the signature's `{name: {dtype,
    shape}}`) are the features; labels become class indices into `class_names` (classification) or float targets
    (`class_names` None: regression). Returns the rows (sorted by key, so the result does not depend on listing
    order) and counts of what was left out and why."""
    counts = {"records": 0, "other_models": 0, "outside_window": 0, "other_signatures": 0}
    kept = []
    for rec in records:
        counts["records"] += 1
        if rec.get("model") != model:
            counts["other_models"] += 1
        elif not window.start <= (rec.get("time") or 0) <= window.end:
            counts["outside_window"] += 1
        elif (rec.get("signature") or DEFAULT_SIGNATURE) != DEFAULT_SIGNATURE:
            counts["other_signatures"] += 1
        else:
            kept.append(rec)
    latest = latest_per_key(kept)
    index = {name: i for i, name in enumerate(class_names)} if class_names is not None else None
    counts.update(predictions=len(latest), unkeyed=0, unlabelled=0, unknown_label=0, bad_features=0)
    names = list(inputs)
    keys: list[str] = []
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    ys: list[float] = []
    for rec in latest:
        if rec.get("key") is None:
            counts["unkeyed"] += 1
            continue
        key = str(rec["key"])
        label = labels.get(key)
        y = None if label is None else _label(label, index)
        row = _inputs(rec, inputs)
        if label is None:
            counts["unlabelled"] += 1
        elif y is None:
            counts["unknown_label"] += 1
        elif row is None:
            counts["bad_features"] += 1
        else:
            keys.append(key)
            ys.append(y)
            for n in names:
                values[n].append(row[n])
    order = sorted(range(len(keys)), key=keys.__getitem__)
    arrays = {}
    for n in names:
        spec = inputs[n]
        trailing = [max(d, 0) for d in spec["shape"][1:]]
        arrays[n] = np.stack([values[n][i] for i in order]) if order else np.zeros([0, *trailing], dtype=spec["dtype"])
    rows = Rows(
        arrays,
        np.asarray([ys[i] for i in order], dtype=np.int64 if index is not None else np.float64),
        [keys[i] for i in order],
    )
    counts["labelled"] = len(rows)
    return rows, counts


def _label(label: str, index: dict[str, int] | None) -> float | None:
    if index is not None:
        return index.get(label)
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _inputs(rec: dict[str, Any], inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray] | None:
    """The record's values per input, with the input's dtype and trailing shape; None when any does not fit."""
    try:
        got = record_inputs(rec, list(inputs))
        out = {n: np.asarray(got[n], dtype=spec["dtype"]) for n, spec in inputs.items()}
    except (ValueError, TypeError, KeyError):
        return None
    for n, spec in inputs.items():
        shape = spec["shape"][1:]
        if out[n].ndim != len(shape) or any(d >= 0 and a != d for a, d in zip(out[n].shape, shape, strict=True)):
            return None
        if out[n].dtype.kind == "f" and not np.isfinite(out[n]).all():
            return None
    return out


def is_holdout(key: str, buckets: int = HOLDOUT_BUCKETS) -> bool:
    """Whether a key belongs to the holdout: sha256(key) % buckets == 0 (stable across runs and machines)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % buckets == 0


def split_holdout(rows: Rows, buckets: int = HOLDOUT_BUCKETS) -> tuple[Rows, Rows]:
    """(train, holdout) by key; the holdout is never trained on."""
    mask = np.asarray([is_holdout(k, buckets) for k in rows.keys or []], dtype=bool)
    return rows.take(~mask), rows.take(mask)


def oversample_factor(n_original: int, n_recent: int, recent_share: float) -> int:
    """The smallest k >= 1 for which k copies of the recent rows make at least `recent_share` of the training set
    (original rows + k * recent rows)."""
    if not 0.0 <= recent_share < 1.0:
        raise ValueError(f"recent share must be in [0, 1), got {recent_share}")
    if n_recent <= 0 or recent_share == 0.0:
        return 1
    # k * r / (o + k * r) >= s  <=>  k >= s * o / ((1 - s) * r)
    return max(1, math.ceil(recent_share * n_original / ((1.0 - recent_share) * n_recent) - 1e-9))
