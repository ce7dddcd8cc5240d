"""Retraining-interval estimate (issue 5 §6; *Machine Learning Design Patterns*, "Continued Model Evaluation"):
train on time-stamped labelled rows up to a cut-off, score successive later slices, fit how accuracy decays and
report how long until the fitted accuracy has fallen by a tolerated drop.

    python -m training.interval --generate --days 30 --drift-start 10        # in-process drift scenario
    python -m training.interval --data /tmp/scenario --cutoff +7d --slice 1d --tolerated-drop 0.02
    python -m training.interval --data rows.jsonl                             # {key, t|time, x, label} per line

The estimate uses the float Keras model of `training.keras_model` (same spec and seed as `make model`): int8
conversion tracks float accuracy within 0.5 points (checked by `training.build`), well inside any tolerated drop,
so converting each trial model would only add time. Training needs TensorFlow (`.venv-train`); loading, slicing,
fitting (numpy + scipy) and the SVG plot do not.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from liteserve.times import iso
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import linregress

from training import data

DAY = 86400.0
ROOT = Path(__file__).resolve().parents[1]
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


class InputError(ValueError):
    """Bad data or arguments; the CLI prints the message and exits with status 2."""


@dataclass(frozen=True)
class Rows:
    """Time-stamped labelled rows: epoch seconds, features float32 [n, F], class indices."""

    keys: list[str]
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray


# ---------------------------------------------------------------------------------------------------- parsing
def parse_duration(text: str) -> float:
    """Seconds in '1d', '12h', '90m', '3600s', '1.5w' or a bare number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"duration {text!r}: expected a positive number with an optional unit s, m, h, d or w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_time(value: Any) -> float:
    """Epoch seconds from a number, a numeric string or an ISO 8601 date/time (naive means UTC)."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"time {value!r}: expected epoch seconds or an ISO 8601 date/time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InputError(f"time {value!r} is not finite")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"time {text!r}: expected epoch seconds or an ISO 8601 date/time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def resolve_cutoff(spec: str | None, t: np.ndarray) -> float:
    """The cut-off in epoch seconds: '+10d' after the first row's UTC midnight, an absolute time, or (None) the
    first third of the data's days."""
    origin = math.floor(float(np.min(t)) / DAY) * DAY
    if spec is None:
        span_days = max(1, math.ceil((float(np.max(t)) - origin) / DAY))
        return origin + max(1, span_days // 3) * DAY
    if spec.strip().startswith("+"):
        return origin + parse_duration(spec.strip()[1:])
    return parse_time(spec)


def _label_index(value: Any, where: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or text not in data.LABELS:
        raise InputError(f"{where}: label {value!r} is not one of {', '.join(data.LABELS)}")
    return data.LABELS.index(text)


def _features(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != data.N_FEATURES:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise InputError(f"{where}: 'x' must be a list of {data.N_FEATURES} numbers, got {got}")
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'x' must hold numbers only") from None
    if not np.all(np.isfinite(x)):
        raise InputError(f"{where}: 'x' holds a non-finite value")
    return x.astype(np.float32)


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            yield n, doc


def _rows(keys: list[str], t: list[float], x: list[np.ndarray], y: list[int], source: str) -> Rows:
    if not keys:
        raise InputError(f"{source}: no rows")
    order = np.argsort(np.asarray(t), kind="stable")
    return Rows(
        [keys[i] for i in order],
        np.asarray(t, dtype=np.float64)[order],
        np.stack(x)[order],
        np.asarray(y, dtype=np.int64)[order],
    )


def load_jsonl(path: Path) -> Rows:
    """Rows from a JSONL (optionally .gz) file of `{"key", "t" | "time", "x", "label"}` objects."""
    keys: list[str] = []
    t: list[float] = []
    x: list[np.ndarray] = []
    y: list[int] = []
    seen: dict[str, int] = {}
    for n, doc in _json_lines(path):
        where = f"{path}:{n}"
        missing = [f for f in ("key", "x", "label") if f not in doc] + ([] if "t" in doc or "time" in doc else ["t"])
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        key = str(doc["key"])
        if key in seen:
            raise InputError(f"{where}: key {key!r} repeats line {seen[key]}")
        seen[key] = n
        try:
            stamp = parse_time(doc.get("t", doc.get("time")))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        keys.append(key)
        t.append(stamp)
        x.append(_features(doc["x"], where))
        y.append(_label_index(doc["label"], where))
    return _rows(keys, t, x, y, str(path))


def load_scenario_dir(path: Path) -> Rows:
    """Rows from a `liteserve_dev.scenario` folder: time and label from timeline.jsonl, inputs by key from
    requests/**/*.json (TF Serving keyed bodies) and batch/*.jsonl."""
    timeline = path / "timeline.jsonl"
    if not timeline.is_file():
        raise InputError(f"{path}: not a scenario folder (no timeline.jsonl)")
    inputs: dict[str, np.ndarray] = {}
    for file in sorted((path / "requests").rglob("*.json")):
        try:
            body = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}: not JSON ({exc.msg})") from None
        for i, inst in enumerate(body.get("instances", []) if isinstance(body, dict) else []):
            if isinstance(inst, dict) and "key" in inst:
                inputs[str(inst["key"])] = _features(inst.get("x"), f"{file}: instance {i}")
    for file in sorted((path / "batch").glob("*.jsonl*")):
        for n, doc in _json_lines(file):
            if "key" in doc:
                inputs[str(doc["key"])] = _features(doc.get("x"), f"{file}:{n}")
    keys: list[str] = []
    t: list[float] = []
    x: list[np.ndarray] = []
    y: list[int] = []
    unmatched = 0
    for n, doc in _json_lines(timeline):
        key = str(doc.get("key"))
        if key not in inputs:
            unmatched += 1
            continue
        try:
            t.append(parse_time(doc.get("time")))
        except InputError as exc:
            raise InputError(f"{timeline}:{n}: {exc}") from None
        keys.append(key)
        x.append(inputs[key])
        y.append(_label_index(doc.get("label"), f"{timeline}:{n}"))
    if unmatched and not keys:
        raise InputError(f"{path}: none of the {unmatched} timeline keys has an input under requests/ or batch/")
    return _rows(keys, t, x, y, str(path))


def load(path: str | Path) -> Rows:
    """A scenario folder or a JSONL file of labelled time-stamped rows."""
    p = Path(path)
    if p.is_dir():
        return load_scenario_dir(p)
    if p.is_file():
        return load_jsonl(p)
    raise InputError(f"{path}: no such file or folder")


def _scenario_module() -> types.ModuleType:
    """`liteserve_dev.scenario`, imported only when rows are generated."""
    from liteserve_dev import scenario

    return scenario


def generate_rows(**params: Any) -> tuple[Rows, dict[str, Any]]:
    """An in-process drift scenario (`Scenario(**params)`) on the held-out digits, as Rows plus its parameters."""
    scenario_mod = _scenario_module()
    sc = scenario_mod.Scenario(**params)
    unknown = set(sc.kinds) - set(scenario_mod.KINDS)
    if unknown or sc.days < 1 or sc.per_day < 1:
        raise InputError(
            f"scenario: days and per-day must be at least 1 and kinds a subset of {', '.join(scenario_mod.KINDS)} "
            f"(got days={sc.days}, per-day={sc.per_day}, unknown kinds {sorted(unknown)})"
        )
    s = data.split()
    days = scenario_mod.generate(s.x_test, s.y_test, sc)
    rows = Rows(
        [k for d in days for k in d["keys"]],
        np.concatenate([d["times"] for d in days]).astype(np.float64),
        np.concatenate([d["x"] for d in days]).astype(np.float32),
        np.concatenate([d["y"] for d in days]).astype(np.int64),
    )
    return rows, {**vars(sc), "kinds": list(sc.kinds)}


# ---------------------------------------------------------------------------------------------------- slices
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


# ---------------------------------------------------------------------------------------------------- decay fits
def _constant(t: np.ndarray, a: float) -> np.ndarray:
    return np.full_like(np.asarray(t, dtype=np.float64), a)


def _linear(t: np.ndarray, a: float, b: float) -> np.ndarray:
    return a + b * np.asarray(t, dtype=np.float64)


def _exponential(t: np.ndarray, a: float, k: float) -> np.ndarray:
    return a * np.exp(-k * np.asarray(t, dtype=np.float64))


def _plateau(t: np.ndarray, a: float, c: float, k: float) -> np.ndarray:
    return c + (a - c) * np.exp(-k * np.asarray(t, dtype=np.float64))


def _logistic(t: np.ndarray, a: float, c: float, m: float, k: float) -> np.ndarray:
    z = np.clip(k * (np.asarray(t, dtype=np.float64) - m), -700.0, 700.0)  # exp(>709) overflows
    return c + (a - c) / (1.0 + np.exp(z))


# name -> (function, parameter names, formula). A clean period, then drift that grows and saturates, gives the
# logistic shape; the others cover steady decline, decline slowing down, and no decline.
MODELS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...], str]] = {
    "constant": (_constant, ("a",), "acc = a"),
    "linear": (_linear, ("a", "b"), "acc = a + b·t"),
    "exponential": (_exponential, ("a", "k"), "acc = a·exp(-k·t)"),
    "exp-plateau": (_plateau, ("a", "c", "k"), "acc = c + (a - c)·exp(-k·t)"),
    "logistic": (_logistic, ("a", "c", "m", "k"), "acc = c + (a - c) / (1 + exp(k·(t - m)))"),
}


@dataclass(frozen=True)
class DecayFit:
    """One fitted decay model (t in days after the cutoff); `rss` is weighted by slice size."""

    model: str
    params: dict[str, float]
    rss: float
    r2: float
    aicc: float

    def value(self, t: np.ndarray | float) -> np.ndarray:
        """Fitted accuracy at `t` days after the cutoff."""
        fn = MODELS[self.model][0]
        return fn(np.asarray(t, dtype=np.float64), *self.params.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form with the formula and, where it applies, the rate in plain words."""
        p = self.params
        out: dict[str, Any] = {
            "model": self.model,
            "formula": MODELS[self.model][2],
            "params": {k: round(v, 6) for k, v in p.items()},
            "weighted_rss": self.rss,
            "r2": round(self.r2, 4),
            "aicc": round(self.aicc, 3),
        }
        if self.model == "linear":
            out["accuracy_change_per_day"] = round(p["b"], 6)
        elif self.model in ("exponential", "exp-plateau") and p["k"] > 0:
            out["half_life_days"] = round(math.log(2) / p["k"], 3)
        elif self.model == "logistic":
            out["midpoint_days"] = round(p["m"], 3)
        return out


def _grid_fit(name: str, t: np.ndarray, acc: np.ndarray, w: np.ndarray, k_max: float) -> tuple[float, ...]:
    """Global weighted least squares on a grid of the parameters the model is not linear in (k, and m for the
    logistic). Given those, acc = a·e (exponential) or a·e + c·(1 - e) (e = exp(-k·t) or the logistic step), so
    every grid point is a small linear solve (a, c clipped to [0, 1]), done for the whole grid at once."""
    span = max(float(t.max() - t.min()), 1e-9)
    ks = np.geomspace(0.01 / span, k_max, 48)
    if name == "logistic":
        ms = np.linspace(float(t.min()) - span / 2, float(t.max()) + span / 2, 61)
        mm, kk = (g.ravel() for g in np.meshgrid(ms, ks, indexing="ij"))
        e = 1.0 / (1.0 + np.exp(np.clip(kk[:, None] * (t[None, :] - mm[:, None]), -700.0, 700.0)))
        thetas = np.stack([mm, kk], axis=1)
    else:
        e = np.exp(-ks[:, None] * t[None, :])
        thetas = ks[:, None]
    if name == "exponential":
        a = np.clip((e * w * acc).sum(1) / np.maximum((e * e * w).sum(1), 1e-300), 0.0, 1.0)
        pred = a[:, None] * e
        linear = a[:, None]
    else:
        f = 1.0 - e
        see, sef, sff = (e * e * w).sum(1), (e * f * w).sum(1), (f * f * w).sum(1)
        bea, bfa = (e * w * acc).sum(1), (f * w * acc).sum(1)
        det = see * sff - sef**2
        ok = det > 1e-12 * np.maximum(see * sff, 1e-300)
        mean = float(np.average(acc, weights=w))  # a degenerate basis (e constant) fits a constant
        a = np.clip(np.where(ok, (bea * sff - bfa * sef) / np.where(ok, det, 1.0), mean), 0.0, 1.0)
        c = np.clip(np.where(ok, (bfa * see - bea * sef) / np.where(ok, det, 1.0), mean), 0.0, 1.0)
        pred = c[:, None] + (a - c)[:, None] * e
        linear = np.stack([a, c], axis=1)
    best = int(np.argmin((w * (acc[None, :] - pred) ** 2).sum(1)))
    return tuple(float(v) for v in (*linear[best], *thetas[best]))


def _fit_one(name: str, t: np.ndarray, acc: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """Weighted least-squares parameters of one model (weights ∝ slice size): the grid optimum refined by
    Levenberg-Marquardt (scipy curve_fit), kept only if the refinement stays in bounds and fits better."""
    names = MODELS[name][1]
    if name == "constant":
        return {"a": float(np.average(acc, weights=w))}
    if name == "linear":
        b, a = np.polyfit(t, acc, 1, w=np.sqrt(w))
        return {"a": float(a), "b": float(b)}
    fn = MODELS[name][0]
    # Rates steeper than ~20 per slice spacing are steps the slices cannot resolve.
    k_max = 20.0 / float(np.min(np.diff(np.unique(t)), initial=max(float(t.max()), 1e-9)))
    start = _grid_fit(name, t, acc, w, k_max)
    span = max(float(t.max() - t.min()), 1e-9)
    lower = {"a": 0.0, "c": 0.0, "m": float(t.min()) - span, "k": 0.0}
    upper = {"a": 1.0, "c": 1.0, "m": float(t.max()) + span, "k": k_max}
    lb, ub = np.array([lower[n] for n in names]), np.array([upper[n] for n in names])

    def rss(params: tuple[float, ...] | np.ndarray) -> float:
        return float(np.sum(w * (acc - fn(t, *params)) ** 2))

    best, best_rss = start, rss(start)
    # Unbounded Levenberg-Marquardt first (fast); when it fails or leaves the bounds, the bounded trust-region
    # method from the same start (slower, but only a few hundred evaluations from a good start).
    for kwargs in ({"maxfev": 2000}, {"bounds": (lb, ub), "maxfev": 400}):
        p0 = np.clip(start, lb + 1e-9, ub - 1e-9) if "bounds" in kwargs else start
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(fn, t, acc, p0=p0, sigma=1.0 / np.sqrt(w), **kwargs)
        except (RuntimeError, ValueError):  # no convergence
            continue
        if np.all(popt >= lb) and np.all(popt <= ub):
            if rss(popt) <= best_rss:
                best, best_rss = tuple(float(v) for v in popt), rss(popt)
            break
    return {n: float(v) for n, v in zip(names, best, strict=True)}


def fit_decay(t_days: np.ndarray, accuracy: np.ndarray, n: np.ndarray | None = None) -> list[DecayFit]:
    """Fit every model in MODELS that the number of points allows (AICc needs points > parameters + 2), best
    (lowest AICc: fit quality with a penalty per parameter) first."""
    t = np.asarray(t_days, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    counts = np.ones_like(t) if n is None else np.asarray(n, dtype=np.float64)
    if not (len(t) == len(acc) == len(counts)) or np.any(counts <= 0):
        raise InputError("t, accuracy and n must have the same length and positive n")
    w = counts / counts.mean()
    pts = len(t)
    tss = float(np.sum(w * (acc - np.average(acc, weights=w)) ** 2))
    fits = []
    for name, (_, names, _) in MODELS.items():
        k = len(names) + 1  # + the residual variance
        if pts - k - 1 <= 0:
            continue
        params = _fit_one(name, t, acc, w)
        fn = MODELS[name][0]
        rss = float(np.sum(w * (acc - fn(t, *params.values())) ** 2))
        # An exact fit would give log(0); floor the RSS so ties are broken by the parameter penalty alone.
        floored = max(rss, pts * 1e-12)
        aicc = pts * math.log(floored / pts) + 2 * k + 2 * k * (k + 1) / (pts - k - 1)
        r2 = 1.0 - rss / tss if tss > 0 else (1.0 if rss <= pts * 1e-12 else 0.0)
        fits.append(DecayFit(name, params, rss, r2, aicc))
    if not fits:
        raise InputError(f"{pts} usable slices after the cutoff: at least 4 are needed to fit a decay")
    return sorted(fits, key=lambda f: (f.aicc, len(f.params)))


def crossing_time(fit: DecayFit, drop: float) -> float | None:
    """Days after the cutoff until the fitted accuracy is `drop` below its value at the cutoff (None: never)."""
    p = fit.params
    if fit.model == "linear":
        return drop / -p["b"] if p["b"] < 0 else None
    if fit.model == "exponential":
        return -math.log(1 - drop / p["a"]) / p["k"] if p["k"] > 0 and p["a"] > drop else None
    if fit.model == "exp-plateau":
        amplitude = p["a"] - p["c"]
        return -math.log(1 - drop / amplitude) / p["k"] if p["k"] > 0 and amplitude > drop else None
    if fit.model == "logistic":
        above_floor = float(fit.value(0.0)) - drop - p["c"]  # what is left above the floor c at the crossing
        if p["k"] <= 0 or above_floor <= 0:
            return None
        return max(0.0, p["m"] + math.log((p["a"] - p["c"]) / above_floor - 1) / p["k"])
    return None


def estimate_interval(
    t_days: np.ndarray,
    accuracy: np.ndarray,
    n: np.ndarray | None,
    tolerated_drop: float,
    horizon_days: float,
    slice_days: float = 1.0,
) -> dict[str, Any]:
    """Fit the decay, pick the best model and derive the retraining interval for `tolerated_drop` (accuracy points
    as a fraction, e.g. 0.02). A crossing beyond the observed horizon is reported as extrapolated, not recommended."""
    if not 0 < tolerated_drop < 1:
        raise InputError(f"tolerated drop {tolerated_drop}: expected a fraction between 0 and 1, e.g. 0.02")
    fits = fit_decay(t_days, accuracy, n)
    best = fits[0]
    baseline = float(best.value(0.0))
    crossing = crossing_time(best, tolerated_drop)
    t = np.asarray(t_days, dtype=np.float64)
    slope = linregress(t, np.asarray(accuracy, dtype=np.float64)) if len(t) > 2 else None
    within = crossing is not None and crossing <= horizon_days
    out: dict[str, Any] = {
        "model": best.model,
        "fit": best.to_dict(),
        "fits": [f.to_dict() for f in fits],
        "baseline_accuracy": round(baseline, 6),
        "tolerated_drop": tolerated_drop,
        "threshold_accuracy": round(baseline - tolerated_drop, 6),
        "horizon_days": round(horizon_days, 6),
        "interval_days": round(crossing, 4) if within else None,
        "extrapolated_days": round(crossing, 4) if crossing is not None and not within else None,
        "linregress": None
        if slope is None
        else {"slope_per_day": float(slope.slope), "p_value": float(slope.pvalue), "r": float(slope.rvalue)},
    }
    if within:
        assert crossing is not None
        # Whole slices (the schedule's natural unit); a decay faster than one slice gets whole hours instead.
        if crossing >= slice_days:
            every = math.floor(crossing / slice_days + 1e-9) * slice_days
        else:
            every = max(1, math.floor(crossing * 24 + 1e-9)) / 24
        out["recommended_every_days"] = round(every, 6)
        when = f"{every:g} day(s)" if every >= 1 else f"{every * 24:g} h"
        out["verdict"] = (
            f"retrain every {when}: the fitted accuracy falls by {tolerated_drop:g} after {crossing:.2f} days"
            + (" (within the first slice)" if crossing < slice_days else "")
        )
    else:
        out["recommended_every_days"] = None
        out["verdict"] = f"no retraining needed within the observed horizon ({horizon_days:g} days)" + (
            f"; the fit would cross after {crossing:.1f} days (extrapolated)" if crossing is not None else ""
        )
    return out


# ---------------------------------------------------------------------------------------------------- plot
def _nice_step(span: float, max_ticks: int) -> float:
    """The smallest of 1, 2, 5 × 10^n giving at most `max_ticks` intervals over `span`."""
    base = 10.0 ** math.floor(math.log10(span / max_ticks)) if span > 0 else 1.0
    return next(m * base for m in (1, 2, 5, 10) if span / (m * base) <= max_ticks)


def svg_plot(
    slices: list[dict[str, Any]],
    estimate: dict[str, Any],
    title: str,
    width: int = 760,
    height: int = 340,
) -> str:
    """Accuracy per slice (dots, area ∝ rows), the chosen fit, the threshold line and the interval (inline SVG);
    the verdict is the subtitle."""
    pts = [(s["t_days"], s["accuracy"]) for s in slices if s.get("used")]
    fit = DecayFit(estimate["model"], dict(estimate["fit"]["params"]), 0.0, 0.0, 0.0)
    horizon = max(estimate["horizon_days"], 1e-9)
    ts = np.linspace(0.0, horizon, 200)
    curve = fit.value(ts)
    threshold, baseline = estimate["threshold_accuracy"], estimate["baseline_accuracy"]
    values = [a for _, a in pts] + [threshold, baseline, *curve.tolist()]
    lo, hi = max(0.0, min(values)), min(1.0, max(values))
    pad = max((hi - lo) * 0.06, 0.005)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    left, right, top, bottom = 56, 20, 48, 52
    pw, ph = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + pw * v / horizon

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / ((hi - lo) or 1))

    nmax = max([s["n"] for s in slices if s.get("used")] or [1])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><style>text{{font:11px system-ui,sans-serif}}</style>',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>',
        f'<text x="{left}" y="32">{escape(estimate["verdict"])}</text>',
    ]
    ystep = _nice_step(hi - lo, 6)
    decimals = max(0, -math.floor(math.log10(ystep)))
    v = math.ceil(lo / ystep - 1e-9) * ystep
    while v <= hi + 1e-9:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.{decimals}f}</text>')
        v += ystep
    xstep = _nice_step(horizon, 10)
    tick = 0.0
    while tick <= horizon + 1e-9:
        out.append(f'<text x="{px(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:g}</text>')
        tick += xstep
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - bottom + 32}" text-anchor="middle">days after the cutoff</text>'
    )
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{py(threshold):.1f}" y2="{py(threshold):.1f}" '
        f'stroke="#d62728" stroke-dasharray="6,4"/>'
        f'<text x="{width - right}" y="{py(threshold) - 4:.1f}" text-anchor="end" fill="#d62728">'
        f"threshold {threshold:.3f} (baseline {baseline:.3f} − {estimate['tolerated_drop']:g})</text>"
    )
    path = " ".join(f"{px(float(a)):.1f},{py(float(b)):.1f}" for a, b in zip(ts, curve, strict=True))
    out.append(f'<polyline points="{path}" fill="none" stroke="#ff7f0e" stroke-width="2"/>')
    for s in slices:
        if s.get("used"):
            r = 2 + 3 * math.sqrt(s["n"] / nmax)
            out.append(
                f'<circle cx="{px(s["t_days"]):.1f}" cy="{py(s["accuracy"]):.1f}" r="{r:.1f}" fill="#1f77b4">'
                f"<title>{escape(s['start'])}: accuracy {s['accuracy']:.4f} on {s['n']} rows</title></circle>"
            )
    if estimate["interval_days"] is not None:
        days = estimate["interval_days"]
        x = px(days)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#2ca02c" stroke-dasharray="3,3"/>'
            f'<text x="{x + 4:.1f}" y="{top + ph - 6}" fill="#2ca02c">fitted drop reached after {days:.2f} d</text>'
        )
    legend = f"dots: accuracy per slice (area ∝ rows) · orange: {estimate['fit']['formula']} ({estimate['model']})"
    out.append(f'<text x="{left}" y="{height - 6}" fill="#555">{escape(legend)}</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------------- pipeline
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


def _print_human(summary: dict[str, Any]) -> None:
    est = summary["estimate"]
    train = summary["train"]
    where = "of the digits training split" if train.get("source") == "digits-split" else "before the cutoff"
    print(f"trained on {train['rows']} rows {where} ({train.get('kind')}); cutoff {summary['cutoff']}")
    print(f"{'slice':>5} {'start':>20} {'t (d)':>7} {'rows':>6} {'accuracy':>9} {'seen':>6}")
    for s in summary["slices"]:
        acc = "—" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
        seen = "—" if s.get("seen_share") is None else f"{s['seen_share']:.0%}"
        flag = "" if s["used"] else "  (too few rows, not fitted)"
        print(f"{s['slice']:>5} {s['start']:>20} {s['t_days']:>7.2f} {s['n']:>6} {acc:>9} {seen:>6}{flag}")
    print("fits (best first, by AICc):")
    for f in est["fits"]:
        params = ", ".join(f"{k}={v:.5g}" for k, v in f["params"].items())
        print(f"  {f['model']:<12} {f['formula']:<42} {params:<44} R²={f['r2']:.4f} AICc={f['aicc']:.2f}")
    print(f"chosen: {est['model']}; baseline {est['baseline_accuracy']:.4f}, threshold {est['threshold_accuracy']:.4f}")
    print(est["verdict"])


def main(argv: list[str] | None = None) -> int:
    """CLI: estimate the retraining interval; prints slices, fits, the verdict and the JSON summary."""
    p = argparse.ArgumentParser(prog="python -m training.interval", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="scenario folder or JSONL of {key, t|time, x, label}")
    src.add_argument("--generate", action="store_true", help="generate a drift scenario in-process")
    g = p.add_argument_group("in-process scenario (--generate)")
    g.add_argument("--start", default="2026-11-01")
    g.add_argument("--days", type=int, default=30)
    g.add_argument("--per-day", type=int, default=600)
    g.add_argument("--drift-start", type=int, default=10)
    g.add_argument("--ramp-days", type=int, default=5)
    g.add_argument("--kinds", default="noise,contrast,stroke")
    g.add_argument("--swap", default="", help="concept drift: two classes, e.g. 3,8")
    g.add_argument("--swap-from", type=int, default=None)
    g.add_argument("--seed", type=int, default=7)
    p.add_argument("--cutoff", help="'+10d' after the first day, an ISO time or epoch seconds (default: 1/3 in)")
    p.add_argument("--slice", default="1d", help="slice width: 1d, 12h, ... (default 1d)")
    p.add_argument("--tolerated-drop", type=float, default=0.02, help="accuracy drop tolerated (default 0.02)")
    p.add_argument("--min-rows", type=int, default=30, help="slices with fewer rows are not fitted (default 30)")
    p.add_argument("--model", default="digits", help="training spec (training.specs.SPECS), default digits")
    p.add_argument("--epochs", type=int, default=None, help="cap the spec's epochs (early stopping still applies)")
    p.add_argument(
        "--train-on",
        choices=("before-cutoff", "digits-split"),
        default="before-cutoff",
        help="rows before the cutoff (default), or the project's digits training split (disjoint from the held-out "
        "digits the scenario samples, so clean slices are not inputs seen in training)",
    )
    p.add_argument("--out", default="build/retrain-interval", help="folder for interval.svg and summary.json")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    try:
        slice_seconds = parse_duration(args.slice)
        if not 0 < args.tolerated_drop < 1:  # checked before the data is loaded and the model trained
            raise InputError(f"--tolerated-drop {args.tolerated_drop}: expected a fraction between 0 and 1, e.g. 0.02")
        if args.min_rows < 1 or (args.epochs is not None and args.epochs < 1):
            raise InputError("--min-rows and --epochs must be at least 1")
        if args.generate:
            swap = tuple(int(c) for c in args.swap.split(",")) if args.swap else None
            if swap is not None and len(swap) != 2:
                raise InputError(f"--swap {args.swap!r}: expected two classes, e.g. 3,8")
            rows, source = generate_rows(
                start=args.start,
                days=args.days,
                per_day=args.per_day,
                drift_start=args.drift_start,
                ramp_days=args.ramp_days,
                kinds=tuple(k for k in args.kinds.split(",") if k),
                swap=swap,
                swap_from=args.swap_from if swap else None,
                seed=args.seed,
            )
            source = {"scenario": source}
        else:
            rows, source = load(args.data), {"path": str(args.data)}
        cutoff = resolve_cutoff(args.cutoff, rows.t)
        train_rows = None
        if args.train_on == "digits-split":
            s = data.split()
            train_rows = (s.x_train, s.y_train)
        summary = run(
            rows,
            keras_trainer(args.model, args.epochs),
            cutoff=cutoff,
            slice_seconds=slice_seconds,
            tolerated_drop=args.tolerated_drop,
            min_rows=args.min_rows,
            train_rows=train_rows,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["data"].update(source)
    summary["train"]["source"] = args.train_on
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Accuracy per {args.slice} slice after the cutoff {summary['cutoff']}"
    (out / "interval.svg").write_text(svg_plot(summary["slices"], summary["estimate"], title))
    summary["plot"] = str(out / "interval.svg")
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _print_human(summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
