"""Packaging's pure parts: baseline statistics, task inference, fidelity numbers and bounds (numpy only)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from liteserve.evaluation.drift import Thresholds, feature_drift

from liteserve_dev.packaging import PackagingError, baseline, fidelity, tasks

RNG = np.random.default_rng(7)


def spec(dtype: str, *shape: int) -> dict:
    return {"dtype": dtype, "shape": list(shape)}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# baseline


def test_feature_stats_describe_each_column_on_its_own_range() -> None:
    x = np.column_stack([RNG.normal(5, 2, 500), RNG.uniform(-1, 0, 500), np.full(500, 3.0)])
    stats = baseline.feature_stats(x, ["a", "b", "const"])
    assert [s["name"] for s in stats] == ["a", "b", "const"]
    for j, s in enumerate(stats):
        assert sum(s["histogram"]["counts"]) == 500 and len(s["histogram"]["edges"]) == baseline.BINS + 1
        assert s["histogram"]["edges"][0] <= x[:, j].min() and s["histogram"]["edges"][-1] >= x[:, j].max()
        assert s["mean"] == pytest.approx(x[:, j].mean()) and s["std"] == pytest.approx(x[:, j].std())
        assert s["quantiles"]["p50"] == pytest.approx(np.median(x[:, j]))
    assert stats[2]["histogram"]["edges"][0] == 2.5 and stats[2]["histogram"]["counts"][5] == 500  # constant


def test_fixed_edges_clip_outliers_into_the_end_bins() -> None:
    (s,) = baseline.feature_stats(np.array([-5.0, 0.05, 0.5, 7.0]), ["x"], [0.0, 0.1, 0.5, 1.0])
    assert s["histogram"]["counts"] == [2, 0, 2] and s["min"] == -5.0 and s["max"] == 7.0


def test_the_evaluators_drift_reads_the_baseline() -> None:
    train = RNG.normal(0, 1, (2000, 3))
    stats = baseline.feature_stats(train, ["f0", "f1", "f2"])
    same = feature_drift(RNG.normal(0, 1, (1000, 3)), stats, Thresholds())
    moved = feature_drift(RNG.normal(0, 1, (1000, 3)) + np.array([0, 0, 2.0]), stats, Thresholds())
    assert same["judged"] and not same["drifted_features"]
    assert moved["drifted_features"] == ["f2"]


def test_higher_rank_inputs_get_channel_and_summary_statistics() -> None:
    images = RNG.random((50, 8, 8, 3)) * [1.0, 2.0, 4.0]
    stats = baseline.input_stats(images)
    assert stats["kind"] == "tensor" and len(stats["channels"]) == 3
    assert [c["max"] <= m for c, m in zip(stats["channels"], (1, 2, 4), strict=True)] == [True] * 3
    assert stats["channels"][2]["mean"] == pytest.approx(images[..., 2].mean())
    assert sum(stats["summary"]["histogram"]["counts"]) == images.size
    wide = baseline.input_stats(RNG.random((20, 4, 100)))
    assert "channels" not in wide and wide["summary"]["max"] <= 1.0
    flat = baseline.input_stats(RNG.random((20, 2)), ["u", "v"])
    assert flat["kind"] == "features" and [f["name"] for f in flat["features"]] == ["u", "v"]


def test_output_distributions() -> None:
    ids = baseline.output_stats(np.array([2, 0, 2, 2], dtype=np.int64))
    assert ids == {"kind": "counts", "values": [0, 2], "counts": [1, 3]}
    probs = baseline.output_stats(softmax(RNG.normal(size=(40, 4))))
    assert probs["kind"] == "columns" and len(probs["columns"]) == 4
    emb = baseline.output_stats(RNG.normal(size=(40, 32)))
    assert emb["kind"] == "summary" and emb["row_norm"]["min"] > 0


# task inference

PROBS = softmax(RNG.normal(size=(60, 3)))
LOGITS = RNG.normal(size=(60, 3)) * 4


def test_probabilities_and_class_id_make_a_classifier() -> None:
    outputs = {"class_id": spec("int64", -1), "probs": spec("float32", -1, 3)}
    task = tasks.infer_task("serving_default", outputs, {"probs": PROBS, "class_id": PROBS.argmax(1)})
    assert task["kind"] == "classification" and task["probabilities"] == "probs" and task["class_id"] == "class_id"
    assert tasks.n_classes(task, outputs, {}) == 3


def test_one_float_per_row_is_regression() -> None:
    for shape in ([-1], [-1, 1]):
        task = tasks.infer_task("s", {"output_0": spec("float32", *shape)}, {"output_0": RNG.normal(size=60)})
        assert task["kind"] == "regression" and task["score"] == "output_0"


def test_logits_are_classification_only_when_the_labels_say_so() -> None:
    outputs = {"out": spec("float32", -1, 3)}
    with pytest.raises(PackagingError, match=re.escape("pass --task classification|regression|embedding")):
        tasks.infer_task("s", outputs, {"out": LOGITS})
    task = tasks.infer_task("s", outputs, {"out": LOGITS}, n_labels=3)
    assert task["kind"] == "classification" and task["logits"] == "out" and task["probabilities"] is None
    np.testing.assert_allclose(tasks.probabilities(task, {"out": LOGITS}), softmax(LOGITS))
    assert tasks.infer_task("s", outputs, {"out": LOGITS}, kind="embedding")["embedding"] == "out"


def test_explicit_task_must_fit_the_outputs() -> None:
    outputs = {"a": spec("float32", -1, 4), "b": spec("float32", -1, 4)}
    values = {"a": LOGITS, "b": LOGITS}
    with pytest.raises(PackagingError, match=re.escape("regression score (one float per row): candidates none")):
        tasks.infer_task("s", outputs, values, kind="regression")
    with pytest.raises(PackagingError, match="which output is the embedding"):
        tasks.infer_task("s", outputs, values, kind="embedding")


# fidelity


def test_classification_fidelity_numbers() -> None:
    task = {"kind": "classification", "probabilities": "p", "class_id": None, "logits": None}
    ref = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    got = np.array([[0.85, 0.15], [0.55, 0.45], [0.7, 0.3], [0.2, 0.8]])
    numbers = fidelity.classification({"p": ref}, {"p": got}, task)
    assert numbers["top1_agreement"] == 0.75
    assert numbers["max_abs_prob_delta"] == pytest.approx(0.15)
    assert numbers["mean_abs_prob_delta"] == pytest.approx(0.05)
    problems = fidelity.problems({"kind": "classification"}, numbers, fidelity.Bounds())
    assert problems == ["top-1 agreement 0.7500 (bound >= 0.99)", "max |Δprob| 0.1500 (bound <= 0.1)"]
    assert fidelity.problems({"kind": "classification"}, numbers, fidelity.Bounds(0.7, 0.2)) == []


def test_regression_error_is_relative_to_the_typical_score() -> None:
    ref = np.array([100.0, 200.0, -300.0, 0.0])  # mean |ref| = 150
    got = ref + np.array([1.5, -3.0, 0.0, 0.75])
    numbers = fidelity.regression(ref, got)
    assert numbers == {"max_rel_error": 0.02, "mean_rel_error": pytest.approx(5.25 / 4 / 150), "max_abs_error": 3.0}
    assert fidelity.problems({"kind": "regression"}, numbers, fidelity.Bounds(max_rel_error=0.01)) == [
        "max relative error 0.0200 (bound <= 0.01)"
    ]


def test_embedding_fidelity_is_cosine_similarity() -> None:
    ref = RNG.normal(size=(20, 8))
    numbers = fidelity.embedding(ref, ref * 3)  # same direction, other length
    assert numbers["min_cosine"] == pytest.approx(1.0) and numbers["rel_error"] == pytest.approx(2.0)
    flipped = ref.copy()
    flipped[0] *= -1
    assert fidelity.embedding(ref, flipped)["min_cosine"] == pytest.approx(-1.0)
    assert fidelity.relative_error(np.zeros(3), np.zeros(3)) == 0.0
