"""The batch pipeline against in-process moto (unit level): planning, workers, finalize, and the exactly-once
guarantees under repeated notifications, repeated deliveries, crashes and dead shards. The same flow runs over
HTTP on the local cloud in tests/integration/test_batch.py."""

from __future__ import annotations

import gzip
import random

import boto3
import numpy as np
import orjson
import pytest
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.runtime import ModelRepository

from tests.support import MODEL_ROOT

BUCKET, JOBS, CACHE = "data", "jobs", "cache"


@pytest.fixture(scope="module")
def models():
    return ModelRepository(MODEL_ROOT)


@pytest.fixture
def aws(mocked_aws):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    ddb = boto3.client("dynamodb")
    for name, key in ((JOBS, "job_id"), (CACHE, "key")):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        )
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="shards")["QueueUrl"]
    boto3.client("events")
    return url


@pytest.fixture
def pipeline(aws, models):
    return Pipeline(
        BatchConfig(bucket=BUCKET, jobs_table=JOBS, queue_url=aws, cache_table=CACHE, shard_bytes=20_000), models
    )


def drain(pipeline: Pipeline) -> list[dict]:
    """Every shard message currently queued (deleted as read)."""
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=pipeline.config.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(orjson.loads(m["Body"]))
            sqs.delete_message(QueueUrl=pipeline.config.queue_url, ReceiptHandle=m["ReceiptHandle"])


def make_rows(n: int, bad_every: int = 0, seed: int = 0) -> tuple[list[bytes], dict[str, list[float]], set[int]]:
    rng = random.Random(seed)
    keys = [f"id-{i:06d}" for i in range(n)]
    rng.shuffle(keys)
    lines, valid, bad = [], {}, set()
    for i, key in enumerate(keys):
        x = [round(rng.random(), 4) for _ in range(64)]
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(orjson.dumps({"key": key, "x": x[:10]}))
            bad.add(i + 1)
        else:
            lines.append(orjson.dumps({"key": key, "x": x}))
            valid[key] = x
    return lines, valid, bad


def put(key: str, body: bytes, **metadata: str) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata)


def read(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def manifest(job: str) -> dict | None:
    """The job's published manifest (`_SUCCESS` or `_FAILED`), or None while none is published."""
    for marker in ("_SUCCESS", "_FAILED"):
        try:
            return orjson.loads(read(f"results/{job}/{marker}"))
        except boto3.client("s3").exceptions.NoSuchKey:
            continue
    return None


def uri_key(uri: str) -> str:
    return uri.removeprefix(f"s3://{BUCKET}/")


def outputs(job: str) -> tuple[list[dict], list[dict]]:
    """What the published manifest points at: its parts' rows and its error parts' records (none while no run is
    published)."""
    found = manifest(job)
    if found is None:
        return [], []
    out = found["output"]
    parts = [orjson.loads(line) for uri in out["parts"] for line in read(uri_key(uri)).splitlines()]
    errors = [orjson.loads(line) for uri in out["errors"] for line in read(uri_key(uri)).splitlines()]
    return parts, errors


def run_all(pipeline: Pipeline, messages: list[dict]) -> None:
    for m in messages:
        pipeline.run_shard(m)


def test_end_to_end_every_valid_key_once_with_the_online_prediction(pipeline, models):
    lines, valid, bad = make_rows(600, bad_every=50)
    put("incoming/job1.jsonl", b"\n".join(lines) + b"\n")
    summary = pipeline.split("incoming/job1.jsonl")
    messages = drain(pipeline)
    assert summary["shards"] == len(messages) > 1
    random.Random(1).shuffle(messages)
    run_all(pipeline, messages)
    parts, errors = outputs("job1.jsonl")
    assert sorted(p["key"] for p in parts) == sorted(valid)
    assert sorted(e["line"] for e in errors) == sorted(bad)
    assert all("expected 64 values, got 10" in e["error"] for e in errors)
    model = models.get("digits")
    x = np.asarray([valid[p["key"]] for p in parts], dtype=np.float32)
    ref = model.predict("serving_default", {"x": x})
    assert [p["class_id"] for p in parts] == ref["class_id"].tolist()
    np.testing.assert_array_equal(np.asarray([p["probabilities"] for p in parts], np.float32), ref["probabilities"])
    assert {p["model_version"] for p in parts} == {model.version}
    manifest = orjson.loads(read("results/job1.jsonl/_SUCCESS"))
    assert manifest["state"] == "SUCCEEDED"
    assert manifest["counts"] == {"rows_in": 600, "rows_predicted": len(valid), "rows_rejected": len(bad)}
    assert manifest["shards"] == {"total": len(messages), "done": len(messages), "failed": []}


def test_duplicate_notifications_and_deliveries_change_nothing(pipeline):
    lines, valid, _ = make_rows(300)
    put("incoming/dup.jsonl", b"\n".join(lines))
    pipeline.split("incoming/dup.jsonl")
    assert pipeline.split("incoming/dup.jsonl") == {"job_id": "dup.jsonl", "duplicate": True}
    messages = drain(pipeline)
    run_all(pipeline, messages[:1] + messages + messages)  # every shard delivered twice, one three times
    parts, _ = outputs("dup.jsonl")
    assert sorted(p["key"] for p in parts) == sorted(valid)
    job = pipeline.jobs.get("dup.jsonl")
    assert job.state == "SUCCEEDED"
    assert job.counts["rows_predicted"] == 300


def test_worker_killed_after_writing_before_counting(pipeline, monkeypatch):
    lines, valid, _ = make_rows(200)
    put("incoming/crash.jsonl", b"\n".join(lines))
    pipeline.split("incoming/crash.jsonl")
    messages = drain(pipeline)
    real = pipeline.jobs.shard_done
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline.jobs, "shard_done", crash_once)
    with pytest.raises(RuntimeError):
        pipeline.run_shard(messages[0])
    run_all(pipeline, messages)  # the retry of shard 0 comes with the rest
    parts, _ = outputs("crash.jsonl")
    assert sorted(p["key"] for p in parts) == sorted(valid)
    assert pipeline.jobs.get("crash.jsonl").state == "SUCCEEDED"


def test_poison_shard_fails_the_job_naming_it_and_keeps_the_rest(pipeline):
    lines, valid, _ = make_rows(300)
    put("incoming/poison.jsonl", b"\n".join(lines))
    pipeline.split("incoming/poison.jsonl")
    messages = sorted(drain(pipeline), key=lambda m: m["shard"])
    run_all(pipeline, messages[1:])
    assert pipeline.jobs.get("poison.jsonl").state == "RUNNING"
    pipeline.shard_dead(messages[0])
    pipeline.shard_dead(messages[0])  # the DLQ may deliver twice too
    failed = orjson.loads(read("results/poison.jsonl/_FAILED"))
    assert failed["state"] == "FAILED"
    assert failed["shards"]["failed"] == [0]
    assert "shard 0" in failed["reasons"][0]
    parts, _ = outputs("poison.jsonl")
    start, end = next(m for m in messages if m["shard"] == 0)["range"]
    shard0 = {orjson.loads(line)["key"] for line in read("incoming/poison.jsonl")[start : end + 1].splitlines()}
    assert 0 < len(shard0) < 300
    assert sorted(p["key"] for p in parts) == sorted(set(valid) - shard0)  # the other shards' results stay
    pipeline.run_shard(messages[0])  # a late success of the dead shard changes nothing
    assert pipeline.jobs.get("poison.jsonl").state == "FAILED"


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])  # gzip: the planner re-reads a staged shard
def test_duplicate_keys_first_valid_occurrence_wins_across_shards(pipeline, gz):
    rows = [{"key": f"k{i}", "x": [0.1] * 64} for i in range(400)]
    rows[10] = {"key": "k5", "x": [0.2] * 64}  # repeats line 6 within the first shard
    rows[390] = {"key": "k7", "x": [0.3] * 64}  # repeats line 8 from another shard
    rows[3] = {"key": "k399", "x": [0.1] * 10}  # invalid: does not claim k399 (line 400 stays valid)
    rows[300] = {"key": "k150", "x": [0.4] * 64}  # repeats line 151, in a shard without repeats of its own
    body = b"\n".join(orjson.dumps(r) for r in rows)
    name = "keys.jsonl.gz" if gz else "keys.jsonl"
    put(f"incoming/{name}", gzip.compress(body) if gz else body)
    assert pipeline.split(f"incoming/{name}")["shards"] > 3
    run_all(pipeline, drain(pipeline))
    parts, errors = outputs(name)
    keys = [p["key"] for p in parts]
    assert len(keys) == len(set(keys)) == 396
    assert "k399" in keys and "k300" not in keys
    by_line = {e["line"]: e for e in errors}
    assert set(by_line) == {4, 11, 301, 391}
    assert by_line[11]["error"] == "key repeats line 6"
    assert by_line[301]["error"] == "key repeats line 151"
    assert by_line[391]["error"] == "key repeats line 8"


def test_csv_and_gzip_and_ordered_and_cache(pipeline):
    _, valid, _ = make_rows(250, bad_every=100)
    keys = list(valid)
    header = "key," + ",".join(f"f{i}" for i in range(64))
    csv_rows = [header] + [f"{k}," + ",".join(str(v) for v in valid[k]) for k in keys] + ["broken,1,2"]
    put("incoming/table.csv.gz", gzip.compress("\n".join(csv_rows).encode()), ordered="true", cache="true")
    pipeline.split("incoming/table.csv.gz")
    run_all(pipeline, drain(pipeline))
    ordered_uri = manifest("table.csv.gz")["output"]["ordered"]
    ordered = [orjson.loads(line)["key"] for line in read(uri_key(ordered_uri)).splitlines()]
    assert ordered == keys
    _, errors = outputs("table.csv.gz")
    assert errors == [{"line": len(csv_rows), "key": "broken", "error": "expected 65 columns, got 3"}]
    cached = pipeline.cache.get("digits", keys[7])
    assert cached["key"] == keys[7]
    assert cached["job_id"] == "table.csv.gz"
    assert "class_id" in cached


@pytest.mark.parametrize(
    ("key", "body", "metadata", "reason"),
    [
        ("incoming/empty.jsonl", b"", {}, None),
        ("incoming/allbad.jsonl", b'{"x": 1}\n[1]\n', {}, None),
        ("incoming/bad.csv", b"id,a,b\n1,2,3\n", {}, "no key column 'key'"),
        ("incoming/bomb.jsonl.gz", b"not gzip at all", {}, "Not a gzipped file"),
        ("incoming/opts.jsonl", b'{"key": "a", "x": []}\n', {"signature": "nope"}, "signature_name 'nope' not found"),
        ("incoming/opts2.jsonl", b'{"key": "a", "x": []}\n', {"colour": "red"}, "unknown job option"),
    ],
)
def test_edge_files(pipeline, key, body, metadata, reason):
    put(key, body, **metadata)
    pipeline.split(key)
    run_all(pipeline, drain(pipeline))
    job_id = key.removeprefix("incoming/")
    job = pipeline.jobs.get(job_id)
    if reason:
        assert job.state == "FAILED"
        assert reason in orjson.loads(read(f"results/{job_id}/_FAILED"))["reasons"][0]
    else:
        assert job.state == "SUCCEEDED"
        assert orjson.loads(read(f"results/{job_id}/_SUCCESS"))["counts"]["rows_predicted"] == 0


def test_unsupported_suffix_is_skipped_with_a_reason(pipeline):
    put("incoming/notes.txt", b"hello")
    assert "unsupported file type" in pipeline.split("incoming/notes.txt")["reason"]


def test_redrop_new_content_replaces_the_run_and_force_reruns(pipeline):
    put("incoming/again.jsonl", b'{"key": "a", "x": ' + orjson.dumps([0.1] * 64) + b"}\n")
    pipeline.split("incoming/again.jsonl")
    run_all(pipeline, drain(pipeline))
    put("incoming/again.jsonl", b'{"key": "b", "x": ' + orjson.dumps([0.1] * 64) + b"}\n")
    pipeline.split("incoming/again.jsonl")
    old = drain(pipeline)
    parts, _ = outputs("again.jsonl")
    assert parts == []  # the old run's outputs are gone before the new run writes
    run_all(pipeline, old)
    assert [p["key"] for p in outputs("again.jsonl")[0]] == ["b"]
    assert pipeline.split("incoming/again.jsonl")["duplicate"] is True
    boto3.client("s3").copy_object(
        Bucket=BUCKET,
        Key="incoming/again.jsonl",
        MetadataDirective="REPLACE",
        CopySource={"Bucket": BUCKET, "Key": "incoming/again.jsonl"},
        Metadata={"force": "true"},
    )
    # the copy's notification carries its own S3 sequencer: another PUT, so another run
    assert pipeline.split("incoming/again.jsonl", "0055AED6DCD90281E6")["shards"] == 1
