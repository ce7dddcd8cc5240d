"""Batch fault injection on the local cloud, part two (issue 7, "Load and faults"): moto restarted mid-job and gzip
bombs. The other faults (duplicate notifications and deliveries, killed worker, poison shard, malformed lines, the
same file twice) are in test_batch.py; this module reuses its helpers."""

from __future__ import annotations

import gzip
import io
import json
import re
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import orjson
import pytest

from localcloud import LocalCloud, MotoServer
from tests.integration.conftest import auth, project_cloud, wait_for
from tests.integration.test_batch import drop, finished, keyed_file, results

pytestmark = pytest.mark.integration
CAP = 2 * 1024 * 1024  # the planner's decompression cap here: a bomb need not inflate to gigabytes
PARAMETERS = {
    "ShardBytes": "65536",
    "WorkerTimeout": "10",
    "ShardVisibilityTimeout": "12",
    "ShardMaxReceiveCount": "3",
    "MaxDecompressedBytes": str(CAP),
}


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The project template with moto's state persisted across restarts (LocalCloud(persist=True))."""
    with project_cloud(tmp_path_factory, "lc-batch-faults", PARAMETERS, persist=True) as cloud:
        yield cloud


@pytest.fixture
def cloud(lc: LocalCloud) -> Iterator[LocalCloud]:
    lc.reset(recycle=True)
    yield lc
    lc.wait_idle(timeout=60)


def job_item(cloud: LocalCloud, job: str) -> dict:
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.name("JobsTable"), Key={"job_id": {"S": job}}, ConsistentRead=True
    )
    return item.get("Item") or {}


def shards_done(item: dict) -> int:
    return len({int(n) for n in item.get("done", {}).get("NS", [])} - {-1})


def status(cloud: LocalCloud, job: str) -> dict:
    req = urllib.request.Request(f"{cloud.api_url}/v1/batch/jobs/{job}", headers=auth(cloud))
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def markers(cloud: LocalCloud, job: str) -> set[str]:
    s3 = cloud.client("s3")
    listed = s3.list_objects_v2(Bucket=cloud.name("DataBucket"), Prefix=f"results/{job}/_")
    return {o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])}


def log_size(cloud: LocalCloud, function: str) -> int:
    path = cloud.pools[function].log_path
    return path.stat().st_size if path.exists() else 0


def max_memory_mb(cloud: LocalCloud, function: str, since: int) -> int:
    """The highest 'Max Memory Used' (a container's peak RSS) of the function's REPORT lines logged after ``since``."""
    with cloud.pools[function].log_path.open("rb") as fh:
        fh.seek(since)
        found = re.findall(rb"Max Memory Used: (\d+) MB", fh.read())
    assert found, f"no REPORT line of {function} since byte {since}"
    return max(int(m) for m in found)


# ---------------------------------------------------------------------------------------------- moto restarted


def test_moto_state_survives_a_restart_with_persistence(tmp_path: Path) -> None:
    """The server alone: resources, object bytes (keys with encoded characters too) and items come back;
    SQS messages are delivered again (receives and deletes are not replayed)."""
    moto = MotoServer(port=0, log_path=tmp_path / "moto.log", persist_log=tmp_path / "state.jsonl").start()
    try:
        session = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
        s3, sqs, ddb = (session.client(s, endpoint_url=moto.url) for s in ("s3", "sqs", "dynamodb"))
        s3.create_bucket(Bucket="state")
        body = bytes(range(256)) * 4096
        s3.put_object(Bucket="state", Key="a b/c%2Fd+e.bin", Body=body)
        s3.put_object(Bucket="state", Key="gone", Body=b"1")
        s3.delete_object(Bucket="state", Key="gone")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        )
        ddb.put_item(TableName="t", Item={"k": {"S": "a"}, "n": {"N": "1"}})
        ddb.update_item(
            TableName="t",
            Key={"k": {"S": "a"}},
            UpdateExpression="ADD n :d",
            ExpressionAttributeValues={":d": {"N": "4"}},
        )
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m1")
        got = sqs.receive_message(QueueUrl=url)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        with (tmp_path / "state.jsonl").open("ab") as fh:
            fh.write(b'{"method": "PUT", "url": "http://torn')  # killed in the middle of writing an entry

        down = moto.restart()

        assert down < 30
        assert s3.get_object(Bucket="state", Key="a b/c%2Fd+e.bin")["Body"].read() == body
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="state")["Contents"]] == ["a b/c%2Fd+e.bin"]
        assert ddb.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"]["n"] == {"N": "5"}
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["m1"]  # delivered again
        s3.put_object(Bucket="state", Key="after", Body=b"2")  # appended after the torn entry was cut off
        moto.restart()
        assert s3.get_object(Bucket="state", Key="after")["Body"].read() == b"2"
        moto.reset()
        moto.restart()
        assert s3.list_buckets()["Buckets"] == []  # a reset empties the log too
    finally:
        moto.stop()


def test_a_ranged_get_reads_its_range_as_s3_answers_it(tmp_path: Path) -> None:
    """The server alone: the local cloud's moto reads only a range's bytes (moto itself reads the whole object for
    every range, which made batch workers' reads grow with the file); the answers stay S3's."""
    moto = MotoServer(port=0, log_path=tmp_path / "moto.log").start()
    try:
        s3 = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").client(
            "s3", endpoint_url=moto.url
        )
        s3.create_bucket(Bucket="ranges")
        body = bytes(range(256)) * 40
        etag = s3.put_object(Bucket="ranges", Key="k", Body=body)["ETag"]
        cases = {"bytes=2-5": (2, 5), "bytes=0-10239": (0, 10239), "bytes=10000-99999": (10000, 10239)}
        cases |= {"bytes=100-": (100, 10239), "bytes=-16": (10224, 10239), "bytes=7-7": (7, 7)}
        for header, (first, last) in cases.items():
            got = s3.get_object(Bucket="ranges", Key="k", Range=header, IfMatch=etag)
            assert got["Body"].read() == body[first : last + 1], header
            assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
            assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        for header, code in (("bytes=10240-10300", "InvalidRange"), ("bytes=0-9", "PreconditionFailed")):
            with pytest.raises(s3.exceptions.ClientError) as err:
                s3.get_object(
                    Bucket="ranges", Key="k", Range=header, IfMatch=etag if code != "PreconditionFailed" else '"0"'
                )
            assert err.value.response["Error"]["Code"] == code
        assert s3.get_object(Bucket="ranges", Key="k")["Body"].read() == body
        assert s3.get_object(Bucket="ranges", Key="k", Range="bytes=0-1,4-5")["Body"].read() == body  # as moto does
    finally:
        moto.stop()


def test_concurrent_conditional_updates_of_one_item_count_every_one(tmp_path: Path) -> None:
    """DynamoDB applies each write atomically; moto alone loses concurrent ADDs (the job counts depend on it)."""
    moto = MotoServer(port=0, log_path=tmp_path / "moto.log").start()
    try:
        session = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
        ddb = session.client("dynamodb", endpoint_url=moto.url)
        ddb.create_table(
            TableName="jobs",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        )
        ddb.put_item(TableName="jobs", Item={"k": {"S": "j"}, "done": {"NS": ["-1"]}, "n": {"N": "0"}})
        threads, each = 4, 150

        def count(t: int) -> None:
            client = session.client("dynamodb", endpoint_url=moto.url)
            for i in range(t * each, (t + 1) * each):
                client.update_item(
                    TableName="jobs",
                    Key={"k": {"S": "j"}},
                    UpdateExpression="ADD done :s, n :one",
                    ConditionExpression="NOT contains(done, :i)",
                    ExpressionAttributeValues={":s": {"NS": [str(i)]}, ":one": {"N": "1"}, ":i": {"N": str(i)}},
                )

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(count, range(threads)))
        item = ddb.get_item(TableName="jobs", Key={"k": {"S": "j"}}, ConsistentRead=True)["Item"]
        assert len(item["done"]["NS"]) - 1 == threads * each
        assert item["n"] == {"N": str(threads * each)}
    finally:
        moto.stop()


def test_moto_restarted_mid_job_the_job_resumes_every_valid_key_once(cloud):
    lines, valid, bad = keyed_file(8000, bad_every=100, seed=11)
    drop(cloud, "incoming/restart.jsonl", b"\n".join(lines) + b"\n")
    # Mid-job: planned (RUNNING, shard total known) and some shards done, not all.
    item = wait_for(
        lambda: (i := job_item(cloud, "restart.jsonl")) and i["state"]["S"] == "RUNNING" and shards_done(i) >= 3 and i,
        timeout=120,
        interval=0.05,
    )
    total = int(item["shards_total"]["N"])
    before = shards_done(item)
    down = cloud.restart_moto()
    after = job_item(cloud, "restart.jsonl")
    assert after, "the job was lost in the restart"
    assert shards_done(after) >= before  # nothing counted before the crash was forgotten
    assert before < total, "the job finished before moto was restarted: the test proved nothing"

    manifest = finished(cloud, "restart.jsonl", timeout=180)
    cloud.wait_idle(timeout=90)  # redelivered messages are processed too: they must change nothing

    assert manifest["state"] == "SUCCEEDED", manifest
    assert manifest["shards"] == {"total": total, "done": total, "failed": []}
    assert manifest["counts"] == {"rows_in": 8000, "rows_predicted": len(valid), "rows_rejected": len(bad)}
    parts, errors = results(cloud, "restart.jsonl")
    keys = [p["key"] for p in parts]
    assert len(keys) == len(set(keys)) == len(valid)
    assert set(keys) == set(valid)
    assert sorted(e["line"] for e in errors) == sorted(bad)
    assert markers(cloud, "restart.jsonl") == {"_SUCCESS"}
    assert status(cloud, "restart.jsonl")["state"] == "SUCCEEDED"
    print(f"moto down {down:.2f} s with {before}/{total} shards done")


# ---------------------------------------------------------------------------------------------- gzip bombs


def bomb(line: bytes, inflated: int, member: int = 1024 * 1024) -> bytes:
    """A gzip file of `inflated` bytes made of `line` repeated, built from identical members (cheap to make)."""
    block = (line * (member // len(line) + 1))[:member]
    one = gzip.compress(block, compresslevel=9, mtime=0)
    return one * (inflated // member)


def test_bomb_fixture_inflates_as_claimed():
    data = bomb(b"ab\n", 8 * 1024 * 1024)
    assert len(data) < 64 * 1024
    assert len(zlib.decompressobj(wbits=31).decompress(data[: len(data) // 8])) == 1024 * 1024
    assert sum(len(c) for c in _inflate_all(data)) == 8 * 1024 * 1024


def _inflate_all(data: bytes) -> Iterator[bytes]:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        # rows with line ends: cut into shards until the decompression cap stops it
        (
            "rows",
            orjson.dumps({"key": "k", "x": [0.5] * 64}) + b"\n",
            f"inflates to more than {CAP} bytes (the decompression cap)",
        ),
        # no line end at all: one over-long line, skipped without being held, until the decompression cap stops it
        ("zeros", b"\0", f"inflates to more than {CAP} bytes (the decompression cap)"),
    ],
)
def test_gzip_bomb_fails_naming_its_limit_with_bounded_memory(cloud, name, line, reason):
    inflated = 1024**3  # 1 GiB inflated, a few megabytes on the wire
    # Baseline: the planner's peak memory for a small ordinary file, in a fresh container.
    small, _, _ = keyed_file(200, bad_every=0)
    since = log_size(cloud, "BatchSplitFunction")
    drop(cloud, "incoming/small.jsonl", b"\n".join(small) + b"\n")
    assert finished(cloud, "small.jsonl")["state"] == "SUCCEEDED"
    cloud.wait_idle(timeout=60)
    baseline = max_memory_mb(cloud, "BatchSplitFunction", since)
    cloud.pools["BatchSplitFunction"].recycle()

    data = bomb(line, inflated)
    assert len(data) * 200 < inflated
    job = f"bomb-{name}.jsonl.gz"
    since = log_size(cloud, "BatchSplitFunction")
    drop(cloud, f"incoming/{job}", data)
    manifest = finished(cloud, job, timeout=120)
    cloud.wait_idle(timeout=90)  # shards sent before the cap was hit are settled: none may turn into a success
    peak = max_memory_mb(cloud, "BatchSplitFunction", since)

    assert manifest["state"] == "FAILED"
    assert reason in manifest["reasons"][0]
    assert markers(cloud, job) == {"_FAILED"}
    st = status(cloud, job)
    assert st["state"] == "FAILED"
    assert reason in st["reasons"][0]
    # Streaming: the planner's peak stays within a few shards of its baseline, not anywhere near 1 GiB.
    assert peak - baseline < 48, (peak, baseline)
    print(f"{name}: split peak {peak} MB vs {baseline} MB for a small file; {len(data)} B inflating to {inflated} B")
