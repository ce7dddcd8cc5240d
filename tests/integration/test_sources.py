"""Event sources against moto over HTTP: S3 notifications, SQS (partial failures, DLQ, timeouts, concurrency),
EventBridge rules and schedules. Every delivered event is validated against Powertools' event models."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model, SqsModel, SqsRecordModel

from localcloud import LocalCloud
from tests.integration.conftest import FIXTURES, objects, wait_for

pytestmark = pytest.mark.integration


def test_s3_object_created_with_prefix_and_suffix_filters(cloud: LocalCloud) -> None:
    s3 = cloud.client("s3")
    bucket = cloud.name("DataBucket")
    key = "incoming/job one+two.jsonl"
    s3.put_object(Bucket=bucket, Key="incoming/skip.csv", Body=b"suffix does not match")
    s3.put_object(Bucket=bucket, Key="other/skip.jsonl", Body=b"prefix does not match")
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"key": "a"}\n')
    recorded = wait_for(lambda: objects(cloud, "RecordBucket", "events/s3/"))
    cloud.wait_idle()
    recorded = objects(cloud, "RecordBucket", "events/s3/")
    assert len(recorded) == 1, "only the object matching prefix and suffix triggers the function"
    event = next(iter(recorded.values()))["event"]
    parsed = S3Model(**event)
    (rec,) = parsed.Records
    assert rec.eventName == "ObjectCreated:Put" and rec.s3.bucket.name == bucket
    assert rec.s3.object.key != key and unquote_plus(rec.s3.object.key) == key  # URL-encoded, as on AWS
    assert rec.s3.object.size == len(b'{"key": "a"}\n')


def test_failed_s3_invocation_is_retried_then_sent_to_the_on_failure_destination(cloud: LocalCloud) -> None:
    stats = cloud.pools["RecorderFunction"].stats
    errors = stats.errors
    key = "incoming/poison.jsonl"
    cloud.client("s3").put_object(Bucket=cloud.name("DataBucket"), Key=key, Body=b"{}")

    def failure_records() -> list[dict]:
        msgs = cloud.client("sqs").receive_message(QueueUrl=cloud.ref("FailureQueue")).get("Messages", [])
        return [json.loads(m["Body"]) for m in msgs]

    (record,) = wait_for(failure_records, timeout=30)
    # EventInvokeConfig.MaximumRetryAttempts: 1 -> two attempts, then the on-failure destination gets the record.
    assert stats.errors == errors + 2
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responsePayload"]["errorMessage"] == "poison object"
    assert unquote_plus(record["requestPayload"]["Records"][0]["s3"]["object"]["key"]) == key
    cloud.wait_idle()
    assert cloud.sources is not None
    assert cloud.sources.depths()["localcloud-RecorderFunction-Upload"] == {"visible": 0, "in_flight": 0}


def test_sqs_partial_batch_failure_retries_only_the_failed_record_then_dlq(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    url = cloud.ref("WorkQueue")
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": str(i),
                "MessageBody": json.dumps({"id": f"m{i}", "action": "fail" if i == 2 else "ok"}),
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}},
            }
            for i in range(4)
        ],
    )

    def dlq_messages() -> list[dict]:
        return sqs.receive_message(QueueUrl=cloud.ref("WorkDLQ"), MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )

    dead = wait_for(dlq_messages, timeout=30)
    assert [json.loads(m["Body"])["id"] for m in dead] == ["m2"]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 2  # maxReceiveCount of the redrive policy
    cloud.wait_idle()
    done = objects(cloud, "RecordBucket", "processed/")
    ids = sorted(k.split("/")[1] for k in done)
    assert ids == ["m0", "m1", "m3"], "each successful record exactly once, the failed one never"
    for item in done.values():
        rec = SqsRecordModel(**item["record"])
        assert rec.eventSourceARN == cloud.arn("WorkQueue") and rec.messageAttributes["kind"].stringValue == "test"
    assert (
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )


def test_sqs_event_validates_as_a_whole(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    sqs.send_message(QueueUrl=cloud.ref("WorkQueue"), MessageBody=json.dumps({"id": "solo"}))
    done = wait_for(lambda: objects(cloud, "RecordBucket", "processed/solo/"))
    record = next(iter(done.values()))["record"]
    SqsModel(Records=[record])
    assert record["attributes"]["ApproximateReceiveCount"] == "1" and record["awsRegion"] == "us-east-1"


def _dead_ids(cloud: LocalCloud, found: set[str]) -> set[str]:
    msgs = (
        cloud.client("sqs")
        .receive_message(QueueUrl=cloud.ref("WorkDLQ"), MaxNumberOfMessages=10, VisibilityTimeout=60)
        .get("Messages", [])
    )
    found.update(json.loads(m["Body"])["id"] for m in msgs)
    return found


@pytest.mark.parametrize("action", ["crash", "hang"])
def test_sqs_handler_crash_or_timeout_fails_the_batch_then_dlq(cloud: LocalCloud, action: str) -> None:
    sqs = cloud.client("sqs")
    stats = cloud.pools["WorkerFunction"].stats
    before = (stats.errors, stats.timeouts)
    sqs.send_message(QueueUrl=cloud.ref("WorkQueue"), MessageBody=json.dumps({"id": action, "action": action}))
    found: set[str] = set()
    wait_for(lambda: _dead_ids(cloud, found), timeout=30)
    assert found == {action}
    # One failed invocation per receive (maxReceiveCount 2); the last may still be ending when the redrive happens.
    wait_for(lambda: stats.errors >= before[0] + 2, timeout=5)
    if action == "hang":
        assert stats.timeouts >= before[1] + 2  # killed at the 1 s function timeout each time
    assert objects(cloud, "RecordBucket", "processed/") == {}


def test_sqs_workers_respect_reserved_concurrency(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    url = cloud.ref("WorkQueue")
    for start in range(0, 20, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"id": f"s{start + i}", "action": "sleep"})} for i in range(10)
            ],
        )
    done = wait_for(lambda: (d := objects(cloud, "RecordBucket", "processed/")) and len(d) == 20 and d, timeout=40)
    assert sorted(int(k.split("/")[1][1:]) for k in done) == list(range(20))
    pids = {v["pid"] for v in done.values()}
    assert 1 <= len(pids) <= 2  # ReservedConcurrentExecutions: 2 -> at most two worker processes
    assert cloud.pools["WorkerFunction"].counts()["containers"] <= 2


def test_eventbridge_rule_pattern(cloud: LocalCloud) -> None:
    events = cloud.client("events")
    bus = cloud.name("Bus")
    events.put_events(
        Entries=[
            {"Source": "liteserve.test", "DetailType": "Other", "Detail": json.dumps({"n": 0}), "EventBusName": bus},
            {
                "Source": "liteserve.test",
                "DetailType": "JobCompleted",
                "Detail": json.dumps({"n": 1}),
                "EventBusName": bus,
            },
            {
                "Source": "someone.else",
                "DetailType": "JobCompleted",
                "Detail": json.dumps({"n": 2}),
                "EventBusName": bus,
            },
        ]
    )
    wait_for(lambda: objects(cloud, "RecordBucket", "events/eventbridge/"))
    cloud.wait_idle()
    recorded = objects(cloud, "RecordBucket", "events/eventbridge/")
    assert len(recorded) == 1
    parsed = EventBridgeModel(**next(iter(recorded.values()))["event"])
    assert (parsed.source, parsed.detail_type, parsed.detail) == ("liteserve.test", "JobCompleted", {"n": 1})
    # Schedules are never created as moto rules (moto would deliver every event to a pattern-less rule).
    names = [r["Name"] for r in events.list_rules()["Rules"] + events.list_rules(EventBusName=bus)["Rules"]]
    assert sorted(names) == ["liteserve-RecorderFunctionCompleted", "liteserve-RetrainRule"]


def test_fire_schedule_on_demand(cloud: LocalCloud) -> None:
    assert cloud.fire_schedule("Nightly") == [{"recorded": "schedule"}]
    assert cloud.fire_schedule("RecorderFunction.Hourly") == [{"recorded": "schedulev2"}]
    with pytest.raises(KeyError, match="no schedule named"):
        cloud.fire_schedule("Nope")
    scheduled = objects(cloud, "RecordBucket", "events/schedule/")
    (item,) = scheduled.values()
    ev = EventBridgeModel(**item["event"])
    assert ev.detail_type == "Scheduled Event" and ev.source == "aws.events" and ev.detail == {}
    assert ev.resources == ["arn:aws:events:us-east-1:123456789012:rule/liteserve-RecorderFunctionNightly"]
    (v2,) = objects(cloud, "RecordBucket", "events/schedulev2/").values()
    assert v2["event"] == {"job": "hourly"}  # ScheduleV2 delivers its Input as is


def test_schedule_clock_fires_time_compressed(cloud: LocalCloud, tmp_path) -> None:
    # A second stack on the same moto server, with the schedule clock on: rate(1 minute) every 0.25 s.
    with LocalCloud(
        FIXTURES / "clock.yaml",
        state_dir=tmp_path,
        endpoint_url=cloud.endpoint_url,
        api_port=0,
        stack_name="clock",
        time_scale=240,
    ) as lc:
        ticks = wait_for(lambda: (t := objects(lc, "TickBucket", "ticks/")) and len(t) >= 3 and t, timeout=20)
    for event in ticks.values():
        assert EventBridgeModel(**event).detail_type == "Scheduled Event"


def test_provisioning_from_template(cloud: LocalCloud) -> None:
    ddb = cloud.client("dynamodb")
    table = ddb.describe_table(TableName=cloud.name("JobsTable"))["Table"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["by-status"]
    ttl = ddb.describe_time_to_live(TableName=cloud.name("JobsTable"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    attrs = cloud.client("sqs").get_queue_attributes(QueueUrl=cloud.ref("WorkQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": cloud.arn("WorkDLQ"), "maxReceiveCount": 2}
    assert attrs["VisibilityTimeout"] == "1"
    enc = cloud.client("s3").get_bucket_encryption(Bucket=cloud.name("DataBucket"))
    assert enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }


def test_firehose_delivery_stream_writes_to_its_bucket(cloud: LocalCloud) -> None:
    cloud.client("firehose").put_record(DeliveryStreamName=cloud.name("LogStream"), Record={"Data": b'{"k": 1}\n'})
    (key,) = wait_for(lambda: list(objects_raw(cloud)), timeout=10)
    assert key.startswith("firehose/")


def test_log_subscription_ships_matching_lines_like_firehose(cloud: LocalCloud) -> None:
    import gzip
    import time
    import urllib.request

    for path in ("/items/1", "/items/2"):
        urllib.request.urlopen(cloud.api_url + path, timeout=30).read()
    assert cloud.flush_logs() == 1
    (key,) = objects_raw(cloud)
    day = time.strftime("%Y/%m/%d", time.gmtime())
    assert key.startswith(f"firehose/{day}/liteserve-LogStream-1-") and key.endswith(".gz")
    body = gzip.decompress(cloud.client("s3").get_object(Bucket=cloud.name("RecordBucket"), Key=key)["Body"].read())
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert lines == [
        {"kind": "audit", "path": "/items/1"},
        {"kind": "audit.extra", "n": 2},
        {"kind": "audit", "path": "/items/2"},
        {"kind": "audit.extra", "n": 2},
    ]
    assert body.endswith(b"\n") and cloud.flush_logs() == 0  # nothing new, nothing written


def objects_raw(cloud: LocalCloud) -> list[str]:
    listed = cloud.client("s3").list_objects_v2(Bucket=cloud.name("RecordBucket"), Prefix="firehose/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_reset_wipes_data_and_reprovisions(cloud: LocalCloud) -> None:
    s3 = cloud.client("s3")
    s3.put_object(Bucket=cloud.name("RecordBucket"), Key="leftover", Body=b"x")
    cloud.reset()
    assert s3.list_objects_v2(Bucket=cloud.name("RecordBucket")).get("KeyCount") == 0
    assert cloud.fire_schedule("Nightly") == [{"recorded": "schedule"}]  # everything wired again


def test_rule_starts_a_local_codebuild_with_input_transformer(cloud: LocalCloud) -> None:
    cloud.client("events").put_events(
        Entries=[
            {
                "Source": "liteserve.test",
                "DetailType": "RetrainRequested",
                "Detail": json.dumps({"reason": "drift"}),
                "EventBusName": cloud.name("Bus"),
            }
        ]
    )
    (build,) = wait_for(lambda: objects(cloud, "RecordBucket", "builds/"), timeout=30).values()
    env = build["env"]
    assert env["REASON"] == "drift"  # from the event, through the target's InputTransformer
    assert (env["STEP"], env["FROM_INSTALL"]) == ("one", "carried")  # buildspec env; phases share one shell
    assert env["CODEBUILD_BUILD_ID"].startswith("liteserve-train:") and build["cwd"] == str(FIXTURES)


def test_failed_build_still_runs_post_build(cloud: LocalCloud) -> None:
    result = cloud.start_build("TrainProject", {"REASON": "fail"})
    assert result["status"] == "FAILED"
    log = Path(result["log"]).read_text().split(f"build {result['id']} starting")[1]
    assert "Phase complete: BUILD State: FAILED" in log and "post_build ran, succeeding=0" in log
    assert objects(cloud, "RecordBucket", "builds/") == {}
    assert cloud.start_build("TrainProject")["status"] == "SUCCEEDED"
    assert list(objects(cloud, "RecordBucket", "builds/")) == ["builds/manual.json"]
