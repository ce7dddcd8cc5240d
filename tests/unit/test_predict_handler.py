"""functions/predict/app.py driven with the sample events in events/predict (the same files `sam local invoke -e`
and `localcloud invoke -e` take)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.support import ROOT, FakeLambdaContext, import_predict_handler

EVENTS = sorted((ROOT / "events" / "predict").glob("*.json"))


@pytest.fixture(scope="module")
def app():
    return import_predict_handler()


@pytest.mark.parametrize("path", EVENTS, ids=[p.stem for p in EVENTS])
def test_every_sample_event_gets_its_answer(app, path, capsys):
    event = json.loads(path.read_text())
    out = app.lambda_handler(event, FakeLambdaContext())
    assert set(out) == {"statusCode", "headers", "body", "isBase64Encoded"}
    if path.stem == "tfserving-artifact":  # the one binary answer: the model file, with its digest
        assert out["headers"]["content-type"] == "application/octet-stream" and out["isBase64Encoded"]
        assert hashlib.sha256(base64.b64decode(out["body"])).hexdigest() == out["headers"]["x-liteserve-sha256"]
        body = None
    else:
        assert out["headers"]["content-type"] == "application/json"
        body = json.loads(out["body"])
    if path.stem.endswith("-bad"):
        assert out["statusCode"] == 400
        assert "instance 1: input 'x' expected 64 values, got 60" in body["error"]
    else:
        assert out["statusCode"] == 200, body
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "every invocation flushes its metrics as EMF"
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    if path.stem.endswith("-bad"):
        assert "Errors.bad_request" in names
    else:
        assert "Latency" in names
    if ("predict" in path.stem or "infer" in path.stem) and not path.stem.endswith("-bad"):
        assert "Instances" in names


def test_keyed_event_returns_keys_in_order(app):
    event = json.loads((ROOT / "events" / "predict" / "tfserving-predict-keyed.json").read_text())
    body = json.loads(app.lambda_handler(event, FakeLambdaContext())["body"])
    assert [p["key"] for p in body["predictions"]] == ["img-0001", "img-0002"]


def test_unexpected_failure_keeps_the_error_shape(app, monkeypatch):
    def boom(request):
        raise RuntimeError("bug")

    monkeypatch.setattr(app.service, "handle", boom)
    event = json.loads((ROOT / "events" / "predict" / "v2-health-live.json").read_text())
    out = app.lambda_handler(event, FakeLambdaContext())
    assert out["statusCode"] == 500
    assert json.loads(out["body"]) == {"error": "internal error"}


def test_inference_metrics_carry_model_and_version_and_the_top1_confidence(app, capsys):
    """A canary and its primary are told apart by the `version` dimension (issue 12)."""
    event = json.loads((ROOT / "events" / "predict" / "tfserving-predict-keyed.json").read_text())
    body = json.loads(app.lambda_handler(event, FakeLambdaContext())["body"])
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [blob] = [b for b in emf if "Latency" in b]  # (a cold start adds a ColdStart document of its own)
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert {"model", "version"} <= set(directive["Dimensions"][0])
    assert (blob["model"], blob["version"]) == ("digits", "1")
    expected = sum(max(p["probabilities"]) for p in body["predictions"]) / len(body["predictions"])
    [confidence] = blob["Confidence"] if isinstance(blob["Confidence"], list) else [blob["Confidence"]]
    assert abs(confidence - expected) < 1e-6
    assert {m["Name"] for m in directive["Metrics"]} >= {"Latency", "Instances", "Confidence"}


def test_a_refused_inference_is_one_rejection_line_and_other_refusals_none(app, capsys):
    event = json.loads((ROOT / "events" / "predict" / "tfserving-predict-bad.json").read_text())
    assert app.lambda_handler(event, FakeLambdaContext())["statusCode"] == 400
    rejected = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "prediction.rejected" in line]
    assert [(r["model"], r["protocol"], r["status"], r["kind"]) for r in rejected] == [
        ("digits", "tfserving", 400, "bad_request")
    ]
    missing = {**event, "rawPath": "/v1/models/nope/metadata", "requestContext": {"http": {"method": "GET"}}}
    app.lambda_handler({**missing, "body": None}, FakeLambdaContext())
    assert "prediction.rejected" not in capsys.readouterr().out  # not an inference route
