"""Label-free monitoring (issue 12, part 3): data quality against the training baseline, input and prediction drift
with zero labels, the policy's alert / retrain choice, the rate-of-change trigger, and the evaluator writing
violations.json and emitting DriftDetected once per window (in-process moto)."""

from __future__ import annotations

import json

import boto3
import numpy as np
import orjson
import pytest
from liteserve.evaluation.evaluate import EvaluationConfig, Evaluator
from liteserve.evaluation.policy import RetrainPolicy, decide
from liteserve.evaluation.quality import QualityThresholds, data_quality, metric_trend
from liteserve.records import batch_object

from liteserve_dev.scenario import Scenario, generate
from tests.support import MODEL_ROOT
from tests.unit.test_evaluation_core import T0, aws

__all__ = ["aws"]
FEATURES = [
    {"name": "a", "min": 0.0, "max": 1.0},
    {"name": "b", "min": -2.0, "max": 2.0},
]


def test_missing_and_out_of_range_shares_and_violations():
    x = np.zeros((300, 2))
    x[:3, 0] = np.nan  # 1 % missing
    x[:30, 1] = 2.5  # 10 % above the range
    q = data_quality(x, FEATURES, QualityThresholds(min_rows=100))
    assert [(f["name"], f["missing_share"], f["out_of_range_share"]) for f in q["features"]] == [
        ("a", 0.01, 0.0),
        ("b", 0.0, 0.1),
    ]
    assert [(v["check"], v["feature"]) for v in q["violations"]] == [("missing", "a"), ("out_of_range", "b")]
    assert q["violations"][1]["message"] == "10.0% of 'b' lies outside the training range [-2, 2]"
    widened = data_quality(x, FEATURES, QualityThresholds(min_rows=100, range_tolerance=0.2, missing_share=0.05))
    assert widened["violations"] == []  # 2.5 is within 2 + 0.2 * 4; 1 % missing is under 5 %
    few = data_quality(x[:50], FEATURES, QualityThresholds(min_rows=100))
    assert few["judged"] is False and few["violations"] == []
    with pytest.raises(ValueError, match="describes 2 features"):
        data_quality(np.zeros((5, 3)), FEATURES, QualityThresholds())


def test_rate_of_change_compares_with_the_best_of_the_last_reports():
    history = [("w1", 0.97), ("w2", 0.95), ("w3", 0.93), ("w4", 0.92)]
    assert metric_trend(history, 0.90, reports=3, max_drop=0.06) is None  # 0.05 below 0.95, the best of the last 3
    assert "fell 0.0700 below the best of the last 4 reports" in metric_trend(history, 0.90, 4, 0.06)
    assert metric_trend([], 0.5, 3, 0.04) is None and metric_trend(history, None, 3, 0.04) is None


@pytest.mark.parametrize(
    ("action", "predictions", "retrain", "alert"),
    [
        ("alert", 500, False, True),
        ("retrain", 500, True, False),
        ("off", 500, False, False),
        ("alert", 50, False, False),
    ],
)
def test_label_free_findings_alert_or_retrain_without_labels(action, predictions, retrain, alert):
    policy = RetrainPolicy(label_free=action, label_free_min_predictions=200)
    d = decide(policy, 0, None, 0.97, False, 0.0, predictions=predictions, findings=["input drift: 40% ..."])
    assert (d.retrain, d.alert) == (retrain, alert)
    if retrain:
        assert d.reasons == ["label-free: input drift: 40% ..."]


def test_trend_triggers_with_labels_and_policy_keys_are_checked():
    policy = RetrainPolicy(min_labelled=10)
    d = decide(policy, 100, 0.95, 0.96, False, 0.0, predictions=100, trend="accuracy 0.95 fell ...")
    assert d.retrain and d.reasons == ["accuracy 0.95 fell ..."]
    with pytest.raises(ValueError, match="unknown quality setting"):
        RetrainPolicy.from_dict({"quality": {"max_nan": 1}})
    with pytest.raises(ValueError, match="label_free must be one of"):
        RetrainPolicy.from_dict({"label_free": "page"})
    assert RetrainPolicy.from_dict({"quality": {"out_of_range_share": 0.1}}).quality.out_of_range_share == 0.1


def _drop_window(models, digits, drifted: bool, t: float, prefix: str) -> None:
    x, y = digits
    scenario = Scenario(start="2026-11-28", days=2, per_day=400, drift_start=1, ramp_days=1)
    day = generate(x, y, scenario)[1 if drifted else 0]
    model = models.get("digits")
    out = model.predict("serving_default", {"x": day["x"]})
    keys = [f"{prefix}-{k}" for k in day["keys"]]
    name, body = batch_object(prefix, 0, t, "digits", model.version, "serving_default", keys, {"x": day["x"]}, out)
    boto3.client("s3").put_object(Bucket="data", Key=name, Body=body)


def _alert_queue(sqs) -> str:
    url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(Name="drift", EventPattern=json.dumps({"detail-type": ["DriftDetected"]}))
    events.put_targets(Rule="drift", Targets=[{"Id": "q", "Arn": arn}])
    return url


def test_zero_labels_drift_is_flagged_once_per_window_and_clean_traffic_is_not(aws, models, digits):
    sqs, retrain_url = aws
    alerts = _alert_queue(sqs)
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    evaluator = Evaluator(config, RetrainPolicy())
    s3 = boto3.client("s3")

    _drop_window(models, digits, drifted=False, t=T0, prefix="clean")
    clean = evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    assert (clean["retrain"], clean["alert"], clean["findings"]) == (False, None, [])
    violations = orjson.loads(
        s3.get_object(Bucket="data", Key="reports/digits/2026-11-28T03:00:00Z/violations.json")["Body"].read()
    )
    assert violations["versions"]["1"]["judged"] is True and violations["versions"]["1"]["violations"] == []

    _drop_window(models, digits, drifted=True, t=T0 + 3600, prefix="drift")
    fire = T0 + 3600 + 120
    first = evaluator.run(fire, now=fire)["models"]["digits"]
    again = evaluator.run(fire + 60, now=fire + 60)["models"]["digits"]  # a repeated schedule delivery
    assert first["retrain"] is False and (first["alert"], again["alert"]) == ("claimed", "duplicate")
    assert any(f.startswith("data quality:") for f in first["findings"])
    assert any(f.startswith("input drift:") for f in first["findings"])
    key = "reports/digits/2026-11-28T04:00:00Z/"
    violations = orjson.loads(s3.get_object(Bucket="data", Key=key + "violations.json")["Body"].read())
    found = violations["versions"]["1"]
    assert found["violations"] and found["input_drift"]["dataset_drift"] is True
    assert {v["check"] for v in found["violations"]} == {"out_of_range"}
    html = s3.get_object(Bucket="data", Key=key + "report.html")["Body"].read().decode()
    # the repeated delivery rewrote the window's report: same findings, the claim already taken
    assert "Label-free alert (DriftDetected): duplicate" in html and "lies outside the training range" in html
    [message] = sqs.receive_message(QueueUrl=alerts, MaxNumberOfMessages=10).get("Messages", [])
    detail = json.loads(message["Body"])["detail"]
    assert detail["model"] == "digits" and detail["violations"].endswith(key + "violations.json")
    assert sqs.receive_message(QueueUrl=retrain_url, MaxNumberOfMessages=10).get("Messages", []) == []

    retrainer = Evaluator(config, RetrainPolicy(label_free="retrain"))
    later = T0 + 2 * 3600 + 120
    _drop_window(models, digits, drifted=True, t=later - 120, prefix="drift2")
    summary = retrainer.run(later, now=later)["models"]["digits"]
    assert summary["retrain"] is True and summary["trigger"] == "claimed"
    assert all(r.startswith("label-free: ") for r in summary["reasons"])
    assert len(sqs.receive_message(QueueUrl=retrain_url, MaxNumberOfMessages=10).get("Messages", [])) == 1


def test_refused_requests_are_logged_and_their_share_is_a_violation(aws, models, digits):
    """Requests the API refused reach the prediction log as `prediction.rejected` lines; a window where more than
    `quality.rejected_share` of a model's requests were refused gets a data-quality finding (issue 12)."""
    from liteserve.predlog import PredictionLog
    from liteserve.records import ONLINE_PREFIX, hour_path

    sqs, _ = aws
    alerts = _alert_queue(sqs)
    lines: list[str] = []
    log = PredictionLog(write=lines.append, clock=lambda: T0)
    for i in range(8):
        assert log.rejected("digits", "tfserving", 400, "bad_request", f"bad-{i}") == 1
    assert orjson.loads(lines[0]) == {
        "liteserve": "prediction.rejected",
        "time": T0,
        "request_id": "bad-0",
        "model": "digits",
        "protocol": "tfserving",
        "status": 400,
        "kind": "bad_request",
    }
    x, _ = digits
    model = models.get("digits")
    out = model.predict("serving_default", {"x": x[:40].astype(np.float32)})
    accepted = [
        orjson.dumps(
            {
                "key": f"ok-{i}",
                "time": T0,
                "model": "digits",
                "version": model.version,
                "signature": "serving_default",
                "source": "online",
                "request_id": f"req-{i // 2}",  # two instances per accepted request: 20 requests
                "x": x[i],
                "outputs": {k: v[i] for k, v in out.items()},
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        ).decode()
        + "\n"
        for i in range(40)
    ]
    body = "".join(accepted + lines).encode()
    boto3.client("s3").put_object(Bucket="data", Key=f"{ONLINE_PREFIX}{hour_path(T0)}/log-1", Body=body)
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    summary = Evaluator(config, RetrainPolicy(label_free_min_predictions=10)).run(T0 + 120, now=T0 + 120)
    result = summary["models"]["digits"]
    assert result["alert"] == "claimed", result
    assert result["findings"] == ["data quality: 28.6% of 28 inference requests were refused as bad input (> 5%)"]
    key = "reports/digits/2026-11-28T03:00:00Z/violations.json"
    found = orjson.loads(boto3.client("s3").get_object(Bucket="data", Key=key)["Body"].read())
    assert found["rejected_requests"]["rejected"] == 8 and found["rejected_requests"]["accepted"] == 20
    assert len(sqs.receive_message(QueueUrl=alerts, MaxNumberOfMessages=10).get("Messages", [])) == 1
