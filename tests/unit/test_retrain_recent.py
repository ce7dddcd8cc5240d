"""Recent data for retraining: which log objects belong to a window, the join with labels by key, the key-based
holdout split and the oversampling factor (pure, no TensorFlow)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from liteserve_dev.retraining import Rows
from training.recent import DataWindow, is_holdout, join, log_objects, oversample_factor, split_holdout

LABELS = [str(i) for i in range(10)]
X3 = {"x": {"dtype": "float32", "shape": [-1, 3]}}
T0 = 1_793_491_200.0  # 2026-11-01T00:00:00Z
WINDOW = DataWindow.ending(T0 + 86400, 24, "2026-11-02T00:00:00Z")


def rec(key, t, x=None, label_model="digits", signature="serving_default", **extra):
    return {
        "key": key,
        "time": t,
        "model": label_model,
        "version": "1",
        "signature": signature,
        "source": "online",
        "x": x if x is not None else [float(len(str(key)))] * 3,
        "outputs": {"class_id": 1},
        **extra,
    }


def test_window_from_end_and_hours() -> None:
    w = DataWindow.ending(T0 + 7 * 86400, 168, "w")
    assert (w.start, w.end) == (T0, T0 + 7 * 86400)
    assert w.as_dict()["start_iso"] == "2026-11-01T00:00:00Z"
    assert w.as_dict()["hours"] == 168
    with pytest.raises(ValueError, match="positive"):
        DataWindow.ending(T0, 0, "w")


def test_log_objects_keep_hour_folders_within_an_hour_of_the_window() -> None:
    keys = [
        "predictions/online/2026/10/31/22/a.gz",  # 2 h before the start: out
        "predictions/online/2026/10/31/23/b.gz",  # the hour before the start: in (Firehose files by arrival)
        "predictions/batch/2026/11/01/12/job-part-00000.jsonl.gz",
        "predictions/online/2026/11/02/00/c.gz",  # the hour of the end: in
        "predictions/online/2026/11/02/01/d.gz",  # the hour after the end: in
        "predictions/online/2026/11/02/02/e.gz",  # out
        "reports/digits/2026/11/01/05/report.json",  # not the prediction log
    ]
    got = log_objects(keys, WINDOW)
    assert got == sorted(
        [
            "predictions/batch/2026/11/01/12/job-part-00000.jsonl.gz",
            "predictions/online/2026/10/31/23/b.gz",
            "predictions/online/2026/11/02/00/c.gz",
            "predictions/online/2026/11/02/01/d.gz",
        ]
    )


def test_join_keeps_the_latest_serving_prediction_per_key_with_its_label() -> None:
    records = [
        rec("a", T0 + 10, x=[0.0, 0.0, 0.0]),
        rec("a", T0 + 20, x=[1.0, 1.0, 1.0]),  # the latest prediction of a key wins
        rec("a", T0 + 30, x=[9.0, 9.0, 9.0], signature="embedding"),  # another signature: not a served input
        rec("b", T0 + 10),
        rec("c", T0 + 10),  # no label yet
        rec("d", T0 + 10),  # label outside the model's classes
        rec(None, T0 + 10),  # unkeyed: cannot be joined
        rec("e", T0 - 10),  # before the window
        rec("f", T0 + 10, label_model="digits-edge"),  # another model
        rec("g", T0 + 10, x=[1.0]),  # wrong width
        rec(7, T0 + 10),  # integer keys join as strings
    ]
    labels = {"a": "3", "b": "4", "d": "cat", "e": "1", "f": "1", "g": "2", "7": "7"}
    rows, counts = join(records, labels, "digits", WINDOW, X3, LABELS)
    assert rows.keys == ["7", "a", "b"]
    assert rows.labels.tolist() == [7, 3, 4] and rows.labels.dtype == np.int64
    assert rows.inputs["x"].dtype == np.float32 and rows.inputs["x"].shape == (3, 3)
    assert rows.inputs["x"][1].tolist() == [1.0, 1.0, 1.0]
    assert counts == {
        "records": 11,
        "other_models": 1,
        "outside_window": 1,
        "other_signatures": 1,
        "predictions": 7,
        "unkeyed": 1,
        "unlabelled": 1,
        "unknown_label": 1,
        "bad_features": 1,
        "labelled": 3,
    }


def test_join_does_not_depend_on_record_order() -> None:
    records = [rec(f"k{i}", T0 + i) for i in range(50)]
    labels = {f"k{i}": str(i % 10) for i in range(50)}
    a, _ = join(records, labels, "digits", WINDOW, X3, LABELS)
    b, _ = join(list(reversed(records)), labels, "digits", WINDOW, X3, LABELS)
    assert a.keys == b.keys and np.array_equal(a.inputs["x"], b.inputs["x"]) and np.array_equal(a.labels, b.labels)


def test_join_of_nothing_is_empty() -> None:
    rows, counts = join([], {}, "digits", WINDOW, {"x": {"dtype": "float32", "shape": [-1, 64]}}, LABELS)
    assert len(rows) == 0 and rows.inputs["x"].shape == (0, 64) and counts["labelled"] == 0


def test_join_reads_named_inputs_of_new_and_legacy_records_with_regression_targets() -> None:
    """Several inputs (one rank 4) from `inputs`; a legacy `x` record of a two-input model cannot be read; labels
    are float targets when there are no class names."""
    spec = {"image": {"dtype": "float32", "shape": [-1, 2, 2, 1]}, "meta": {"dtype": "float32", "shape": [-1, 3]}}
    image = [[[0.5], [1.0]], [[0.0], [0.25]]]
    records = [
        rec("a", T0 + 1, inputs={"image": image, "meta": [1, 2, 3]}),
        rec("b", T0 + 1, inputs={"image": image, "meta": [1, 2]}),  # meta too short
        rec("c", T0 + 1, inputs={"image": image}),  # meta missing
        rec("d", T0 + 1),  # legacy `x` only: ambiguous for two inputs
        rec("e", T0 + 1, inputs={"image": image, "meta": [0, 0, 0]}),
        rec("f", T0 + 1, inputs={"image": image, "meta": [0, 0, 0]}),  # its label is not a number
    ]
    labels = {"a": "151", "b": "1", "c": "1", "d": "1", "e": "-2.5", "f": "tall"}
    rows, counts = join(records, labels, "digits", WINDOW, spec, None)
    assert rows.keys == ["a", "e"]
    assert rows.labels.tolist() == [151.0, -2.5] and rows.labels.dtype == np.float64
    assert rows.inputs["image"].shape == (2, 2, 2, 1) and rows.inputs["meta"].tolist() == [[1, 2, 3], [0, 0, 0]]
    assert (counts["bad_features"], counts["unknown_label"]) == (3, 1)
    legacy, _ = join([rec("z", T0 + 1, x=[1.0, 2.0, 3.0])], {"z": "0.5"}, "digits", WINDOW, X3, None)
    assert legacy.inputs["x"].tolist() == [[1.0, 2.0, 3.0]] and legacy.labels.tolist() == [0.5]


def test_holdout_is_sha256_of_the_key_mod_5() -> None:
    keys = [f"2026-11-0{d}-{i:06d}" for d in range(1, 4) for i in range(2000)]
    flags = [is_holdout(k) for k in keys]
    assert flags == [int(hashlib.sha256(k.encode()).hexdigest(), 16) % 5 == 0 for k in keys]
    assert 0.18 < np.mean(flags) < 0.22


def test_split_holdout_is_disjoint_complete_and_stable() -> None:
    keys = [f"key-{i}" for i in range(1000)]
    rows = Rows({"x": np.arange(1000, dtype=np.float32).reshape(-1, 1)}, np.arange(1000) % 10, keys)
    train, hold = split_holdout(rows)
    assert set(train.keys).isdisjoint(hold.keys)
    assert sorted(train.keys + hold.keys) == sorted(keys)
    assert all(is_holdout(k) for k in hold.keys) and not any(is_holdout(k) for k in train.keys)
    # rows stay aligned with their keys
    assert [int(v) for v in hold.inputs["x"][:, 0]] == [int(k.split("-")[1]) for k in hold.keys]
    assert [int(v) for v in hold.labels] == [int(k.split("-")[1]) % 10 for k in hold.keys]
    again, _ = split_holdout(Rows({"x": rows.inputs["x"][::-1]}, rows.labels[::-1], list(reversed(keys))))
    assert sorted(again.keys) == sorted(train.keys)


@pytest.mark.parametrize(
    ("original", "recent", "share", "factor"),
    [
        (1437, 3320, 0.0, 1),
        (1437, 3320, 0.5, 1),  # already the majority
        (1437, 480, 0.5, 3),  # 3 * 480 = 1440 >= 1437
        (1437, 478, 0.5, 4),  # 3 * 478 = 1434 < 1437
        (1437, 3320, 0.9, 4),  # 4 * 3320 / (1437 + 13280) = 0.902
        (1437, 0, 0.9, 1),
    ],
)
def test_oversample_factor(original: int, recent: int, share: float, factor: int) -> None:
    k = oversample_factor(original, recent, share)
    assert k == factor
    if recent:
        assert k == 1 or (k - 1) * recent / (original + (k - 1) * recent) < share <= k * recent / (
            original + k * recent
        )


def test_oversample_factor_rejects_a_share_of_one() -> None:
    with pytest.raises(ValueError, match="share"):
        oversample_factor(10, 10, 1.0)
