"""Labels parsing, log shipping, windows, the once-per-window retrain claim and the evaluator over in-process moto."""

from __future__ import annotations

import gzip
import json

import boto3
import numpy as np
import orjson
import pytest
from liteserve.errors import BadRequest
from liteserve.evaluation import labels as lab
from liteserve.evaluation.evaluate import DecisionStore, EvaluationConfig, Evaluator, Window
from liteserve.evaluation.policy import RetrainPolicy
from liteserve.evaluation.report import render_html
from liteserve.promotion.decide import Verdict
from liteserve.records import Signatures, batch_object, latest_per_key, read_object
from moto import mock_aws

from liteserve_dev.logship import matches, object_key, ship
from liteserve_dev.scenario import Scenario, generate, write
from tests.support import MODEL_ROOT, create_labels_table

T0 = 1795835400.0  # 2026-11-28T03:10:00Z


# ---------------------------------------------------------------- labels
def test_jsonl_label_file_good_rows_bad_rows_with_line_numbers():
    data = b'{"key": "a", "label": 3}\n\n{"key": "b", "label": "7"}\n{"key": "c"}\n{broken\n{"key": 5, "label": true}\n'
    good, bad = lab.parse_file("labels/x.jsonl", data)
    assert good == [lab.Label("a", "3"), lab.Label("b", "7")]
    assert [(b["line"], b["error"].split(":")[0]) for b in bad] == [
        (4, "missing 'label'"),
        (5, "not valid JSON"),
        (6, "'label' must be a string or a number, got bool"),
    ]


def test_csv_label_file_and_gzip():
    good, bad = lab.parse_file("labels/x.csv.gz", gzip.compress(b"label,key\n3,a\n4\n,b\n5,c\n"))
    assert good == [lab.Label("a", "3"), lab.Label("c", "5")]
    assert [b["line"] for b in bad] == [3, 4]
    assert lab.parse_file("labels/y.csv", b"id,label\n1,2\n")[1][0]["line"] == 1


def test_post_body_is_all_or_nothing_naming_every_bad_item():
    assert lab.parse_post([{"key": "a", "label": 1}]) == [lab.Label("a", "1")]
    assert lab.parse_post({"labels": [{"key": 1, "label": "x"}]}) == [lab.Label("1", "x")]
    with pytest.raises(BadRequest) as err:
        lab.parse_post([{"key": "a", "label": 1}, {"key": "", "label": 1}, {"key": "b", "label": 1, "extra": 0}])
    assert "item 1" in err.value.message and "item 2" in err.value.message and "nothing stored" in err.value.message
    for bad in ([], {}, "x"):
        with pytest.raises(BadRequest):
            lab.parse_post(bad)


def test_last_label_of_a_key_wins():
    unique, replaced = lab.last_wins([lab.Label("a", "1"), lab.Label("b", "2"), lab.Label("a", "3")])
    assert unique == [lab.Label("a", "3"), lab.Label("b", "2")] and replaced == 1
    assert lab.error_key("labels/d/x.jsonl") == "labels-errors/d/x.jsonl"
    assert lab.error_key("labels/x.csv") == "labels-errors/x.csv.jsonl"


# ---------------------------------------------------------------- log shipping and records
def test_ship_keeps_only_prediction_lines_as_firehose_writes_them():
    lines = [
        "START RequestId: 1 Version: $LATEST",
        '{"liteserve":"prediction","time":1}',
        '{"_aws":{"Timestamp":1},"Latency":[1]}',
        '{"level":"INFO","service":"liteserve","message":"x"}',
        '{"liteserve":"prediction.instance","time":2}\n',
        '{"liteserve":"prediction", broken',
    ]
    assert [matches(line) for line in lines] == [False, True, False, False, True, False]
    body = gzip.decompress(ship(lines)).splitlines()
    assert body == [b'{"liteserve":"prediction","time":1}', b'{"liteserve":"prediction.instance","time":2}']
    assert ship(lines[:1]) == b""
    key = object_key("s", now=T0)
    assert key.startswith("predictions/online/2026/11/28/03/s-1-2026-11-28-03-10-00-") and key.endswith(".gz")


def test_batch_objects_are_deterministic_and_read_back():
    x = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    outputs = {"class_id": np.array([1, 2, 3]), "probabilities": np.eye(3, dtype=np.float32)}
    name, body = batch_object("a/b", 4, T0, "digits", "1", "serving_default", ["k0", "k1", "k2"], {"x": x}, outputs)
    assert name == "predictions/batch/2026/11/28/03/a%2Fb-part-00004.jsonl.gz"
    assert (
        batch_object("a/b", 4, T0, "digits", "1", "serving_default", ["k0", "k1", "k2"], {"x": x}, outputs)[1] == body
    )
    records, bad = read_object(body + gzip.compress(b"not json\n"), Signatures(MODEL_ROOT))
    assert bad == 1 and len(records) == 3  # two gzip members: the second is read too
    records, bad = read_object(gzip.decompress(body) + b"not json\n", Signatures(MODEL_ROOT))
    assert bad == 1 and [r["outputs"]["class_id"] for r in records] == [1, 2, 3]
    assert records[0]["source"] == "batch" and records[0]["inputs"]["x"] == pytest.approx([0.0, 0.1])


def test_window_alignment_and_latest_record_per_key():
    w = Window.at(T0 + 59.7, 24, 3600)
    assert w.id == "2026-11-28T03:00:00Z" and w.end == T0 + 60 and w.end - w.start == 24 * 3600
    assert Window.at(T0 + 1500, 24, 3600).id == w.id and Window.at(T0 + 3000, 24, 3600).id != w.id
    recs = [{"key": "a", "time": 2, "v": 1}, {"key": "a", "time": 1, "v": 2}, {"key": None}, {"key": None}]
    assert [r.get("v") for r in latest_per_key(recs)] == [1, None, None]


# ---------------------------------------------------------------- decisions, evaluator (in-process moto)
@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="evals",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        create_labels_table(ddb, "labels")
        boto3.client("s3").create_bucket(Bucket="data")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(Name="retrain", EventPattern=json.dumps({"detail-type": ["RetrainRequested"]}))
        events.put_targets(Rule="retrain", Targets=[{"Id": "q", "Arn": arn}])
        yield sqs, url


def test_claims_once_per_window_with_cooldown_and_resend(aws):
    store = DecisionStore("evals")
    assert store.claim("m", "w1", T0, 24) == "claimed"
    assert store.claim("m", "w1", T0 + 20, 24) == "duplicate"  # not marked sent yet, but too early to resend
    assert store.claim("m", "w1", T0 + 1000, 24) == "resend"  # never marked sent: a later run sends it again
    store.sent("m", "w1", T0 + 1000)
    assert store.claim("m", "w1", T0 + 5000, 24) == "duplicate"
    assert store.claim("m", "w2", T0 + 3600, 24) == "cooldown"
    assert store.claim("other", "w2", T0 + 3600, 24) == "claimed"
    assert store.claim("m", "w3", T0 + 25 * 3600, 24) == "claimed"


def _scenario_records(models, digits, severity_day: int) -> tuple[list[bytes], dict[str, str]]:
    x, y = digits
    scenario = Scenario(start="2026-11-28", days=severity_day + 1, per_day=300, drift_start=1, ramp_days=1)
    day = generate(x, y, scenario)[severity_day]
    model = models.get("digits")
    out = model.predict("serving_default", {"x": day["x"]})
    name, body = batch_object(
        "job", 0, T0, "digits", model.version, "serving_default", day["keys"], {"x": day["x"]}, out
    )
    return [name, body], {k: str(int(v)) for k, v in zip(day["keys"], day["y"], strict=True)}


@pytest.mark.parametrize(("day", "retrain"), [(0, False), (1, True)])
def test_evaluator_report_metrics_and_one_event(aws, models, digits, day, retrain):
    sqs, url = aws
    (name, body), labels = _scenario_records(models, digits, day)
    boto3.client("s3").put_object(Bucket="data", Key=name, Body=body)
    store = lab.LabelStore("labels")
    items = [lab.Label(k, v) for k, v in labels.items()] + [lab.Label("unknown", "1")]
    store.put_many(items, "test", now=T0 + 60)
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    evaluator = Evaluator(config, RetrainPolicy(min_labelled=200))
    first = evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    second = evaluator.run(T0 + 180, now=T0 + 180)["models"]["digits"]
    assert first["retrain"] is retrain and second["retrain"] is retrain
    assert (first["trigger"], second["trigger"]) == (("claimed", "duplicate") if retrain else (None, None))
    report = orjson.loads(
        boto3.client("s3").get_object(Bucket="data", Key=first["report"][10:].replace(".html", ".json"))["Body"].read()
    )
    v = report["versions"]["1"]
    assert v["labelled"] == 300 and report["counts"]["labels_without_prediction"] == 1
    assert v["drift"]["dataset_drift"] is retrain
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == (1 if retrain else 0)
    if retrain:
        detail = json.loads(messages[0]["Body"])["detail"]
        assert detail["window"]["id"] == "2026-11-28T03:00:00Z" and detail["metrics"]["labelled"] == 300


def test_report_html_is_self_contained_and_escapes_names():
    group = {
        "predictions": 2,
        "labelled": 2,
        "baseline_accuracy": 0.9,
        "metrics": {
            "accuracy": 0.5,
            "macro_f1": 0.3,
            "confusion_matrix": [[1, 0], [1, 0]],
            "per_class_recall": {"<a>": 1.0},
            "label_distribution": [1, 1],
            "prediction_distribution": [2, 0],
        },
        "drift": {
            "rows": 2,
            "judged": False,
            "drifted_share": 0.0,
            "drifted_features": [],
            "features": [
                {"name": "<f>", "psi": 0.1, "js": 0.05, "drifted": False, "thresholds": {"psi": 0.2, "js": 0.1}}
            ],
        },
        "prediction_drift": {"psi": 0.0},
    }
    report = {
        "model": "m<script>",
        "window": {"id": "w", "start_iso": "a", "end_iso": "b", "lookback_hours": 1},
        "generated_at": "now",
        "labels": ["<a>", "b"],
        "counts": {"labelled": 2},
        "policy": {"min_labelled": 500},
        "versions": {"1": group},
        "decision": {"retrain": False, "reasons": ["x"], "checks": {"labelled": 2}},
    }
    html = render_html(report, {"1": [("2026-11-28T01:00:00Z", 0.9), ("2026-11-28T02:00:00Z", 0.5)]})
    assert "<script>" not in html and "&lt;f&gt;" in html and html.count("<svg") == 4
    assert "http" not in html.replace("<!doctype html>", "")


def test_scenario_is_deterministic_and_writes_requests_batches_and_delayed_labels(digits, tmp_path):
    x, y = digits
    scenario = Scenario(start="2026-11-01", days=3, per_day=120, drift_start=1, ramp_days=2, swap=(3, 8), swap_from=2)
    a, b = generate(x, y, scenario), generate(x, y, scenario)
    assert all(np.array_equal(d1["x"], d2["x"]) and d1["keys"] == d2["keys"] for d1, d2 in zip(a, b, strict=True))
    assert [d["severity"] for d in a] == [0.0, 0.5, 1.0]
    assert np.array_equal(np.unique(a[0]["x"] * 16), np.unique(np.round(a[0]["x"] * 16)))  # stays on the 1/16 grid
    clean = generate(x, y, Scenario(start="2026-11-01", days=3, per_day=120, drift_start=1, ramp_days=2))
    swapped = {3: 8, 8: 3}
    assert [swapped.get(int(v), int(v)) for v in clean[2]["y"]] == a[2]["y"].tolist()  # labels swapped on day 2
    assert clean[1]["y"].tolist() == a[1]["y"].tolist() and 3 in clean[2]["y"]
    meta = write(tmp_path, a, scenario)
    counts = meta["counts"]
    assert counts["requests"] + counts["batch_rows"] == 360 and counts["labels"] == 360
    timeline = [orjson.loads(line) for line in (tmp_path / "timeline.jsonl").read_bytes().splitlines()]
    first_label_file = sorted((tmp_path / "labels").rglob("*.jsonl"))[0]
    first = orjson.loads(first_label_file.read_bytes().splitlines()[0])
    arrival = next(t for t in timeline if t["key"] == first["key"])["time"] + 6 * 3600
    assert first_label_file.parent.name == "2026-11-01" and int(first_label_file.stem) == int(arrival % 86400 // 3600)
    request = orjson.loads(next((tmp_path / "requests").rglob("*.json")).read_bytes())
    assert {"key", "x"} == request["instances"][0].keys()


def test_template_filter_pattern_is_the_one_liteserve_ships_and_the_local_cloud_agrees():
    import yaml

    from liteserve_dev.logship import FILTER_PATTERN
    from localcloud.logship import compile_pattern

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((MODEL_ROOT.parents[2] / "template.yaml").read_text(), Loader=Loader)
    assert template["Resources"]["PredictionLogSubscription"]["Properties"]["FilterPattern"] == FILTER_PATTERN
    local = compile_pattern(FILTER_PATTERN)
    lines = [
        '{"liteserve":"prediction","time":1}',
        '{"liteserve":"prediction.instance","key":"k"}',
        '{"liteserve":"other"}',
        '{"_aws":{},"Latency":[1]}',
        "END RequestId: 1",
    ]
    assert [local(line) for line in lines] == [matches(line) for line in lines] == [True, True, False, False, False]


def test_group_skips_other_signatures_and_tolerates_unlabelled_keys():
    """A key also sent to `embedding` keeps its classification; predictions without a label are not an error."""
    from liteserve.evaluation.evaluate import evaluate_group
    from liteserve.manifest import Manifest

    manifest = Manifest.load(MODEL_ROOT / "digits" / "manifest.json")
    x = [0.5] * 64
    records = [
        {"key": "a", "time": 1, "x": x, "outputs": {"class_id": 3, "probabilities": [0.0] * 3 + [1.0] + [0.0] * 6}},
        {"key": "a", "time": 2, "x": x, "outputs": {"embedding": [0.1] * 32}},
        {"key": "b", "time": 1, "x": x, "outputs": {"class_id": 4, "probabilities": [0.0] * 4 + [1.0] + [0.0] * 5}},
    ]
    result = evaluate_group(records, {"a": "3"}, manifest, RetrainPolicy())
    assert result["other_signatures"] == 1
    assert result["predictions"] == 2
    assert result["labelled"] == 1
    assert result["metrics"]["accuracy"] == 1.0


class FailingPromoter:
    def review(self, model: str, scores: dict) -> Verdict:
        raise RuntimeError("alias routes elsewhere")


class RecordingPromoter:
    """Stands in for liteserve.promotion.service.Promoter: records the scores the evaluator hands over."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def review(self, model: str, scores: dict) -> Verdict:
        self.calls.append((model, scores))
        return Verdict("wait", ["recorded"])


def test_a_running_canary_is_reviewed_on_what_each_version_served_since_it_started(aws, models, digits):
    """Drifted traffic served by primary 1 and canary 2: the evaluator judges each version against its own manifest
    (2's from the registry), hands both versions' numbers since the canary started to the promoter, follows the live
    primary for the decision and requests no retraining while the canary runs."""
    sqs, url = aws
    s3 = boto3.client("s3")
    x, y = digits
    scenario = Scenario(start="2026-11-28", days=2, per_day=400, drift_start=1, ramp_days=1)
    day = generate(x, y, scenario)[1]
    model = models.get("digits")
    out = model.predict("serving_default", {"x": day["x"]})
    keys = day["keys"]
    half = len(keys) // 2
    for version, sl, t in (("1", slice(0, half), T0 + 30), ("2", slice(half, None), T0 + 40)):
        part = {k: v[sl] for k, v in out.items()}
        name, body = batch_object(
            f"j{version}", 0, t, "digits", version, "serving_default", keys[sl], {"x": day["x"][sl]}, part
        )
        s3.put_object(Bucket="data", Key=name, Body=body)
    manifest = orjson.loads((MODEL_ROOT / "digits" / "manifest.json").read_bytes())
    manifest["version"] = "2"
    manifest["metrics"]["int8"]["accuracy"] = 0.5  # a distinct reference the report must show for version 2
    s3.put_object(Bucket="data", Key="models/digits/2/manifest.json", Body=orjson.dumps(manifest))
    live = {
        "primary": {"model_version": "1", "function_version": "1"},
        "canary": {"model_version": "2", "function_version": "2", "weight": 0.5, "since": T0 + 35},
    }
    s3.put_object(Bucket="data", Key="models/digits/live.json", Body=orjson.dumps(live))
    lab.LabelStore("labels").put_many(
        [lab.Label(k, str(int(v))) for k, v in zip(keys, day["y"], strict=True)], "test", now=T0 + 60
    )
    config = EvaluationConfig(bucket="data", labels_table="labels", state_table="evals", model_root=str(MODEL_ROOT))
    promoter = RecordingPromoter()
    result = Evaluator(config, RetrainPolicy(min_labelled=100), promoter=promoter).run(T0 + 120, now=T0 + 120)
    summary = result["models"]["digits"]
    [(model_name, scores)] = promoter.calls
    assert model_name == "digits"
    assert scores["1"] is None  # the primary's records predate the canary
    assert scores["2"]["labelled"] == len(keys) - half
    assert summary["canary"]["verdict"]["action"] == "wait"
    assert summary["retrain"] is True and summary["trigger"] is None  # drift, but the canary's outcome comes first
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    report = orjson.loads(
        s3.get_object(Bucket="data", Key=summary["report"][10:].replace(".html", ".json"))["Body"].read()
    )
    assert report["versions"]["2"]["baseline_accuracy"] == 0.5 and report["versions"]["1"]["baseline_accuracy"] > 0.9
    assert report["trigger"] == {"outcome": "canary running"}
    html = s3.get_object(Bucket="data", Key=summary["report"][10:])["Body"].read().decode()
    assert "Canary: version 2 at 50% of traffic" in html

    # A failing review (IAM, a moved alias) is reported; the evaluation itself still completes.
    failing = Evaluator(config, RetrainPolicy(min_labelled=100), promoter=FailingPromoter())
    summary = failing.run(T0 + 180, now=T0 + 180)["models"]["digits"]
    assert summary["canary"]["verdict"] == {"action": "error", "reasons": ["RuntimeError: alias routes elsewhere"]}
    assert summary["report"].endswith("report.html") and summary["versions"]["2"]["labelled"] == len(keys) - half
