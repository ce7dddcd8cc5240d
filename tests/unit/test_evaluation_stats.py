"""Evaluation metrics and drift statistics, checked against scikit-learn and scipy (dev venv only)."""

from __future__ import annotations

import numpy as np
import pytest
from liteserve.evaluation import drift, metrics
from liteserve.evaluation.drift import Thresholds
from liteserve.manifest import Manifest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, kstwobign
from sklearn import metrics as sk

from liteserve_dev.scenario import corrupt
from tests.support import MODEL_ROOT


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.load(MODEL_ROOT / "digits" / "manifest.json")


@pytest.fixture(scope="module")
def predictions(models, digits):
    x, y = digits
    out = models.get("digits").predict("serving_default", {"x": x})
    return y, out["probabilities"], out["class_id"]


def test_classification_report_agrees_with_scikit_learn(predictions, manifest):
    y, probs, pred = predictions
    rng = np.random.default_rng(0)
    y = np.where(rng.uniform(size=len(y)) < 0.1, rng.integers(0, 10, len(y)), y)  # some errors to measure
    report = metrics.classification_report(y, probs, pred, manifest.labels)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
    recall = sk.recall_score(y, pred, average=None, labels=list(range(10)))
    assert [report["per_class_recall"][str(c)] for c in range(10)] == pytest.approx(recall)
    p64 = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
    tiny = np.finfo(np.float64).eps  # scikit-learn clips at the dtype's eps; the report at 1e-7 (int8 gives 0.0)
    assert metrics.log_loss(p64, y, eps=tiny) == pytest.approx(sk.log_loss(y, p64, labels=list(range(10))))
    assert report["log_loss"] == pytest.approx(metrics.log_loss(probs, y))
    assert report["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=list(range(10))).tolist()
    assert report["label_distribution"] == np.bincount(y, minlength=10).tolist()
    assert report["prediction_distribution"] == np.bincount(pred, minlength=10).tolist()


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 -> two cases, accuracy 0.5 (gap 0.4); 0.6 -> one, accuracy 1 (gap 0.4); 0.7 -> one, acc 1 (gap 0.3)
    ece = metrics.calibration(probs, y)["ece"]
    assert ece == pytest.approx(2 / 4 * 0.4 + 1 / 4 * 0.4 + 1 / 4 * 0.3)


def test_psi_by_hand_and_js_and_kolmogorov_against_scipy():
    p, q = np.array([50.0, 30.0, 20.0]), np.array([20.0, 30.0, 50.0])
    a, b = drift.shares(p), drift.shares(q)
    assert drift.psi(p, q) == pytest.approx(float(np.sum((b - a) * np.log(b / a))))
    assert drift.psi(p, p) == 0.0
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert drift.js_distance([1, 0, 3], [0, 2, 2]) == pytest.approx(jensenshannon([1, 0, 3], [0, 2, 2], base=2))
    for x in (0.01, 0.3, 0.5, 0.8, 1.0, 1.36, 2.0, 3.0):
        assert drift.kolmogorov_sf(x) == pytest.approx(kstwobign.sf(x), abs=1e-9)


def test_binned_ks_equals_the_exact_statistic_when_values_sit_inside_bins():
    rng = np.random.default_rng(1)
    edges = np.linspace(0, 1, 11)
    centers = (edges[:-1] + edges[1:]) / 2
    a = rng.choice(centers, size=400, p=np.full(10, 0.1))
    b = rng.choice(centers, size=300, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    d, p_value = drift.binned_ks(drift.histogram(a, edges), drift.histogram(b, edges))
    assert d == pytest.approx(ks_2samp(a, b).statistic)
    assert p_value == pytest.approx(kstwobign.sf(d * np.sqrt(400 * 300 / 700)))


def test_clean_held_out_digits_do_not_drift_but_the_scenarios_shift_does(digits, manifest):
    x, _ = digits
    features = manifest.raw["training_stats"]["features"]
    clean = drift.feature_drift(x, features, Thresholds())
    assert clean["judged"] and not clean["dataset_drift"]
    assert clean["drifted_share"] < 0.25
    shifted = drift.feature_drift(corrupt(x, 0.5, np.random.default_rng(0)), features, Thresholds())
    assert shifted["dataset_drift"] and shifted["drifted_share"] > 0.5
    assert len(shifted["features"]) == 64 and {"psi", "js", "ks_d", "ks_p"} <= shifted["features"][0].keys()


def test_thresholds_per_feature_and_minimum_rows(digits, manifest):
    x, _ = digits
    features = manifest.raw["training_stats"]["features"]
    shifted = corrupt(x, 0.5, np.random.default_rng(0))
    lenient = Thresholds(per_feature={f["name"]: {"psi": 1e9, "js": 1.0} for f in features[:40]})
    result = drift.feature_drift(shifted, features, lenient)
    assert not any(f["drifted"] for f in result["features"][:40])
    assert drift.feature_drift(shifted[:50], features, Thresholds(min_rows=100))["dataset_drift"] is False
    with pytest.raises(ValueError, match="features"):
        drift.feature_drift(shifted[:, :10], features, Thresholds())


def test_prediction_drift_compares_class_shares(manifest):
    counts = manifest.raw["training_stats"]["label_counts"]
    balanced = np.repeat(np.arange(10), 50)
    skewed = np.concatenate([np.zeros(400, dtype=int), np.arange(10).repeat(10)])
    assert drift.prediction_drift(balanced, counts, Thresholds())["drifted"] is False
    assert drift.prediction_drift(skewed, counts, Thresholds())["drifted"] is True
