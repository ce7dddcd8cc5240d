"""Retraining-interval estimate (training/interval/): decay fits with known answers, slicing, loading, the plot,
and the whole pipeline with a numpy stand-in for the Keras trainer (no TensorFlow in the dev venv)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from liteserve_dev import scenario as scen
from training import interval as iv

T = np.arange(30) + 0.5  # daily slice midpoints
N = np.full(30, 600)


def binomial(p: np.ndarray, seed: int, n: int = 600) -> np.ndarray:
    return np.random.default_rng(seed).binomial(n, np.clip(p, 0, 1)) / n


def centroid_trainer(x: np.ndarray, y: np.ndarray):
    """A nearest-centroid classifier: fast, deterministic and hurt by the scenario's drift like the MLP."""
    cents = np.stack([x[y == c].mean(axis=0) for c in range(10)])

    def predict(rows: np.ndarray) -> np.ndarray:
        return np.argmin(((rows[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)

    return predict, {"kind": "nearest centroid"}


# ------------------------------------------------------------------------------------------------ known answers
def test_linear_decay_with_known_rate_gives_known_interval() -> None:
    est = iv.estimate_interval(T, 0.95 - 0.004 * T, N, 0.02, horizon_days=30)
    assert est["model"] == "linear"
    assert est["fit"]["accuracy_change_per_day"] == pytest.approx(-0.004, abs=1e-6)
    assert est["baseline_accuracy"] == pytest.approx(0.95, abs=1e-6)
    assert est["interval_days"] == pytest.approx(5.0, abs=1e-4)  # 0.02 / 0.004
    assert est["recommended_every_days"] == 5
    assert est["threshold_accuracy"] == pytest.approx(0.93, abs=1e-6)


def test_exponential_decay_with_known_rate_gives_known_interval() -> None:
    est = iv.estimate_interval(T, 0.97 * np.exp(-0.01 * T), N, 0.02, horizon_days=30)
    assert est["model"] == "exponential"
    assert est["fit"]["half_life_days"] == pytest.approx(math.log(2) / 0.01, rel=1e-3)
    assert est["interval_days"] == pytest.approx(-math.log(1 - 0.02 / 0.97) / 0.01, rel=1e-3)  # 2.083 days
    assert est["recommended_every_days"] == 2  # whole slices


def test_decay_faster_than_one_slice_is_recommended_in_hours() -> None:
    est = iv.estimate_interval(T, 0.97 * np.exp(-0.05 * T), N, 0.02, horizon_days=30)
    assert est["interval_days"] == pytest.approx(-math.log(1 - 0.02 / 0.97) / 0.05, rel=1e-3)  # 0.417 d = 10.0 h
    assert est["recommended_every_days"] == pytest.approx(10 / 24, abs=1e-6)
    assert est["verdict"].startswith("retrain every 10 h")


@pytest.mark.parametrize(("a", "c", "m", "k"), [(0.97, 0.3, 8.0, 1.5), (1.0, 0.2, 2.6, 2.0)])  # a on its bound
def test_clean_period_then_drift_is_fitted_by_the_logistic_model(a: float, c: float, m: float, k: float) -> None:
    acc = c + (a - c) / (1 + np.exp(k * (T - m)))
    est = iv.estimate_interval(T, acc, N, 0.02, horizon_days=30)
    assert est["model"] == "logistic"
    f0 = c + (a - c) / (1 + math.exp(-k * m))
    expected = m + math.log((a - c) / (f0 - 0.02 - c) - 1) / k
    assert est["interval_days"] == pytest.approx(expected, abs=1e-3)
    whole = math.floor(expected) if expected >= 1 else math.floor(expected * 24) / 24  # days, or hours under a day
    assert est["recommended_every_days"] == pytest.approx(whole, abs=1e-6)


def test_measured_scenario_decay_is_fitted_within_the_bounds() -> None:
    """Daily accuracies of the float model on the 30-day scenario (cut-off day 7): the least-squares optimum has
    a = 1, on its bound, where unbounded refinement steps outside and the bounded one is needed."""
    acc = [1.0, 1.0, 1.0, 0.995, 0.875, 0.5817, 0.28, 0.1567, 0.1783, 0.1767, 0.1533, 0.195, 0.1583, 0.1883]
    acc += [0.2, 0.1733, 0.1783, 0.1633, 0.18, 0.2067, 0.1733, 0.1733, 0.1717]
    t = np.arange(len(acc)) + 0.5
    est = iv.estimate_interval(t, np.array(acc), np.full(len(acc), 600), 0.02, horizon_days=len(acc))
    assert est["model"] == "logistic" and est["fit"]["params"]["a"] == pytest.approx(1.0)
    assert est["fit"]["r2"] > 0.998
    assert est["interval_days"] == pytest.approx(3.54, abs=0.01) and est["recommended_every_days"] == 3


def test_no_decay_means_no_retraining_within_the_observed_horizon() -> None:
    est = iv.estimate_interval(T, np.full(30, 0.96), N, 0.02, horizon_days=30)
    assert est["model"] == "constant"
    assert est["interval_days"] is None and est["recommended_every_days"] is None
    assert est["verdict"].startswith("no retraining needed within the observed horizon")


def test_decay_slower_than_the_horizon_is_extrapolated_not_recommended() -> None:
    est = iv.estimate_interval(T, 0.95 - 0.0005 * T, N, 0.02, horizon_days=30)
    assert est["interval_days"] is None
    assert est["extrapolated_days"] == pytest.approx(40.0, abs=1e-3)
    assert "extrapolated" in est["verdict"]


@pytest.mark.parametrize("seed", range(5))
def test_noisy_flat_accuracy_needs_no_retraining(seed: int) -> None:
    est = iv.estimate_interval(T, binomial(np.full(30, 0.96), seed), N, 0.02, horizon_days=30)
    assert est["interval_days"] is None, est["fits"]


@pytest.mark.parametrize("seed", range(5))
def test_noisy_linear_decay_recovers_the_interval(seed: int) -> None:
    est = iv.estimate_interval(T, binomial(0.96 - 0.002 * T, seed), N, 0.02, horizon_days=30)
    assert est["interval_days"] == pytest.approx(10.0, abs=2.5), est["fits"]  # slope s.e. ~ 8 % of 0.002


def test_fits_are_ranked_by_aicc_and_need_enough_points() -> None:
    fits = iv.fit_decay(T[:5], 0.9 - 0.01 * T[:5], N[:5])
    assert [f.model for f in fits] == ["linear", "exponential", "constant"]  # 4-5 parameter models need more points
    assert [f.aicc for f in fits] == sorted(f.aicc for f in fits)
    with pytest.raises(iv.InputError, match="at least 4"):
        iv.fit_decay(T[:3], np.array([0.9, 0.8, 0.7]), N[:3])


def test_slices_weigh_by_their_row_count() -> None:
    acc = np.array([0.9, 0.9, 0.9, 0.9, 0.5])
    fits = {f.model: f for f in iv.fit_decay(np.arange(5.0), acc, np.array([100, 100, 100, 100, 4]))}
    assert fits["constant"].params["a"] == pytest.approx((0.9 * 400 + 0.5 * 4) / 404)
    unweighted = {f.model: f for f in iv.fit_decay(np.arange(5.0), acc)}
    assert unweighted["constant"].params["a"] == pytest.approx(0.82)


def test_crossing_time_per_model() -> None:
    def fit(model: str, **p: float) -> iv.DecayFit:
        return iv.DecayFit(model, p, 0.0, 1.0, 0.0)

    assert iv.crossing_time(fit("constant", a=0.9), 0.02) is None
    assert iv.crossing_time(fit("linear", a=0.9, b=0.001), 0.02) is None  # improving
    assert iv.crossing_time(fit("exp-plateau", a=0.9, c=0.89, k=1.0), 0.02) is None  # floor above the threshold
    t = iv.crossing_time(fit("exp-plateau", a=0.9, c=0.5, k=0.2), 0.02)
    assert t is not None and float(fit("exp-plateau", a=0.9, c=0.5, k=0.2).value(t)) == pytest.approx(0.88)
    assert iv.crossing_time(fit("logistic", a=0.9, c=0.89, m=5, k=1.0), 0.02) is None


def test_tolerated_drop_must_be_a_fraction() -> None:
    with pytest.raises(iv.InputError, match="fraction"):
        iv.estimate_interval(T, np.full(30, 0.9), N, 2.0, horizon_days=30)


# ------------------------------------------------------------------------------------------------ parsing, slices
def test_durations_times_and_cutoffs() -> None:
    assert iv.parse_duration("1d") == 86400 and iv.parse_duration("12h") == 43200 and iv.parse_duration("90") == 90
    for bad in ("0d", "-1d", "1y", "day"):
        with pytest.raises(iv.InputError, match="duration"):
            iv.parse_duration(bad)
    assert iv.parse_time("2026-11-01") == iv.parse_time("2026-11-01T00:00:00Z") == 1793491200.0
    assert iv.parse_time("1793491200") == 1793491200.0
    for bad in ("yesterday", None, True, float("nan")):
        with pytest.raises(iv.InputError):
            iv.parse_time(bad)
    t = 1793491200.0 + np.array([3600.0, 29.5 * 86400])  # 30 days of data
    assert iv.resolve_cutoff(None, t) == 1793491200.0 + 10 * 86400
    assert iv.resolve_cutoff("+7d", t) == 1793491200.0 + 7 * 86400
    assert iv.resolve_cutoff("2026-11-05T12:00:00Z", t) == 1793491200.0 + 4.5 * 86400


def test_slice_accuracy_bins_by_width_from_the_cutoff() -> None:
    t = np.array([-5, 0, 100, 86399, 86400, 3 * 86400 + 5], dtype=float)
    correct = np.array([1, 1, 1, 0, 1, 1], dtype=bool)
    seen = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    slices = iv.slice_accuracy(t, correct, cutoff=0, width=86400, seen=seen)
    assert [s["n"] for s in slices] == [3, 1, 0, 1]  # the row at t=-5 is before the cutoff
    assert [s["accuracy"] for s in slices] == [pytest.approx(2 / 3), 1.0, None, 1.0]
    assert slices[0]["seen_share"] == pytest.approx(2 / 3) and slices[2]["seen_share"] is None
    assert slices[1]["t_days"] == 1.5 and slices[1]["start"] == "1970-01-02T00:00:00Z"
    with pytest.raises(iv.InputError, match="no rows at or after the cutoff"):
        iv.slice_accuracy(t, correct, cutoff=10 * 86400, width=86400)


# ------------------------------------------------------------------------------------------------ loading
def _row(key: str, t: object, label: object = 3, x: object = None) -> str:
    return json.dumps({"key": key, "t": t, "x": x if x is not None else [0.5] * 64, "label": label})


def test_load_jsonl_sorts_by_time_and_accepts_time_or_t(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [_row("b", 200), json.dumps({"key": "a", "time": "1970-01-01T00:01:40Z", "x": [0] * 64, "label": "7"})]
    path.write_text("\n".join(lines) + "\n\n")
    rows = iv.load(path)
    assert rows.keys == ["a", "b"] and rows.t.tolist() == [100.0, 200.0] and rows.y.tolist() == [7, 3]
    assert rows.x.shape == (2, 64) and rows.x.dtype == np.float32


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "rows.jsonl:2: not JSON"),
        ('{"key": "z", "x": [], "label": 1}', "rows.jsonl:2: missing t"),
        (_row("z", 5, label=12), "rows.jsonl:2: label 12 is not one of"),
        (_row("z", 5, x=[1, 2]), "rows.jsonl:2: 'x' must be a list of 64 numbers, got 2"),
        (_row("z", "soon"), "rows.jsonl:2: time 'soon'"),
        (_row("a", 5), "rows.jsonl:2: key 'a' repeats line 1"),
    ],
)
def test_load_jsonl_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(_row("a", 1) + "\n" + line + "\n")
    with pytest.raises(iv.InputError, match=message):
        iv.load(path)


def test_load_missing_path_or_folder_without_timeline(tmp_path: Path) -> None:
    with pytest.raises(iv.InputError, match="no such file"):
        iv.load(tmp_path / "nope")
    with pytest.raises(iv.InputError, match=r"no timeline\.jsonl"):
        iv.load(tmp_path)


@pytest.fixture(scope="module")
def small_scenario(digits) -> tuple[scen.Scenario, list[dict]]:
    sc = scen.Scenario(days=12, per_day=200, drift_start=5, ramp_days=3)
    return sc, scen.generate(*digits, sc)


def test_scenario_folder_joins_timeline_with_requests_and_batch(tmp_path: Path, small_scenario) -> None:
    sc, days = small_scenario
    scen.write(tmp_path, days, sc)
    rows = iv.load(tmp_path)
    assert len(rows.keys) == 12 * 200
    assert np.all(np.diff(rows.t) >= 0)
    by_key = {k: i for i, k in enumerate(rows.keys)}
    day = days[7]
    for j in (0, 57, 199):  # online and batch rows alike
        i = by_key[day["keys"][j]]
        assert np.array_equal(rows.x[i], day["x"][j]) and rows.y[i] == day["y"][j]
        assert rows.t[i] == pytest.approx(day["times"][j], abs=1e-3)


# ------------------------------------------------------------------------------------------------ pipeline, plot
def _rows(days: list[dict]) -> iv.Rows:
    return iv.Rows(
        [k for d in days for k in d["keys"]],
        np.concatenate([d["times"] for d in days]),
        np.concatenate([d["x"] for d in days]),
        np.concatenate([d["y"] for d in days]),
    )


def test_pipeline_finds_the_decay_of_a_drifting_scenario(small_scenario) -> None:
    sc, days = small_scenario
    summary = iv.run(_rows(days), centroid_trainer, cutoff=sc.day_start(3), slice_seconds=86400, tolerated_drop=0.02)
    assert summary["train"]["rows"] == 3 * 200
    accs = [s["accuracy"] for s in summary["slices"]]
    assert len(accs) == 9 and min(accs[3:]) < accs[0] - 0.1  # drift from day 5 = slice 2 hurts
    est = summary["estimate"]
    assert est["interval_days"] is not None and 0 < est["interval_days"] < 5
    # The scenario samples 360 held-out digits: clean slices mostly repeat training inputs, drifted ones never.
    assert summary["slices"][0]["seen_share"] > 0.5 and summary["slices"][-1]["seen_share"] == 0
    json.dumps(summary)


def test_pipeline_on_clean_traffic_needs_no_retraining(digits) -> None:
    sc = scen.Scenario(days=12, per_day=200, drift_start=99)
    summary = iv.run(
        _rows(scen.generate(*digits, sc)),
        centroid_trainer,
        cutoff=sc.day_start(3),
        slice_seconds=86400,
        tolerated_drop=0.02,
    )
    assert summary["estimate"]["interval_days"] is None


def test_pipeline_refuses_a_training_set_missing_classes(small_scenario) -> None:
    rows = _rows(small_scenario[1])
    with pytest.raises(iv.InputError, match="every class needs at least 2"):
        iv.run(rows, centroid_trainer, cutoff=float(rows.t[3]), slice_seconds=86400, tolerated_drop=0.02)


def test_svg_plot_draws_points_fit_threshold_and_interval() -> None:
    slices = [
        {"t_days": float(t), "n": 600, "accuracy": float(a), "start": f"day {i}", "used": True}
        for i, (t, a) in enumerate(zip(T, 0.95 - 0.004 * T, strict=True))
    ]
    est = iv.estimate_interval(T, 0.95 - 0.004 * T, N, 0.02, horizon_days=30)
    svg = iv.svg_plot(slices, est, "decay & <test>")
    root = ET.fromstring(svg)  # well-formed XML, title escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 30
    assert len(root.findall(f"{ns}polyline")) == 1
    texts = "".join(root.itertext())
    assert "threshold 0.930" in texts and "fitted drop reached after 5.00 d" in texts


def test_cli_reports_bad_input_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert iv.main(["--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    path = tmp_path / "rows.jsonl"
    path.write_text(_row("a", 1) + "\n")
    assert iv.main(["--data", str(path), "--slice", "fortnight"]) == 2
    assert "duration 'fortnight'" in capsys.readouterr().err
    assert iv.main(["--data", str(path), "--tolerated-drop", "2"]) == 2
    assert "--tolerated-drop 2.0: expected a fraction" in capsys.readouterr().err
    assert iv.main(["--generate", "--kinds", "noise,blur"]) == 2
    assert "unknown kinds ['blur']" in capsys.readouterr().err


def test_cli_end_to_end_with_a_stand_in_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(iv.pipeline, "keras_trainer", lambda spec, epochs: centroid_trainer)
    args = ["--generate", "--days", "12", "--per-day", "200", "--drift-start", "5", "--cutoff", "+3d"]
    assert iv.main([*args, "--slice", "12h", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = json.loads(out[-1])  # the JSON summary is the last line
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["cutoff"] == "2026-11-04T00:00:00Z" and len(summary["slices"]) == 18  # 9 days of 12 h slices
    assert summary["data"]["scenario"]["drift_start"] == 5 and summary["train"]["source"] == "before-cutoff"
    assert any(line.startswith("retrain every") for line in out)
    ET.parse(tmp_path / "interval.svg")
