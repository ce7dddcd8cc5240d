"""Every sample event in events/ run through `localcloud invoke` against the project's template (the same files
`sam local invoke -e` takes): each function answers its own events, and names the event it expects when given
another function's. The EventBridge samples match the rule that consumes them and what the producers emit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from localcloud.template import load_yaml
from tests.integration.conftest import PROJECT_TEMPLATE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"


def _functions() -> dict[str, str]:
    """Logical id -> code folder of every function in template.yaml."""
    resources = load_yaml(PROJECT_TEMPLATE)["Resources"]
    return {
        lid: Path(r["Properties"]["CodeUri"]).name
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }


FUNCTIONS = _functions()
FOLDER_OF = {folder: lid for lid, folder in FUNCTIONS.items()}


def sample(folder: str, name: str) -> Path:
    return EVENTS / folder / name


def localcloud(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "LITESERVE_LOCAL_TOKEN"},
        "PYTHONPATH": str(REPO),
        "LOCALCLOUD_TEMPLATE": str(PROJECT_TEMPLATE),
        "LOCALCLOUD_STATE_DIR": str(state),
        "LOCALCLOUD_MOTO_PORT": "0",
        "LOCALCLOUD_API_PORT": "0",
        "LOCALCLOUD_CONTROL_PORT": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "localcloud.cli", *args], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`localcloud up` on the project template (no schedules: the sample schedule event is invoked instead)."""
    state = tmp_path_factory.mktemp("lc-events")
    up = localcloud(state, "up", "--no-schedules")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads((state / "daemon.json").read_text())
        yield {"state": state, **info}
    finally:
        localcloud(state, "down")


def invoke(daemon: dict[str, Any], function: str, event: Path) -> tuple[int, Any]:
    """`localcloud invoke FUNCTION -e EVENT`: exit code and the printed result (or error)."""
    r = localcloud(daemon["state"], "invoke", function, "-e", str(event), "--compact")
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else r.stderr


def http(daemon: dict[str, Any], function: str, event: Path) -> tuple[int, Any]:
    code, result = invoke(daemon, function, event)
    assert code == 0, result
    body = json.loads(result["body"]) if result["headers"].get("content-type") == "application/json" else None
    return result["statusCode"], body


def aws(daemon: dict[str, Any], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=daemon["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_every_function_of_the_template_has_sample_events():
    for lid, folder in FUNCTIONS.items():
        assert sorted((EVENTS / folder).glob("*.json")), f"{lid}: no sample event in events/{folder}/"


PREDICT = sorted((EVENTS / "predict").glob("*.json"))


def test_every_predict_sample(daemon):
    for path in PREDICT:
        code, result = invoke(daemon, "PredictFunction", path)
        assert code == 0, (path.name, result)
        expected = 400 if path.stem.endswith("-bad") else 200
        assert result["statusCode"] == expected, (path.name, result["body"][:300])
        if path.stem == "tfserving-artifact":
            assert result["isBase64Encoded"] and result["headers"]["x-liteserve-sha256"]
        else:
            assert result["headers"]["content-type"] == "application/json", path.name


def _job(daemon: dict[str, Any]) -> dict[str, Any] | None:
    status, body = http(daemon, "BatchApiFunction", sample("batch_api", "job-status.json"))
    return body if status == 200 and body["state"] in ("SUCCEEDED", "FAILED") else None


def test_batch_labels_and_evaluate_samples(daemon):
    s3, sqs, events = aws(daemon, "s3"), aws(daemon, "sqs"), aws(daemon, "events")
    record = json.loads(sample("batch_split", "s3-put-incoming.json").read_text())["Records"][0]["s3"]
    bucket = record["bucket"]["name"]
    # BatchJobCompleted, caught off the default bus as a user's consumer would get it
    queue = sqs.create_queue(QueueName="test-batch-completed")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="test-batch-completed", EventPattern=json.dumps({"detail-type": ["BatchJobCompleted"]}))
    events.put_targets(Rule="test-batch-completed", Targets=[{"Id": "q", "Arn": arn}])

    # the object the S3 sample names (its upload also fires the real notification: the sample's run is a replay)
    data = sample("batch_split", "sample.jsonl").read_bytes()
    s3.put_object(Bucket=bucket, Key=record["object"]["key"], Body=data, Metadata={"cache": "true"})
    assert s3.head_object(Bucket=bucket, Key=record["object"]["key"])["ETag"].strip('"') == record["object"]["eTag"]
    code, result = invoke(daemon, "BatchSplitFunction", sample("batch_split", "s3-put-incoming.json"))
    assert code == 0, result
    assert [j["job_id"] for j in result["jobs"]] == ["sample"]

    deadline = time.monotonic() + 90
    while (job := _job(daemon)) is None:
        assert time.monotonic() < deadline, "the sample batch job did not finish"
        time.sleep(0.5)
    assert job["state"] == "SUCCEEDED" and job["counts"]["rows_predicted"] == 3, job

    # a shard message redelivered after the job finished, and the same message dead: both settle, nothing changes
    for lid, name in (
        ("BatchWorkerFunction", "batch_worker/sqs-shard.json"),
        ("BatchDeadShardFunction", "batch_dlq/sqs-dead-shard.json"),
    ):
        code, result = invoke(daemon, lid, EVENTS / name)
        assert (code, result) == (0, {"batchItemFailures": []}), name
    assert _job(daemon)["state"] == "SUCCEEDED"

    status, body = http(daemon, "BatchApiFunction", sample("batch_api", "cached-prediction.json"))
    assert status == 200 and body["key"] == "img-0001" and body["job_id"] == "sample", body

    labels = json.loads(sample("labels", "s3-put-labels.json").read_text())["Records"][0]["s3"]["object"]
    s3.put_object(Bucket=bucket, Key=labels["key"], Body=sample("labels", "sample.jsonl").read_bytes())
    code, result = invoke(daemon, "LabelsFunction", sample("labels", "s3-put-labels.json"))
    assert code == 0 and result["files"][0]["stored"] == 3 and result["files"][0]["bad"] == 0, result
    status, body = http(daemon, "LabelsFunction", sample("labels", "http-post-labels.json"))
    assert (status, body) == (200, {"received": 2, "stored": 2, "replaced_in_request": 0})

    code, result = invoke(daemon, "EvaluateFunction", sample("evaluate", "schedule.json"))
    assert code == 0, result
    assert result["window"]["id"] == "2026-11-28T03:00:00Z"

    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
    (real,) = [json.loads(m["Body"]) for m in got]
    documented = json.loads(sample("eventbridge", "batch-job-completed.json").read_text())
    assert (real["source"], real["detail-type"]) == (documented["source"], documented["detail-type"])
    assert set(real["detail"]) == set(documented["detail"])
    assert set(real["detail"]["counts"]) == set(documented["detail"]["counts"])
    assert set(real["detail"]["output"]) == set(documented["detail"]["output"])


@pytest.mark.parametrize(
    ("function", "event", "expects"),
    [
        ("BatchWorkerFunction", "batch_split/s3-put-incoming.json", "an SQS message batch"),
        ("BatchSplitFunction", "batch_worker/sqs-shard.json", "an S3 ObjectCreated notification"),
        ("PredictFunction", "evaluate/schedule.json", "an API Gateway HTTP API request"),
        ("EvaluateFunction", "labels/http-post-labels.json", "an EventBridge schedule event"),
        ("LabelsFunction", "batch_dlq/sqs-dead-shard.json", "an S3 ObjectCreated notification"),
    ],
)
def test_another_functions_event_is_refused_naming_the_expected_one(daemon, function, event, expects):
    code, error = invoke(daemon, function, EVENTS / event)
    assert code == 1
    assert error["errorType"] == "UnexpectedEvent"
    assert expects in error["errorMessage"]


def test_retrain_requested_sample_matches_its_rule_and_its_consumer(daemon):
    doc = json.loads(sample("eventbridge", "retrain-requested.json").read_text())
    rule = load_yaml(PROJECT_TEMPLATE)["Resources"]["RetrainRule"]["Properties"]
    # The rule's own pattern on a bus of its own (on the default bus the real rule would start a retraining build)
    events, sqs = aws(daemon, "events"), aws(daemon, "sqs")
    events.create_event_bus(Name="test-retrain")
    queue = sqs.create_queue(QueueName="test-retrain-matched")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="pattern", EventBusName="test-retrain", EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(Rule="pattern", EventBusName="test-retrain", Targets=[{"Id": "q", "Arn": arn}])
    entry = {"Source": doc["source"], "DetailType": doc["detail-type"], "Detail": json.dumps(doc["detail"])}
    assert events.put_events(Entries=[{**entry, "EventBusName": "test-retrain"}])["FailedEntryCount"] == 0
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])
    assert [json.loads(m["Body"])["detail"] for m in got] == [doc["detail"]]
    for path in rule["Targets"][0]["InputTransformer"]["InputPathsMap"].values():
        value: Any = doc
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        assert value is not None, path
    from training.retrain import Request

    request = Request.from_detail(doc)  # what the retraining build reads from RETRAIN_REQUEST
    assert (request.model, request.parent, request.window_id) == ("digits", "1", "2026-11-28T03:00:00Z")
