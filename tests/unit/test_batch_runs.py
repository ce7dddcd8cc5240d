"""Runs of a batch job racing each other (issue 16), against in-process moto: a forced re-drop and a replaced file
while the first run works, stragglers of a superseded run, neighbouring object names, over-long lines and keys.
The same scenarios run through the real event sources in tests/integration/test_batch_runs.py."""

from __future__ import annotations

import time

import boto3
import orjson
import pytest
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.lines import MAX_LINE_BYTES

from tests.unit.test_batch_pipeline import BUCKET, CACHE, JOBS, aws, drain, make_rows, manifest, models, outputs, put
from tests.unit.test_batch_pipeline import read as read_object

__all__ = ["aws", "models"]  # fixtures shared with test_batch_pipeline


@pytest.fixture
def pipeline(aws, models):
    return Pipeline(
        BatchConfig(bucket=BUCKET, jobs_table=JOBS, queue_url=aws, cache_table=CACHE, shard_bytes=8_000), models
    )


def body(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def keys_of(rows: list[dict]) -> list[str]:
    return sorted(r["key"] for r in rows)


def every_object(prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_forced_redrop_with_another_signature_mid_run_never_mixes_or_loses(pipeline):
    lines, valid, _ = make_rows(400)
    put("incoming/f.jsonl", body(lines))
    first = pipeline.split("incoming/f.jsonl", "seq-1")
    old = drain(pipeline)
    assert first["run"] == 1 and len(old) > 4
    for m in old[:3]:  # the first run is part-way through
        pipeline.run_shard(m)
    put("incoming/f.jsonl", body(lines), force="true", signature="embedding")  # same bytes, same ETag
    second = pipeline.split("incoming/f.jsonl", "seq-2")
    assert second["run"] == 2
    assert manifest("f.jsonl") is None  # nothing describes the job while its new run works
    new = drain(pipeline)
    # the old run's stragglers interleave with the new run's shards, and come back after it published
    for old_m, new_m in zip(old[3:], new, strict=False):
        assert pipeline.run_shard(old_m)["stale"] is True
        pipeline.run_shard(new_m)
    for m in new[len(old) - 3 :]:
        pipeline.run_shard(m)
    for m in old:
        assert pipeline.run_shard(m) == {"job_id": "f.jsonl", "run": 1, "shard": m["shard"], "stale": True}
    done = manifest("f.jsonl")
    assert (done["state"], done["run"], done["signature"]) == ("SUCCEEDED", 2, "embedding")
    parts, errors = outputs("f.jsonl")
    assert keys_of(parts) == sorted(valid) and errors == []
    assert all("embedding" in p and "class_id" not in p for p in parts)  # no row of the first run's signature
    assert all("/run-000002/" in uri for uri in done["output"]["parts"])
    assert not [k for k in every_object("results/f.jsonl/") if "/run-000001/" in k]  # swept after publishing
    assert done["counts"]["rows_predicted"] == len(valid)


def test_a_repeated_notification_of_a_forced_drop_is_not_a_new_run(pipeline):
    put("incoming/r.jsonl", body(make_rows(50)[0]), force="true")
    assert pipeline.split("incoming/r.jsonl", "seq-1")["run"] == 1
    assert pipeline.split("incoming/r.jsonl", "seq-1") == {"job_id": "r.jsonl", "duplicate": True}
    assert pipeline.split("incoming/r.jsonl", "seq-2")["run"] == 2  # another PUT of the same bytes


def test_a_file_replaced_while_its_workers_run_publishes_only_the_new_file(pipeline):
    big, _, _ = make_rows(600, seed=1)
    put("incoming/rep.jsonl", body(big))
    pipeline.split("incoming/rep.jsonl")
    old = drain(pipeline)
    pipeline.run_shard(old[0])
    small, valid, _ = make_rows(30, seed=2)
    small = [line.replace(b'"id-', b'"new-') for line in small]
    put("incoming/rep.jsonl", body(small))
    # a straggler that reads the source after the replacement, before the new drop's run began: no write, retried
    with pytest.raises(Exception, match="no longer has ETag"):
        pipeline.run_shard(old[1])
    assert every_object("results/rep.jsonl/run-000001/") == [
        "results/rep.jsonl/run-000001/part-00000.jsonl"
    ]  # only the shard that ran before the replacement
    pipeline.split("incoming/rep.jsonl")
    new = drain(pipeline)
    for m in old[1:] + new:
        pipeline.run_shard(m)
    parts, _ = outputs("rep.jsonl")
    assert keys_of(parts) == sorted(k.replace("id-", "new-") for k in valid)
    assert manifest("rep.jsonl")["shards"]["total"] == len(new) < len(old)


def test_a_superseded_run_cannot_count_fail_or_publish(pipeline):
    lines, valid, _ = make_rows(300)
    put("incoming/s.jsonl", body(lines))
    pipeline.split("incoming/s.jsonl")
    old = drain(pipeline)
    put("incoming/s.jsonl", body(lines), force="true")
    pipeline.split("incoming/s.jsonl", "seq-2")
    new = drain(pipeline)
    pipeline.shard_dead(old[0])  # a dead message of the old run does not fail the new one
    for m in new:
        pipeline.run_shard(m)
    assert pipeline.finalize("s.jsonl", 1).run == 2  # an old finalizer changes nothing
    assert manifest("s.jsonl")["state"] == "SUCCEEDED"
    assert keys_of(outputs("s.jsonl")[0]) == sorted(valid)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("incoming/n.jsonl", "incoming/n/sub.jsonl"),
        ("incoming/st.jsonl", "incoming/st.csv"),
        ("incoming/g.jsonl", "incoming/g.jsonl.gz"),
        ("incoming/x.jsonl", "incoming/x.jsonl/run-000001/y.jsonl"),  # a name that looks like a run folder
    ],
)
def test_neighbouring_names_are_separate_jobs(pipeline, one, other):
    import gzip

    def drop(key: str, seed: int, prefix: str) -> set[str]:
        lines, valid, _ = make_rows(120, seed=seed)
        if key.endswith(".csv"):
            data = ("key," + ",".join(f"f{i}" for i in range(64)) + "\n").encode() + b"".join(
                f"{prefix}{k},".encode() + ",".join(map(str, x)).encode() + b"\n" for k, x in valid.items()
            )
        else:
            data = body([line.replace(b'"id-', f'"{prefix}id-'.encode()) for line in lines])
        put(key, gzip.compress(data) if key.endswith(".gz") else data)
        pipeline.split(key)
        for m in drain(pipeline):
            pipeline.run_shard(m)
        return {prefix + k for k in valid}

    other_keys = drop(other, 1, "o-")
    drop(one, 2, "a-")
    again = drop(one, 3, "b-")  # re-dropping (replacing) one job's file sweeps its old run
    job_one, job_other = one.removeprefix("incoming/"), other.removeprefix("incoming/")
    assert keys_of(outputs(job_one)[0]) == sorted(again)
    assert keys_of(outputs(job_other)[0]) == sorted(other_keys)
    assert manifest(job_other)["state"] == "SUCCEEDED"
    for uri in manifest(job_other)["output"]["parts"]:
        read_object(uri.removeprefix(f"s3://{BUCKET}/"))  # still there


def test_an_over_long_line_is_one_bad_line_wherever_it_falls(pipeline):
    lines, valid, _ = make_rows(60)
    long_line = b'{"key": "huge", "x": [' + b"0.5, " * (MAX_LINE_BYTES // 5 + 10) + b"0.5]}"
    crossing = [*lines[:30], long_line, *lines[30:]]  # crosses the 8 kB shard boundary
    put("incoming/long.jsonl", body(crossing))
    summary = pipeline.split("incoming/long.jsonl")
    for m in drain(pipeline):
        pipeline.run_shard(m)
    parts, errors = outputs("long.jsonl")
    assert summary["shards"] >= 2
    assert keys_of(parts) == sorted(valid)
    assert errors == [
        {"line": 31, "error": f"line 31 is longer than {MAX_LINE_BYTES} bytes (the line limit): not a row"}
    ]
    # inside one shard the same line gets the same error
    big = Pipeline(
        BatchConfig(
            bucket=BUCKET, jobs_table=JOBS, queue_url=pipeline.config.queue_url, shard_bytes=4 * MAX_LINE_BYTES
        ),
        pipeline.models,
    )
    put("incoming/inside.jsonl", body(crossing))
    assert big.split("incoming/inside.jsonl")["shards"] == 1
    for m in drain(big):
        big.run_shard(m)
    assert outputs("inside.jsonl")[1] == errors
    # and as the last line of a file, with nothing after it
    put("incoming/tail.jsonl", body([*lines, long_line]))
    pipeline.split("incoming/tail.jsonl")
    for m in drain(pipeline):
        pipeline.run_shard(m)
    assert [e["line"] for e in outputs("tail.jsonl")[1]] == [61]
    assert keys_of(outputs("tail.jsonl")[0]) == sorted(valid)


def test_a_cache_key_over_the_store_limit_is_a_row_error_not_a_stuck_shard(pipeline):
    lines, valid, _ = make_rows(40)
    long_key = "k" * 2049  # with the quotes and "digits#" 2058 bytes: over DynamoDB's 2048
    lines.insert(5, orjson.dumps({"key": long_key, "x": [0.1] * 64}))
    lines.insert(9, orjson.dumps({"key": "é" * 1025, "x": [0.1] * 64}))  # 2050 bytes (+ quotes) in 1025 characters
    put("incoming/keys.jsonl", body(lines), cache="true")
    pipeline.split("incoming/keys.jsonl")
    for m in drain(pipeline):
        pipeline.run_shard(m)
    done = manifest("keys.jsonl")
    assert done["state"] == "SUCCEEDED"
    parts, errors = outputs("keys.jsonl")
    assert keys_of(parts) == sorted(valid)
    assert [(e["line"], e["error"]) for e in errors] == [
        (6, "key takes 2051 bytes as JSON; the results cache keeps keys of at most 2041 here"),
        (10, "key takes 2052 bytes as JSON; the results cache keeps keys of at most 2041 here"),
    ]
    assert pipeline.cache.get("digits", next(iter(valid)))["job_id"] == "keys.jsonl"


def test_a_forced_run_then_the_same_drop_without_force_is_not_rerun(pipeline):
    put("incoming/ff.jsonl", body(make_rows(30)[0]), force="true")
    assert pipeline.split("incoming/ff.jsonl", "seq-1")["run"] == 1
    put("incoming/ff.jsonl", body(make_rows(30)[0]))
    assert pipeline.split("incoming/ff.jsonl", "seq-2") == {"job_id": "ff.jsonl", "duplicate": True}


def test_a_marker_written_while_a_newer_run_began_is_taken_back(pipeline, monkeypatch):
    lines, valid, _ = make_rows(8)  # one shard
    put("incoming/m.jsonl", body(lines))
    pipeline.split("incoming/m.jsonl")
    [message] = drain(pipeline)
    real_put = pipeline.store.put

    def redrop_then_put(key: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        if key.endswith("/_SUCCESS"):  # the newer run begins (and clears the markers) just before this put lands
            monkeypatch.setattr(pipeline.store, "put", real_put)
            put("incoming/m.jsonl", body(lines), force="true")
            assert pipeline.split("incoming/m.jsonl", "seq-2")["run"] == 2
        real_put(key, data, content_type)

    monkeypatch.setattr(pipeline.store, "put", redrop_then_put)
    pipeline.run_shard(message)
    assert manifest("m.jsonl") is None  # no marker of run 1 describes a job whose run 2 works
    for m in drain(pipeline):
        pipeline.run_shard(m)
    assert manifest("m.jsonl")["run"] == 2
    assert keys_of(outputs("m.jsonl")[0]) == sorted(valid)


def test_the_cache_keeps_each_models_answer_and_the_keys_json_type(pipeline):
    """Two jobs on different models (digits, digits-edge) cache the same keys; 1 and "1" are different keys."""
    x = [0.2] * 64
    rows = [orjson.dumps({"key": k, "x": x}) for k in ("1", 1, "a")]
    put("incoming/c1.jsonl", body(rows), cache="true")
    put("incoming/c2.jsonl", body(rows), cache="true", model="digits-edge")
    for key in ("incoming/c1.jsonl", "incoming/c2.jsonl"):
        pipeline.split(key)
        for m in drain(pipeline):
            pipeline.run_shard(m)
    a, b = pipeline.cache.get("digits", "a"), pipeline.cache.get("digits-edge", "a")
    assert (a["model"], a["job_id"], b["model"], b["job_id"]) == ("digits", "c1.jsonl", "digits-edge", "c2.jsonl")
    assert pipeline.cache.get("digits", 1)["key"] == 1 and pipeline.cache.get("digits", "1")["key"] == "1"
    assert pipeline.cache.get("digits", 2) is None
    ttl = pipeline.config.cache_ttl_seconds
    item = boto3.resource("dynamodb").Table(CACHE).get_item(Key={"key": 'digits#"1"'})["Item"]
    assert time.time() + ttl - 60 < int(item["expires_at"]) <= time.time() + ttl  # the configured TTL


def test_a_source_deleted_while_planned_fails_its_run_with_the_reason(pipeline, monkeypatch):
    lines, _, _ = make_rows(200)
    put("incoming/gone.jsonl", body(lines))
    real_stream = pipeline.store.stream

    def delete_mid_stream(key, **kw):
        chunks = real_stream(key, **kw)
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)
        yield from chunks

    monkeypatch.setattr(pipeline.store, "stream", delete_mid_stream)
    summary = pipeline.split("incoming/gone.jsonl")
    assert summary["failed"] == "incoming/gone.jsonl was deleted while it was planned", summary
    assert manifest("gone.jsonl")["state"] == "FAILED"


def test_the_status_says_published_only_once_the_manifest_is_out(pipeline, monkeypatch):
    lines, valid, _ = make_rows(120)
    put("incoming/p.jsonl", body(lines))
    pipeline.split("incoming/p.jsonl")
    messages = drain(pipeline)
    for m in messages[:-1]:
        pipeline.run_shard(m)
    assert pipeline.describe(pipeline.jobs.get("p.jsonl"))["published"] is False  # still running

    put_event = pipeline.bus.put

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the publisher died before its event")

    monkeypatch.setattr(pipeline.bus, "put", crash)
    with pytest.raises(RuntimeError, match="publisher died"):
        pipeline.run_shard(messages[-1])
    status = pipeline.describe(pipeline.jobs.get("p.jsonl"))
    assert (status["state"], status["published"]) == ("SUCCEEDED", False)  # settled, not yet published
    monkeypatch.setattr(pipeline.bus, "put", put_event)
    pipeline.run_shard(messages[-1])  # the redelivered last shard republishes
    status = pipeline.describe(pipeline.jobs.get("p.jsonl"))
    assert (status["state"], status["published"]) == ("SUCCEEDED", True)
    assert "published" not in manifest("p.jsonl")  # the manifest itself is the published thing
    assert keys_of(outputs("p.jsonl")[0]) == sorted(valid)
