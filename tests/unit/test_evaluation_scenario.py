"""The acceptance story of continued evaluation, in process (moto in-process, real evaluator, real model): clean
traffic for 20 daily windows starts no retraining; covariate drift is detected in the first drifted window and starts
exactly one retraining; concept drift (two labels swapped, inputs unchanged) is caught by accuracy, not by drift."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
from liteserve.evaluation import labels as lab
from liteserve.evaluation.evaluate import EvaluationConfig, Evaluator
from liteserve.evaluation.policy import RetrainPolicy
from liteserve.records import batch_object

from liteserve_dev.scenario import Scenario, generate
from tests.support import MODEL_ROOT
from tests.unit.test_evaluation_core import aws  # noqa: F401 - the in-process AWS fixture

CLEAN_DAYS = 20


def replay(models, digits, scenario: Scenario) -> list[dict]:
    """Each day: its predictions (batch records per hour), its labels at the day's end, an evaluation just after."""
    x, y = digits
    model = models.get("digits")
    s3 = boto3.client("s3")
    labels = lab.LabelStore("labels")
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    evaluator = Evaluator(config, RetrainPolicy(min_labelled=500, cooldown_hours=7 * 24))
    results = []
    for day in generate(x, y, scenario):
        out = model.predict("serving_default", {"x": day["x"]})
        hours = ((day["times"] - scenario.day_start(day["day"])) // 3600).astype(int)
        for hour in np.unique(hours):
            idx = np.flatnonzero(hours == hour)
            name, body = batch_object(
                f"day{day['day']}-h{hour}",
                0,
                scenario.day_start(day["day"]) + hour * 3600 + 1800,
                "digits",
                model.version,
                "serving_default",
                [day["keys"][i] for i in idx],
                {"x": day["x"][idx]},
                {k: v[idx] for k, v in out.items()},
            )
            s3.put_object(Bucket="data", Key=name, Body=body)
        end = scenario.day_start(day["day"] + 1)
        labels.put_many([lab.Label(k, str(int(v))) for k, v in zip(day["keys"], day["y"], strict=True)], "t", end)
        summary = evaluator.run(end + 60, now=end + 60)["models"]["digits"]
        results.append({"day": day["day"], "severity": day["severity"], **summary})
    return results


def retrain_events(sqs, url) -> list[dict]:
    got = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        got += [json.loads(m["Body"])["detail"] for m in msgs]
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


@pytest.mark.slow
def test_clean_windows_then_covariate_drift_one_retraining(aws, models, digits):  # noqa: F811
    sqs, url = aws
    scenario = Scenario(start="2026-10-01", days=CLEAN_DAYS + 4, per_day=520, drift_start=CLEAN_DAYS, ramp_days=5)
    results = replay(models, digits, scenario)
    clean, drifted = results[:CLEAN_DAYS], results[CLEAN_DAYS:]
    assert all(r["versions"]["1"]["labelled"] >= 500 for r in results)
    assert [r["retrain"] for r in clean] == [False] * CLEAN_DAYS
    assert drifted[0]["retrain"] is True and drifted[0]["trigger"] == "claimed"  # the first window after onset
    assert any("dataset drift" in reason for reason in drifted[0]["reasons"])
    assert [r["trigger"] for r in drifted[1:]] == ["cooldown"] * 3
    events = retrain_events(sqs, url)
    assert len(events) == 1 and events[0]["window"]["id"] == drifted[0]["report"].split("/")[-2]


@pytest.mark.slow
def test_concept_drift_is_caught_by_accuracy_not_by_data_drift(aws, models, digits):  # noqa: F811
    sqs, url = aws
    scenario = Scenario(start="2026-10-01", days=3, per_day=520, drift_start=99, kinds=(), swap=(3, 8), swap_from=2)
    results = replay(models, digits, scenario)
    assert [r["retrain"] for r in results] == [False, False, True]
    reasons = results[2]["reasons"]
    assert any("below the floor" in r or "dropped" in r for r in reasons)
    assert not any("dataset drift" in r for r in reasons)
    assert len(retrain_events(sqs, url)) == 1
