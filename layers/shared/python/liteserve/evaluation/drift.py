"""Data drift of served inputs against a model's training statistics (the manifest's per-feature histograms).

The manifest keeps, per feature, a histogram on fixed edges, not the training rows, so every statistic is computed
on those bins: PSI, Jensen-Shannon distance (base 2, in [0, 1]) and a binned two-sample Kolmogorov-Smirnov
statistic (largest gap between the two binned CDFs, a lower bound of the exact D) with its asymptotic p-value.

numpy only: scipy would add ~110 MB to the Lambda package (the project's budget is 80 MB for everything), so the
three formulas are written out here and the unit tests check them against scipy.spatial.distance.jensenshannon and
scipy.stats (kstwobign) in the dev venv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SMOOTH = 1e-4  # added to every bin's share so an empty bin does not make PSI infinite


@dataclass(frozen=True)
class Thresholds:
    """When a feature counts as drifted (either bound exceeded), per feature or by default; the dataset rule."""

    psi: float = 0.2
    js: float = 0.2  # distance, not divergence: 0.1 is within sampling noise of a few hundred rows on 10 bins
    per_feature: dict[str, dict[str, float]] = field(default_factory=dict)
    dataset_share: float = 0.25  # dataset drift when at least this share of features drifted
    prediction_psi: float = 0.2
    min_rows: int = 200  # fewer served rows than this: drift is not judged

    def for_feature(self, name: str) -> tuple[float, float]:
        """(psi, js) bounds of one feature."""
        own = self.per_feature.get(name, {})
        return float(own.get("psi", self.psi)), float(own.get("js", self.js))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Thresholds:
        """From the policy document's `drift` block (unknown names are refused)."""
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown drift setting(s) {sorted(unknown)}")
        return cls(**doc)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into the report)."""
        return dict(self.__dict__)


def shares(counts: np.ndarray, smooth: float = SMOOTH) -> np.ndarray:
    """Smoothed proportions of histogram counts."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    p = c / total if total > 0 else np.full_like(c, 1.0 / len(c))
    p = p + smooth
    return p / p.sum()


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    p, q = shares(expected), shares(actual)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2) of two count vectors."""
    p, q = _norm(expected), _norm(actual)
    m = (p + q) / 2
    div = 0.5 * _kl2(p, m) + 0.5 * _kl2(q, m)
    return float(np.sqrt(max(div, 0.0)))


def _norm(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    return c / c.sum()


def _kl2(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution (limit of sqrt(n) D_n), as scipy.stats.kstwobign.sf."""
    if x <= 0:
        return 1.0
    if x < 0.04:  # the alternating series converges too slowly here; the value is 1 to double precision
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * x**2)), 0.0, 1.0))


def binned_ks(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample KS test on binned data."""
    n, m = float(np.sum(expected)), float(np.sum(actual))
    d = float(np.max(np.abs(np.cumsum(_norm(expected)) - np.cumsum(_norm(actual)))))
    return d, kolmogorov_sf(d * np.sqrt(n * m / (n + m)))


def histogram(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of values on fixed edges, values outside clipped into the end bins (as training_stats does)."""
    e = np.asarray(edges, dtype=np.float64)
    counts, _ = np.histogram(np.clip(values, e[0], e[-1]), bins=e)
    return counts


def feature_drift(
    x: np.ndarray, training_features: list[dict[str, Any]], thresholds: Thresholds, rows: int | None = None
) -> dict[str, Any]:
    """Per-feature PSI, JS distance, binned KS and served mean vs training mean; the dataset-level verdict.

    `rows` is the number of served instances when `x` holds several values of each (the channels of an image):
    drift is judged on instances, not values."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(training_features):
        raise ValueError(f"inputs have shape {list(x.shape)}; the manifest describes {len(training_features)} features")
    rows = len(x) if rows is None else rows
    judged = rows >= thresholds.min_rows
    features = []
    for j, stats in enumerate(training_features):
        hist = stats["histogram"]
        expected = np.asarray(hist["counts"], dtype=np.float64)
        actual = histogram(x[:, j], hist["edges"])
        psi_max, js_max = thresholds.for_feature(stats["name"])
        p, js = psi(expected, actual), js_distance(expected, actual) if len(x) else 0.0
        d, p_value = binned_ks(expected, actual) if len(x) else (0.0, 1.0)
        features.append(
            {
                "name": stats["name"],
                "psi": p,
                "js": js,
                "ks_d": d,
                "ks_p": p_value,
                "mean": float(x[:, j].mean()) if len(x) else None,
                "training_mean": stats["mean"],
                "counts": actual.tolist(),
                "thresholds": {"psi": psi_max, "js": js_max},
                "drifted": judged and (p > psi_max or js > js_max),
            }
        )
    drifted = [f["name"] for f in features if f["drifted"]]
    share = len(drifted) / len(features) if features else 0.0
    return {
        "rows": rows,
        "judged": judged,
        "features": features,
        "drifted_features": drifted,
        "drifted_share": share,
        "dataset_drift": judged and share >= thresholds.dataset_share,
    }


def prediction_drift(predicted: np.ndarray, training_label_counts: list[int], thresholds: Thresholds) -> dict[str, Any]:
    """Class distribution of the predictions against the training labels' distribution."""
    actual = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=len(training_label_counts))
    expected = np.asarray(training_label_counts, dtype=np.float64)
    p = psi(expected, actual)
    return {
        "rows": int(actual.sum()),
        "psi": p,
        "js": js_distance(expected, actual) if actual.sum() else 0.0,
        "distribution": actual.tolist(),
        "training_distribution": [int(c) for c in training_label_counts],
        "drifted": bool(actual.sum() >= thresholds.min_rows and p > thresholds.prediction_psi),
    }


def value_columns(x: np.ndarray, baseline: dict[str, Any], name: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """An input's served values as columns matching its packaged statistics, and those statistics named.

    A flat input (`features`): one column per feature, [rows, F]. A higher-rank input (`tensor`): one column per
    channel (last axis; every position of every row is a value) when packaging recorded channels, else all values
    as one column named `<input>[*]`."""
    x = np.asarray(x, dtype=np.float64)
    if baseline["kind"] == "features":
        features = baseline["features"]
        return (x.reshape(len(x), -1) if len(x) else np.zeros((0, len(features)))), features
    channels = baseline.get("channels")
    if channels and x.ndim >= 2 and x.shape[-1] == len(channels):
        named = [{"name": f"{name}[..., {c}]", **stats} for c, stats in enumerate(channels)]
        return x.reshape(-1, x.shape[-1]), named
    return x.reshape(-1, 1), [{"name": f"{name}[*]", **baseline["summary"]}]


def inputs_drift(
    arrays: dict[str, np.ndarray], baselines: dict[str, dict[str, Any]], thresholds: Thresholds, rows: int
) -> dict[str, Any]:
    """Drift of every input that has a packaged baseline (see `value_columns`), per input and over all of them.

    Each input is judged on its own features (`dataset_drift` when at least `dataset_share` of them drifted);
    the model's dataset drift is any input's and its `drifted_share` the largest input's share. `features` lists
    every input's features, `inputs` the verdicts."""
    per_input: dict[str, Any] = {}
    features: list[dict[str, Any]] = []
    for name, x in arrays.items():
        if name not in baselines:
            per_input[name] = {"kind": None, "rows": len(x), "judged": False, "reason": "no baseline in the manifest"}
            continue
        values, stats = value_columns(x, baselines[name], name)
        result = feature_drift(values, stats, thresholds, rows=len(x))
        for f in result["features"]:
            f["input"] = name
        features.extend(result["features"])
        per_input[name] = {"kind": baselines[name]["kind"], **{k: v for k, v in result.items() if k != "features"}}
    shares = [i["drifted_share"] for i in per_input.values() if "drifted_share" in i]
    return {
        "rows": rows,
        "judged": rows >= thresholds.min_rows and any(i["judged"] for i in per_input.values()),
        "features": features,
        "drifted_features": [f["name"] for f in features if f["drifted"]],
        "drifted_share": max(shares, default=0.0),  # the most drifted input's share: the one that decides
        "dataset_drift": any(i.get("dataset_drift") for i in per_input.values()),
        "drifted_inputs": [n for n, i in per_input.items() if i.get("dataset_drift")],
        "inputs": per_input,
    }


def output_drift(
    values: np.ndarray, baseline: dict[str, Any] | None, thresholds: Thresholds, name: str
) -> dict[str, Any]:
    """Distribution of one served output against its packaged baseline (`output_stats` of packaging):
    value counts, per-column histograms (the worst column decides) or, for wide outputs, the histogram of the row
    norms (else of all values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(len(v), -1) if len(v) else np.zeros((0, 1))
    out: dict[str, Any] = {"output": name, "rows": len(v), "psi": None, "js": None, "drifted": False}
    if baseline is None:
        return {**out, "kind": None, "reason": f"the manifest has no baseline of output {name!r}"}
    kind = baseline["kind"]
    if kind == "counts":
        known = [int(x) for x in baseline["values"]]
        index = {x: i for i, x in enumerate(known)}
        actual = np.zeros(len(known) + 1, dtype=np.int64)  # last bin: values packaging never saw
        for x in v[:, 0].astype(np.int64):
            actual[index.get(int(x), len(known))] += 1
        expected = np.asarray([*baseline["counts"], 0], dtype=np.float64)
        hists = [(f"{name}", expected, actual, None)]
    elif kind == "columns":
        hists = []
        for j, stats in enumerate(baseline["columns"]):
            col = v[:, j] if j < v.shape[1] else np.zeros(0)
            h = stats["histogram"]
            hists.append((f"{name}[{j}]", np.asarray(h["counts"], dtype=np.float64), histogram(col, h["edges"]), h))
    else:
        stats = baseline.get("row_norm")
        served = np.linalg.norm(v, axis=1) if stats is not None else v.ravel()
        h = (stats or baseline["summary"])["histogram"]
        label = f"|{name}|" if stats is not None else f"{name}[*]"
        hists = [(label, np.asarray(h["counts"], dtype=np.float64), histogram(served, h["edges"]), h)]
    parts = []
    for label, expected, actual, h in hists:
        total = int(actual.sum())
        part = {
            "name": label,
            "psi": psi(expected, actual),
            "js": js_distance(expected, actual) if total else 0.0,
            "distribution": actual.tolist(),
            "training_distribution": [int(c) for c in expected],
        }
        if h is not None:
            part["edges"] = h["edges"]
        parts.append(part)
    worst = max(parts, key=lambda p: p["psi"])
    return {
        **out,
        **worst,
        "kind": kind,
        "output": name,
        "columns": parts if len(parts) > 1 else None,
        "drifted": bool(len(v) >= thresholds.min_rows and worst["psi"] > thresholds.prediction_psi),
    }
