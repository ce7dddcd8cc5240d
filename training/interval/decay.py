"""How accuracy decays over time: constant, linear, exponential, plateau and logistic fits (weighted least squares,
chosen by AICc), when the chosen fit crosses the tolerated drop, and the recommended retraining interval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import linregress

from training.interval.rows import InputError


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
