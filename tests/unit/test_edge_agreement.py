"""Edge-vs-cloud agreement records in the cloud (issue 12, part 5): validation of POST /v1/edge/agreements, the
stored form, and the evaluation's agreement per edge version with edge and cloud accuracy on labelled keys."""

from __future__ import annotations

import gzip

import boto3
import orjson
import pytest
from liteserve.errors import BadRequest
from liteserve.evaluation import labels as lab
from liteserve.evaluation.edge import agreement_report, edge_object, parse_post
from liteserve.evaluation.evaluate import EvaluationConfig, Evaluator
from liteserve.evaluation.policy import RetrainPolicy
from liteserve.records import batch_object

from tests.support import MODEL_ROOT
from tests.unit.test_evaluation_core import T0, aws

__all__ = ["aws"]


def record(key: object, edge: int, cloud: int, version: str = "digits-edge@1", **extra: object) -> dict:
    return {
        "key": key,
        "status": "refined",
        "via": "online",
        "edge_model": version,
        "edge_class_id": edge,
        "edge_confidence": 0.4,
        "cloud_model": "digits-cloud",
        "cloud_class_id": cloud,
        "cloud_confidence": 0.9,
        "agree": edge == cloud,
        "error": None,
        "recorded_at": T0,
        **extra,
    }


def test_posts_are_all_or_nothing_and_name_every_bad_record():
    good = parse_post({"records": [record("a", 1, 1), record(7, 2, 3)]})
    assert [r["key"] for r in good] == ["a", 7] and "status" not in good[0]  # the client's extras are dropped
    with pytest.raises(BadRequest) as err:
        parse_post([record("a", 1, 1), record("", 1, 1), record("c", -1, 1), record("d", 1, 1, edge_confidence=2)])
    assert err.value.message.startswith("3 bad record(s), nothing stored: record 1: 'key'")
    assert "record 2: 'edge_class_id' must be a class id" in err.value.message
    assert "record 3: 'edge_confidence' must be a number in [0, 1]" in err.value.message
    for body in ([], {}, "x", [record("a", 1, 1)] * 1001):
        with pytest.raises(BadRequest):
            parse_post(body)
    name, data = edge_object(good, now=T0)
    assert name.startswith("predictions/edge/2026/11/28/03/") and name.endswith(".jsonl.gz")
    assert [orjson.loads(line)["time"] for line in gzip.decompress(data).splitlines()] == [T0, T0]


def test_agreement_and_accuracies_per_edge_version_with_retries_counted_once():
    stored = [{**r, "time": T0} for r in parse_post([record("a", 1, 1), record("b", 2, 3), record("c", 4, 4)])]
    stored += [{**r, "time": T0 + 1} for r in parse_post([record("b", 2, 3)])]  # a retried POST
    stored += [{**r, "time": T0} for r in parse_post([record("a", 1, 2, "digits-edge@2")])]
    labels = {"a": "1", "b": "3"}
    report = agreement_report(stored, labels, [str(i) for i in range(10)])
    assert report["digits-edge@1"] == {
        "escalations": 3,
        "labelled": 2,
        "agreement": 2 / 3,
        "edge_accuracy": 0.5,
        "cloud_accuracy": 1.0,
    }
    assert (report["digits-edge@2"]["agreement"], report["digits-edge@2"]["edge_accuracy"]) == (0.0, 1.0)


def test_the_evaluation_reports_edge_agreement_for_the_cloud_model(aws, models, digits):
    x, y = digits
    model = models.get("digits-cloud")
    out = model.predict("serving_default", {"x": x[:30]})
    keys = [f"k{i}" for i in range(30)]
    s3 = boto3.client("s3")
    name, body = batch_object("esc", 0, T0, "digits-cloud", model.version, "serving_default", keys, {"x": x[:30]}, out)
    s3.put_object(Bucket="data", Key=name, Body=body)
    records = parse_post([record(k, int(y[i]), int(out["class_id"][i])) for i, k in enumerate(keys)])
    s3.put_object(Bucket="data", Key=edge_object(records, now=T0 + 30)[0], Body=edge_object(records, now=T0 + 30)[1])
    lab.LabelStore("labels").put_many([lab.Label(k, str(int(y[i]))) for i, k in enumerate(keys)], "t", now=T0 + 60)
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    summary = Evaluator(config, RetrainPolicy()).run(T0 + 120, now=T0 + 120)["models"]["digits-cloud"]
    edge = summary["edge"]["digits-edge@1"]
    cloud_acc = float((out["class_id"] == y[:30]).mean())
    assert edge["escalations"] == edge["labelled"] == 30 and edge["edge_accuracy"] == 1.0
    assert edge["cloud_accuracy"] == pytest.approx(cloud_acc) and edge["agreement"] == pytest.approx(cloud_acc)
    html = s3.get_object(Bucket="data", Key=summary["report"][10:])["Body"].read().decode()
    assert "Edge devices: agreement with this model" in html and "digits-edge@1" in html
