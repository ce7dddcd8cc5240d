"""The retraining job's inputs: the RetrainRequested detail from RETRAIN_REQUEST, flag overrides for manual runs,
clear errors for unusable requests, and the holdout file's shape (no TensorFlow, no AWS)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import orjson
import pytest

from liteserve_dev.retraining import Rows
from training.retrain import RequestError, holdout_lines, parse_time, resolve

DETAIL = {
    "model": "digits",
    "version": "1",
    "window": {"id": "2026-11-12T00:00:00Z", "start": 1_794_355_200.0, "end": 1_794_441_601.0},
    "reasons": ["accuracy 0.71 < floor 0.90"],
    "metrics": {"accuracy": 0.71},
    "report": "s3://bucket/reports/digits/2026-11-12T00:00:00Z/report.json",
}
ENV = {"LITESERVE_BUCKET": "bucket", "LITESERVE_LABELS_TABLE": "labels"}


def args(**kw: object) -> argparse.Namespace:
    names = [
        "model",
        "parent",
        "window_end",
        "window_id",
        "window_hours",
        "min_labelled",
        "recent_share",
        "bucket",
        "labels_table",
        "model_root",
    ]
    return argparse.Namespace(**{n: kw.get(n) for n in names})


def test_request_from_the_event_detail() -> None:
    request, config = resolve(args(), {**ENV, "RETRAIN_REQUEST": json.dumps(DETAIL)})
    assert (request.model, request.parent, request.window_id) == ("digits", "1", "2026-11-12T00:00:00Z")
    assert request.window_end == 1_794_441_601.0
    assert request.report == DETAIL["report"] and request.detail == DETAIL
    assert (config.bucket, config.labels_table, config.window_hours, config.min_labelled) == (
        "bucket",
        "labels",
        168.0,
        500,
    )


def test_a_whole_eventbridge_event_is_accepted() -> None:
    event = {"detail-type": "RetrainRequested", "source": "liteserve.evaluation", "detail": DETAIL}
    request, _ = resolve(args(), {**ENV, "RETRAIN_REQUEST": json.dumps(event)})
    assert request.window_id == DETAIL["window"]["id"]


def test_environment_settings_and_flags_override() -> None:
    env = {**ENV, "RETRAIN_REQUEST": json.dumps(DETAIL), "LITESERVE_RETRAIN_WINDOW_HOURS": "48"}
    _, config = resolve(args(min_labelled=50), env)
    assert (config.window_hours, config.min_labelled) == (48.0, 50)
    request, _ = resolve(args(parent="3", window_id="rerun-1"), env)
    assert (request.parent, request.window_id, request.window_end) == ("3", "rerun-1", DETAIL["window"]["end"])


def test_manual_run_without_a_request() -> None:
    request, _ = resolve(args(model="digits", parent="1", window_end="2026-11-15T00:00:00Z"), ENV)
    assert request.window_end == parse_time("1794700800")
    assert request.window_id == "manual-2026-11-15T00:00:00Z"
    assert request.report is None


def test_a_scheduled_request_ends_its_window_at_the_fire_time() -> None:
    """What the template's ScheduledRetrainRule sends: no version, the window end as the schedule's ISO time."""
    scheduled = {"model": "digits", "window": {"id": "scheduled-2026-12-01T06:00:00Z", "end": "2026-12-01T06:00:00Z"}}
    request, _ = resolve(args(), {**ENV, "RETRAIN_REQUEST": json.dumps(scheduled)})
    assert (request.parent, request.window_id) == (None, "scheduled-2026-12-01T06:00:00Z")
    assert request.window_end == parse_time("2026-12-01T06:00:00Z")


@pytest.mark.parametrize(
    ("env", "kw", "message"),
    [
        ({**ENV, "RETRAIN_REQUEST": "{not json"}, {}, "not valid JSON"),
        ({**ENV, "RETRAIN_REQUEST": "[1]"}, {}, "JSON object"),
        ({**ENV, "RETRAIN_REQUEST": json.dumps({"model": "digits"})}, {}, "'window'"),
        ({**ENV, "RETRAIN_REQUEST": json.dumps({**DETAIL, "window": {"id": "w", "end": "soon"}})}, {}, "not a time"),
        (ENV, {}, "nothing to retrain"),
        ({"RETRAIN_REQUEST": json.dumps(DETAIL)}, {}, "LITESERVE_BUCKET"),
        ({**ENV, "RETRAIN_REQUEST": json.dumps(DETAIL), "LITESERVE_RETRAIN_MIN_LABELLED": "many"}, {}, "int"),
        ({**ENV, "RETRAIN_REQUEST": json.dumps(DETAIL)}, {"recent_share": 1.0}, "recent share"),
        (ENV, {"model": "digits", "window_end": "yesterday"}, "not a time"),
    ],
)
def test_unusable_requests_are_named(env: dict, kw: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        resolve(args(**kw), env)


def test_holdout_lines_carry_key_features_and_label_name() -> None:
    rows = Rows({"x": np.asarray([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)}, np.asarray([3, 0]), ["a", "b"])
    manifest = {"task": {"kind": "classification"}, "labels": [f"c{i}" for i in range(4)]}
    lines = [orjson.loads(line) for line in holdout_lines(rows, manifest).splitlines()]
    assert lines == [{"key": "a", "x": [0.0, 0.5], "label": "c3"}, {"key": "b", "x": [1.0, 0.25], "label": "c0"}]


def test_holdout_lines_of_a_two_input_regression_model_name_their_inputs() -> None:
    rows = Rows({"a": np.asarray([[1.0], [2.0]]), "b": np.asarray([3, 4])}, np.asarray([1.5, -2.0]), ["k1", "k2"])
    lines = [orjson.loads(line) for line in holdout_lines(rows, {"task": {"kind": "regression"}}).splitlines()]
    assert lines == [
        {"key": "k1", "inputs": {"a": [1.0], "b": 3}, "label": "1.5"},
        {"key": "k2", "inputs": {"a": [2.0], "b": 4}, "label": "-2.0"},
    ]
