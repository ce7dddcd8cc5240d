"""Batch serving end to end on the local cloud: the real template and handlers, S3 -> split -> SQS -> workers ->
results, over HTTP to moto. The same faults as tests/unit/test_batch_pipeline.py, through the real event sources."""

from __future__ import annotations

import gzip
import json
import random
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud, wait_for

pytestmark = pytest.mark.integration
# Small shards so a few thousand rows fan out; short timeouts so redrive to the DLQ happens within a test.
PARAMETERS = {"ShardBytes": "65536", "WorkerTimeout": "10", "ShardVisibilityTimeout": "12", "ShardMaxReceiveCount": "2"}


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-batch", PARAMETERS) as cloud:
        yield cloud


@pytest.fixture
def cloud(lc: LocalCloud) -> Iterator[LocalCloud]:
    lc.reset()
    yield lc
    lc.wait_idle(timeout=60)


@pytest.fixture(scope="module")
def tolerant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """Like `lc`, with more deliveries per shard: the test that peeks at shard messages adds receives of its own."""
    params = {**PARAMETERS, "ShardMaxReceiveCount": "6"}
    with project_cloud(tmp_path_factory, "lc-batch-6", params) as cloud:
        yield cloud


def keyed_file(
    n: int, bad_every: int = 100, seed: int = 0
) -> tuple[list[bytes], dict[str, list[float]], dict[int, str]]:
    """n keyed rows with shuffled keys; every `bad_every`-th row malformed in a rotating way."""
    rng = random.Random(seed)
    keys = [f"user-{i:06d}" for i in range(n)]
    rng.shuffle(keys)
    faults = [
        lambda k, x: {"key": k, "x": x[:63]},
        lambda k, x: {"x": x},
        lambda k, x: {"key": k, "x": [*x[:63], "?"]},
        lambda k, x: b"{broken json",
        lambda k, x: {"key": k, "x": [*x[:63], None]},
    ]
    lines, valid, bad = [], {}, {}
    for i, key in enumerate(keys):
        x = [round(rng.random(), 4) for _ in range(64)]
        if bad_every and i % bad_every == bad_every // 2:
            row = faults[(i // bad_every) % len(faults)](key, x)
            lines.append(row if isinstance(row, bytes) else orjson.dumps(row))
            bad[i + 1] = key
        else:
            lines.append(orjson.dumps({"key": key, "x": x}))
            valid[key] = x
    return lines, valid, bad


def drop(cloud: LocalCloud, key: str, body: bytes, **metadata: str) -> str:
    return (
        cloud.client("s3")
        .put_object(Bucket=cloud.name("DataBucket"), Key=key, Body=body, Metadata=metadata)["ETag"]
        .strip('"')
    )


def finished(cloud: LocalCloud, job: str, timeout: float = 120) -> dict:
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")

    def marker():
        for name in ("_SUCCESS", "_FAILED"):
            try:
                return json.loads(s3.get_object(Bucket=bucket, Key=f"results/{job}/{name}")["Body"].read())
            except s3.exceptions.NoSuchKey:
                continue
        return None

    return wait_for(marker, timeout=timeout, interval=0.3)


def results(cloud: LocalCloud, job: str) -> tuple[list[dict], list[dict]]:
    """The rows of what the job's published manifest lists: its parts and its error parts."""
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    manifest = None
    for name in ("_SUCCESS", "_FAILED"):
        try:
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"results/{job}/{name}")["Body"].read())
        except s3.exceptions.NoSuchKey:
            continue
    if manifest is None:
        return [], []

    def rows(uris: list[str]) -> list[dict]:
        keys = [u.removeprefix(f"s3://{bucket}/") for u in uris]
        bodies = [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]
        return [orjson.loads(line) for data in bodies for line in data.splitlines()]

    return rows(manifest["output"]["parts"]), rows(manifest["output"]["errors"])


def get(cloud: LocalCloud, path: str) -> Any:
    """GET an API path with the local token; the open response (an HTTPError for 4xx/5xx)."""
    return urllib.request.urlopen(urllib.request.Request(cloud.api_url + path, headers=auth(cloud)), timeout=10)


def online(cloud: LocalCloud, rows: dict[str, list[float]]) -> dict[str, dict]:
    """The online path's answers for the same keyed inputs, 1000 instances per request."""
    answers = {}
    items = list(rows.items())
    for start in range(0, len(items), 1000):
        body = {"instances": [{"key": k, "x": x} for k, x in items[start : start + 1000]]}
        req = urllib.request.Request(
            f"{cloud.api_url}/v1/models/digits:predict",
            data=orjson.dumps(body),
            headers={"content-type": "application/json", **auth(cloud)},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            answers.update({p["key"]: p for p in json.loads(resp.read())["predictions"]})
    return answers


def test_ten_thousand_keyed_rows_every_valid_key_once_as_online(cloud):
    lines, valid, bad = keyed_file(10_000)
    drop(cloud, "incoming/scores.jsonl", b"\n".join(lines) + b"\n")
    manifest = finished(cloud, "scores.jsonl")
    assert manifest["state"] == "SUCCEEDED"
    assert manifest["counts"] == {"rows_in": 10_000, "rows_predicted": len(valid), "rows_rejected": len(bad)}
    assert manifest["shards"]["total"] > 2
    parts, errors = results(cloud, "scores.jsonl")
    keys = [p["key"] for p in parts]
    assert len(keys) == len(set(keys)) == len(valid)
    assert set(keys) == set(valid)
    assert {e["line"]: e.get("key") for e in errors if "key" in e} == {
        line: key for line, key in bad.items() if any(e["line"] == line and "key" in e for e in errors)
    }
    assert sorted(e["line"] for e in errors) == sorted(bad)
    reference = online(cloud, valid)
    for p in parts:
        ref = reference[p["key"]]
        assert p["class_id"] == ref["class_id"]
        assert p["probabilities"] == ref["probabilities"]
    status = json.loads(get(cloud, "/v1/batch/jobs/scores.jsonl").read())
    assert status["state"] == "SUCCEEDED"
    assert status["shards"]["done"] == status["shards"]["total"]


def test_duplicate_notification_and_redrop_of_the_same_file(cloud):
    lines, valid, _ = keyed_file(1500, bad_every=0)
    body = b"\n".join(lines)
    etag = drop(cloud, "incoming/twice.jsonl", body)
    first = finished(cloud, "twice.jsonl")
    drop(cloud, "incoming/twice.jsonl", body)  # same bytes, same ETag: S3 notifies again, nothing is redone
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": cloud.name("DataBucket")},
            "object": {"key": "incoming/twice.jsonl", "eTag": etag, "size": len(body)},
        },
    }
    summaries = cloud.invoke("BatchSplitFunction", {"Records": [record]})["jobs"]
    assert summaries == [{"job_id": "twice.jsonl", "duplicate": True}]
    cloud.wait_idle(timeout=60)
    parts, _ = results(cloud, "twice.jsonl")
    assert sorted(p["key"] for p in parts) == sorted(valid)
    assert finished(cloud, "twice.jsonl")["timings"]["created_at"] == first["timings"]["created_at"]


def test_duplicate_shard_deliveries_and_a_killed_worker(tolerant):
    cloud = tolerant
    lines, valid, _ = keyed_file(6000, bad_every=0, seed=3)
    sqs = cloud.client("sqs")
    queue = cloud.ref("ShardQueue")
    drop(cloud, "incoming/faults.jsonl", b"\n".join(lines))
    copies: dict[int, str] = {}
    killed = 0
    deadline = time.monotonic() + 30
    while (len(copies) < 3 or not killed) and time.monotonic() < deadline:
        # Peek at shard messages as they pass (visibility 0 leaves them to the workers) to re-send exact copies,
        # and kill a worker container in the middle of a shard.
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", []):
            copies.setdefault(json.loads(m["Body"])["shard"], m["Body"])
        killed = killed or cloud.kill_containers("BatchWorkerFunction")
    assert copies, "saw no shard message"
    for body in copies.values():
        sqs.send_message(QueueUrl=queue, MessageBody=body)
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    manifest = finished(cloud, "faults.jsonl")
    cloud.wait_idle(timeout=60)  # the duplicates are processed too
    assert manifest["state"] == "SUCCEEDED"
    assert manifest["counts"]["rows_predicted"] == len(valid)
    parts, _ = results(cloud, "faults.jsonl")
    keys = [p["key"] for p in parts]
    assert len(keys) == len(set(keys)) == len(valid)


def test_a_shard_that_always_fails_goes_to_the_dlq_and_fails_its_job(cloud):
    lines, valid, _ = keyed_file(300, bad_every=0)
    body = b"\n".join(lines) + b"\n"
    etag = drop(cloud, "incoming/real.jsonl", body)
    finished(cloud, "real.jsonl")
    # A two-shard job whose second shard points at an object that does not exist: every delivery fails.
    table = cloud.client("dynamodb")
    options = json.dumps(
        {
            "model": "digits",
            "signature": "serving_default",
            "key_field": "key",
            "input_field": "x",
            "ordered": False,
            "cache": False,
            "force": False,
        }
    )
    table.put_item(
        TableName=cloud.name("JobsTable"),
        Item={
            "job_id": {"S": "poison"},
            "run": {"N": "1"},
            "etag": {"S": etag},
            "state": {"S": "RUNNING"},
            "source": {"S": "incoming/x.jsonl"},
            "done": {"NS": ["-1"]},
            "failed": {"NS": ["-1"]},
            "shards_total": {"N": "2"},
            "options": {"S": options},
            "rows_in": {"N": "0"},
            "rows_predicted": {"N": "0"},
            "rows_rejected": {"N": "0"},
            "model_version": {"S": "1"},
            "created_at": {"N": str(time.time())},
            "worker_seconds": {"N": "0"},
        },
    )
    base = {
        "job_id": "poison",
        "run": 1,
        "etag": etag,
        "first_line": 1,
        "format": "jsonl",
        "header": None,
        "options": json.loads(options),
        "duplicates": [],
    }
    sqs = cloud.client("sqs")
    sqs.send_message(
        QueueUrl=cloud.ref("ShardQueue"),
        MessageBody=json.dumps({**base, "shard": 0, "object": "incoming/real.jsonl", "range": [0, len(body) - 1]}),
    )
    sqs.send_message(
        QueueUrl=cloud.ref("ShardQueue"),
        MessageBody=json.dumps({**base, "shard": 1, "object": "incoming/missing.jsonl", "range": [0, 99]}),
    )
    manifest = finished(cloud, "poison", timeout=120)
    assert manifest["state"] == "FAILED"
    assert manifest["shards"]["failed"] == [1]
    assert "shard 1" in manifest["reasons"][0]
    parts, _ = results(cloud, "poison")
    assert sorted(p["key"] for p in parts) == sorted(valid)  # shard 0's results stay


def test_csv_gzip_ordered_and_cached_lookup(cloud):
    _, valid, _ = keyed_file(800, bad_every=0, seed=5)
    keys = list(valid)
    rows = ["key," + ",".join(f"px{i}" for i in range(64))] + [k + "," + ",".join(map(str, valid[k])) for k in keys]
    rows.insert(100, "oops,1,2,3")
    drop(cloud, "incoming/table.csv.gz", gzip.compress("\n".join(rows).encode()), ordered="true", cache="true")
    assert finished(cloud, "table.csv.gz")["state"] == "SUCCEEDED"
    s3 = cloud.client("s3")
    ordered_uri = finished(cloud, "table.csv.gz")["output"]["ordered"]
    ordered_key = ordered_uri.removeprefix(f"s3://{cloud.name('DataBucket')}/")
    ordered = s3.get_object(Bucket=cloud.name("DataBucket"), Key=ordered_key)["Body"].read()
    assert [orjson.loads(line)["key"] for line in ordered.splitlines()] == keys
    _, errors = results(cloud, "table.csv.gz")
    assert errors == [{"line": 101, "key": "oops", "error": "expected 65 columns, got 4"}]
    got = json.loads(get(cloud, f"/v1/predictions/{keys[3]}").read())
    assert got["key"] == keys[3]
    assert got["job_id"] == "table.csv.gz"
    x = np.asarray([valid[keys[3]]], dtype=np.float32)
    assert got["class_id"] == online(cloud, {keys[3]: x[0].tolist()})[keys[3]]["class_id"]
    with pytest.raises(urllib.error.HTTPError) as err:
        get(cloud, "/v1/predictions/nobody")
    assert err.value.code == 404


@pytest.mark.parametrize(
    ("key", "body", "state", "predicted"),
    [
        ("incoming/empty.jsonl", b"", "SUCCEEDED", 0),
        ("incoming/nothing-valid.jsonl", b'{"x": [1]}\n[]\n"str"\n', "SUCCEEDED", 0),
    ],
)
def test_empty_file_and_file_with_no_valid_rows(cloud, key, body, state, predicted):
    drop(cloud, key, body)
    job = key.removeprefix("incoming/")
    manifest = finished(cloud, job)
    assert manifest["state"] == state
    assert manifest["counts"]["rows_predicted"] == predicted
    assert manifest["counts"]["rows_rejected"] == body.count(b"\n")
