"""Runs of a batch job racing each other on the local cloud (issue 16), through the real event sources: a re-drop
with and without `force` while the first run works, a file replaced mid-run with its stragglers delivered late on
purpose, neighbouring object names, over-long lines and keys, and label files past the caps. Under each scenario
every valid key of the *current* file appears exactly once in what `_SUCCESS` lists, and nothing else does."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from localcloud import LocalCloud
from localcloud.metrics import from_logs
from tests.integration.conftest import post, project_cloud, wait_for
from tests.integration.test_batch import drop, get, keyed_file, results
from tests.integration.test_batch_faults import bomb, job_item, log_size, max_memory_mb, shards_done

pytestmark = pytest.mark.integration
CAP = 2 * 1024 * 1024
PARAMETERS = {
    "ShardBytes": "65536",
    "WorkerTimeout": "10",
    "ShardVisibilityTimeout": "12",
    "ShardMaxReceiveCount": "6",  # the tests peek at shard messages, which adds receives of their own
    "MaxDecompressedBytes": str(CAP),
    "WorkerMaxConcurrency": "2",
    "CacheTtlSeconds": "3600",  # not the default: the entries must carry this one
}


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-batch-runs", PARAMETERS) as cloud:
        yield cloud


@pytest.fixture
def cloud(lc: LocalCloud) -> Iterator[LocalCloud]:
    lc.reset()
    yield lc
    lc.wait_idle(timeout=90)


def published(cloud: LocalCloud, job: str, run: int, timeout: float = 180) -> dict:
    """The job's manifest once the given run has published it."""
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")

    def marker() -> dict | None:
        for name in ("_SUCCESS", "_FAILED"):
            try:
                found = json.loads(s3.get_object(Bucket=bucket, Key=f"results/{job}/{name}")["Body"].read())
            except s3.exceptions.NoSuchKey:
                continue
            if found["run"] == run:
                return found
        return None

    return wait_for(marker, timeout=timeout, interval=0.3)


def mid_run(cloud: LocalCloud, job: str, copies: dict[int, str], want: int = 3) -> int:
    """Wait until the job's first run has some shards done and some not; meanwhile keep copies of shard messages
    as they pass (visibility 0 leaves them to the workers), to deliver them again as late stragglers."""
    sqs, queue = cloud.client("sqs"), cloud.ref("ShardQueue")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", []):
            body = json.loads(m["Body"])
            if body["job_id"] == job:
                copies.setdefault(body["shard"], m["Body"])
        item = job_item(cloud, job)
        if item and len(copies) >= want and shards_done(item) >= 2:
            total = int(item.get("shards_total", {}).get("N", 10**9))
            assert shards_done(item) < total, "the first run ended before the re-drop: make the file larger"
            return shards_done(item)
    pytest.fail("the first run never got going")


def straggle(cloud: LocalCloud, copies: dict[int, str]) -> None:
    """Deliver the superseded run's messages again, after the new run published."""
    sqs, queue = cloud.client("sqs"), cloud.ref("ShardQueue")
    for body in copies.values():
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    cloud.wait_idle(timeout=90)


def every_key(cloud: LocalCloud, prefix: str) -> list[str]:
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def test_forced_redrop_mid_run_with_another_signature(cloud):
    lines, valid, _ = keyed_file(8000, bad_every=0, seed=11)
    body = b"\n".join(lines) + b"\n"
    drop(cloud, "incoming/forced.jsonl", body)
    copies: dict[int, str] = {}
    mid_run(cloud, "forced.jsonl", copies)
    drop(cloud, "incoming/forced.jsonl", body, force="true", signature="embedding")  # same bytes, same ETag
    manifest = published(cloud, "forced.jsonl", 2)
    straggle(cloud, copies)
    parts, errors = results(cloud, "forced.jsonl")
    keys = [p["key"] for p in parts]
    assert manifest["state"] == "SUCCEEDED" and manifest["signature"] == "embedding"
    assert len(keys) == len(set(keys)) == len(valid) and set(keys) == set(valid)
    assert all("embedding" in p and "class_id" not in p for p in parts)  # no row of the first run
    assert errors == []
    assert manifest["shards"]["done"] == manifest["shards"]["total"] == len(manifest["output"]["parts"])
    assert not [k for k in every_key(cloud, "results/forced.jsonl/") if "/run-000001/" in k]
    assert results(cloud, "forced.jsonl")[0] == parts  # the stragglers changed nothing
    # every shard a worker counted published its batch metrics under the model and version (issue 12)
    worker = from_logs(cloud.pools["BatchWorkerFunction"].log_path.parent, "BatchWorkerFunction")
    rows = [
        s
        for s in worker
        if s.name == "BatchRowsPredicted" and {("model", "digits"), ("version", "1")} <= set(s.dimensions.items())
    ]
    assert rows and rows[0].as_dict()["sum"] >= len(valid)  # both runs' counted shards


def test_redrop_of_the_same_bytes_without_force_mid_run_changes_nothing(cloud):
    lines, valid, _ = keyed_file(6000, bad_every=0, seed=12)
    body = b"\n".join(lines) + b"\n"
    drop(cloud, "incoming/same.jsonl", body)
    mid_run(cloud, "same.jsonl", {})
    drop(cloud, "incoming/same.jsonl", body)
    manifest = published(cloud, "same.jsonl", 1)
    cloud.wait_idle(timeout=90)
    keys = [p["key"] for p in results(cloud, "same.jsonl")[0]]
    assert manifest["state"] == "SUCCEEDED"
    assert len(keys) == len(set(keys)) == len(valid)
    assert job_item(cloud, "same.jsonl")["run"]["N"] == "1"


def test_file_replaced_mid_run_with_late_stragglers(cloud):
    big, _, _ = keyed_file(8000, bad_every=0, seed=13)
    drop(cloud, "incoming/swap.jsonl", b"\n".join(big) + b"\n")
    copies: dict[int, str] = {}
    mid_run(cloud, "swap.jsonl", copies, want=6)
    small, valid, _ = keyed_file(300, bad_every=0, seed=14)
    small = [line.replace(b'"user-', b'"new-') for line in small]
    drop(cloud, "incoming/swap.jsonl", b"\n".join(small) + b"\n")
    manifest = published(cloud, "swap.jsonl", 2)
    straggle(cloud, copies)
    keys = [p["key"] for p in results(cloud, "swap.jsonl")[0]]
    assert manifest["state"] == "SUCCEEDED"
    assert sorted(keys) == sorted(k.replace("user-", "new-") for k in valid)  # nothing of the old file
    assert manifest["shards"]["total"] == len(manifest["output"]["parts"]) < len(copies)
    leftovers = [k for k in every_key(cloud, "results/swap.jsonl/") if "/run-000002/" not in k]
    assert leftovers == ["results/swap.jsonl/_SUCCESS"]


def test_neighbouring_names_are_separate_jobs(cloud):
    def rows(prefix: str, n: int, seed: int) -> tuple[bytes, set[str]]:
        lines, valid, _ = keyed_file(n, bad_every=0, seed=seed)
        return b"\n".join(line.replace(b'"user-', f'"{prefix}'.encode()) for line in lines) + b"\n", {
            k.replace("user-", prefix) for k in valid
        }

    csv_valid = keyed_file(200, bad_every=0, seed=21)[1]
    csv_body = ("key," + ",".join(f"px{i}" for i in range(64)) + "\n").encode() + "".join(
        f"csv-{k}," + ",".join(map(str, x)) + "\n" for k, x in csv_valid.items()
    ).encode()
    nested, nested_keys = rows("nested-", 500, 22)
    drop(cloud, "incoming/n/sub.jsonl", nested)
    drop(cloud, "incoming/st.csv", csv_body)
    drop(cloud, "incoming/n.jsonl", rows("n1-", 500, 23)[0])
    drop(cloud, "incoming/st.jsonl", rows("st1-", 500, 24)[0])
    for job in ("n/sub.jsonl", "st.csv", "n.jsonl", "st.jsonl"):
        assert published(cloud, job, 1)["state"] == "SUCCEEDED"
    again, again_keys = rows("n2-", 300, 25)
    drop(cloud, "incoming/n.jsonl", again)  # replacing one job's file
    drop(cloud, "incoming/st.jsonl", rows("st2-", 300, 26)[0])
    published(cloud, "n.jsonl", 2)
    published(cloud, "st.jsonl", 2)
    cloud.wait_idle(timeout=90)
    assert sorted(p["key"] for p in results(cloud, "n.jsonl")[0]) == sorted(again_keys)
    assert sorted(p["key"] for p in results(cloud, "n/sub.jsonl")[0]) == sorted(nested_keys)
    assert sorted(p["key"] for p in results(cloud, "st.csv")[0]) == sorted(f"csv-{k}" for k in csv_valid)
    status = json.loads(get(cloud, "/v1/batch/jobs/n/sub.jsonl").read())
    assert (status["job_id"], status["state"], status["run"]) == ("n/sub.jsonl", "SUCCEEDED", 1)


def test_over_long_lines_and_long_cache_keys_are_row_errors(cloud):
    lines, valid, _ = keyed_file(400, bad_every=0, seed=31)
    long_line = b'{"key": "huge", "x": [' + b"0.5, " * 220_000 + b"0.5]}"  # ~1.1 MB, crosses a 64 KB shard end
    long_key = orjson.dumps({"key": "k" * 3000, "x": [0.1] * 64})
    body = b"\n".join([*lines[:100], long_line, *lines[100:200], long_key, *lines[200:]]) + b"\n"
    drop(cloud, "incoming/long.jsonl", body, cache="true")
    manifest = published(cloud, "long.jsonl", 1, timeout=120)
    parts, errors = results(cloud, "long.jsonl")
    assert manifest["state"] == "SUCCEEDED"
    assert sorted(p["key"] for p in parts) == sorted(valid)
    assert errors == [
        {"line": 101, "error": "line 101 is longer than 1048576 bytes (the line limit): not a row"},
        {"line": 202, "error": "key takes 3002 bytes as JSON; the results cache keeps keys of at most 2041 here"},
    ]
    with pytest.raises(urllib.error.HTTPError) as err:
        get(cloud, "/v1/predictions/" + "k" * 3000)
    assert err.value.code == 400
    assert json.loads(get(cloud, f"/v1/predictions/{next(iter(valid))}").read())["job_id"] == "long.jsonl"


def test_label_bomb_bad_gzip_and_long_keys(cloud):
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    row = orjson.dumps({"key": "k", "label": 1}) + b"\n"
    since = log_size(cloud, "LabelsFunction")
    s3.put_object(Bucket=bucket, Key="labels/bomb.jsonl.gz", Body=bomb(row, 1024**3))  # 1 GiB inflated
    s3.put_object(Bucket=bucket, Key="labels/fake.jsonl.gz", Body=b'{"key": "a", "label": 1}\n')

    def record(name: str) -> list[dict] | None:
        try:
            data = s3.get_object(Bucket=bucket, Key=f"labels-errors/{name}")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return [json.loads(line) for line in data.splitlines()]

    bomb_errors = wait_for(lambda: record("bomb.jsonl.gz.jsonl"), timeout=120, interval=0.5)
    assert f"inflates to more than {CAP} bytes (the decompression cap)" in bomb_errors[-1]["error"]
    fake = wait_for(lambda: record("fake.jsonl.gz.jsonl"), timeout=60, interval=0.5)
    assert "Not a gzipped file" in fake[0]["error"]
    cloud.wait_idle(timeout=60)
    assert max_memory_mb(cloud, "LabelsFunction", since) < 200  # streamed: nowhere near the inflated size

    status, body = post(cloud, "/v1/labels", [{"key": "k" * 100_000, "label": 1}])
    assert status == 400
    assert "'key' is 100000 bytes (UTF-8); at most 2048 are stored" in body["error"]


def test_cache_by_model_and_typed_key_with_the_templates_ttl(cloud):
    """Two jobs on different models keep both answers for the same keys; `1` and `"1"` stay apart; an entry lives
    CacheTtlSeconds; after a promotion the entry says it was written by an older version."""
    x = [0.3] * 64
    body = b"\n".join(orjson.dumps({"key": k, "x": x}) for k in ("shared", "1", 1)) + b"\n"
    drop(cloud, "incoming/cache-a.jsonl", body, cache="true")
    drop(cloud, "incoming/cache-b.jsonl", body, cache="true", model="digits-edge")
    published(cloud, "cache-a.jsonl", 1)
    published(cloud, "cache-b.jsonl", 1)
    a = json.loads(get(cloud, "/v1/predictions/shared").read())  # the default model
    b = json.loads(get(cloud, "/v1/predictions/shared?model=digits-edge").read())
    assert (a["model"], a["job_id"], b["model"], b["job_id"]) == (
        "digits",
        "cache-a.jsonl",
        "digits-edge",
        "cache-b.jsonl",
    )
    assert "live_version" not in a  # no promotion yet: nothing to compare with
    assert json.loads(get(cloud, "/v1/predictions/1").read())["key"] == "1"
    assert json.loads(get(cloud, "/v1/predictions/1?type=integer").read())["key"] == 1
    with pytest.raises(urllib.error.HTTPError) as err:
        get(cloud, "/v1/predictions/shared?model=nope")
    assert err.value.code == 404
    ttl = 3600
    item = cloud.client("dynamodb").get_item(TableName=cloud.name("CacheTable"), Key={"key": {"S": 'digits#"shared"'}})
    assert int(item["Item"]["expires_at"]["N"]) == a["expires_at"]
    assert time.time() + ttl - 300 < a["expires_at"] <= time.time() + ttl
    live = {"primary": {"model_version": "2", "function_version": "2"}, "canary": None}
    s3 = cloud.client("s3")
    s3.put_object(Bucket=cloud.name("DataBucket"), Key="models/digits/live.json", Body=json.dumps(live).encode())
    after = json.loads(get(cloud, "/v1/predictions/shared").read())
    assert (after["model_version"], after["live_version"], after["stale"]) == ("1", "2", True)
