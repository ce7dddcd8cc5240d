"""Batch planning and the pipeline's decisions on in-memory fakes (tests/fakes.py): no moto, no AWS client. The same
flow against moto is tests/unit/test_batch_pipeline.py; the adapters' own behaviour is tested there and in
tests/unit/test_fakes_contract.py."""

from __future__ import annotations

import gzip
import itertools

import orjson
import pytest
from liteserve.batch.jobs import BatchConfig

from tests.fakes import FakeBatch, fake_pipeline


def rows(n: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"key": f"k{i:05d}", "x": [(i % 17) / 17] * 64}) for i in range(start, start + n)]


def body(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def batch(models) -> FakeBatch:
    return fake_pipeline(models, BatchConfig(bucket="data", jobs_table="", shard_bytes=8_000))


def run_all(batch: FakeBatch) -> None:
    for message in batch.queue.drain():
        batch.pipeline.run_shard(message)


def published(batch: FakeBatch, job: str) -> tuple[dict, list[dict], list[dict]]:
    """The job's manifest, its parts' rows and its error records."""
    marker = next(k for k in batch.store.keys(f"results/{job}/_"))
    manifest = orjson.loads(batch.store.read(marker))
    out = manifest["output"]

    def lines(uris: list[str]) -> list[dict]:
        return [orjson.loads(ln) for u in uris for ln in batch.store.read(u.removeprefix("s3://data/")).splitlines()]

    return manifest, lines(out["parts"]), lines(out.get("errors", []))


def test_a_drop_is_planned_into_byte_ranged_shards_that_cover_every_line(batch):
    lines = rows(400)
    batch.store.put("incoming/a.jsonl", body(lines))
    summary = batch.pipeline.split("incoming/a.jsonl")
    messages = list(batch.queue.messages)
    assert summary["shards"] == len(messages) > 3
    assert [m["shard"] for m in messages] == list(range(len(messages)))
    assert all(m["run"] == 1 and m["object"] == "incoming/a.jsonl" for m in messages)
    ranges = [m["range"] for m in messages]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(body(lines)) - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))  # contiguous, no gap, no overlap
    assert batch.queue.calls[0] == 1  # the first shard goes out at once: a worker starts while planning goes on
    assert batch.jobs.get("a.jsonl").state == "RUNNING"
    run_all(batch)
    manifest, parts, errors = published(batch, "a.jsonl")
    assert manifest["state"] == "SUCCEEDED" and errors == []
    assert sorted(p["key"] for p in parts) == [f"k{i:05d}" for i in range(400)]
    [event] = batch.bus.of("BatchJobCompleted")
    assert event["job_id"] == "a.jsonl" and event["counts"]["rows_predicted"] == 400
    assert batch.jobs.get("a.jsonl").published


def test_duplicate_keys_are_found_across_shards_and_rejected_naming_the_first_line(batch):
    lines = rows(300)
    lines[250] = lines[3]  # line 251 repeats line 4's key, in a later shard
    lines[10] = lines[9]  # line 11 repeats line 10, in the same shard
    batch.store.put("incoming/d.jsonl", body(lines))
    batch.pipeline.split("incoming/d.jsonl")
    duplicates = {tuple(d) for m in batch.queue.messages for d in m["duplicates"]}
    assert duplicates == {(251, 4), (11, 10)}
    run_all(batch)
    manifest, parts, errors = published(batch, "d.jsonl")
    assert len(parts) == len({p["key"] for p in parts}) == 298
    assert [(e["line"], e["error"]) for e in errors] == [(11, "key repeats line 10"), (251, "key repeats line 4")]
    assert manifest["counts"] == {"rows_in": 300, "rows_predicted": 298, "rows_rejected": 2}


def test_bad_lines_are_rejected_with_their_line_numbers_and_the_rest_predicted(batch):
    lines = rows(50)
    lines[4] = b"{not json"
    lines[20] = orjson.dumps({"key": "short", "x": [0.0] * 10})
    lines[30] = orjson.dumps({"x": [0.0] * 64})
    batch.store.put("incoming/b.jsonl", body(lines))
    batch.pipeline.split("incoming/b.jsonl")
    run_all(batch)
    manifest, parts, errors = published(batch, "b.jsonl")
    assert [e["line"] for e in errors] == [5, 21, 31]
    assert "expected 64 values, got 10" in errors[1]["error"]
    assert len(parts) == 47 and manifest["state"] == "SUCCEEDED"


def test_a_gzip_drop_is_staged_uncompressed_per_shard_and_the_staging_swept(batch):
    batch.store.put("incoming/g.jsonl.gz", gzip.compress(body(rows(300))))
    batch.pipeline.split("incoming/g.jsonl.gz")
    messages = list(batch.queue.messages)
    assert all(m["object"].startswith("staging/g.jsonl.gz/run-000001/shard-") and m["range"] is None for m in messages)
    run_all(batch)
    assert published(batch, "g.jsonl.gz")[0]["counts"]["rows_predicted"] == 300
    assert batch.store.keys("staging/") == []


def test_a_repeated_notification_is_no_new_run_and_a_forced_redrop_is(batch):
    batch.store.put("incoming/r.jsonl", body(rows(20)))
    assert batch.pipeline.split("incoming/r.jsonl")["run"] == 1
    assert batch.pipeline.split("incoming/r.jsonl") == {"job_id": "r.jsonl", "duplicate": True}
    run_all(batch)
    batch.store.put("incoming/r.jsonl", body(rows(20)), metadata={"force": "true"})  # same bytes, a new drop
    assert batch.pipeline.split("incoming/r.jsonl")["run"] == 2
    run_all(batch)
    assert published(batch, "r.jsonl")[0]["run"] == 2
    assert batch.store.keys("results/r.jsonl/run-000001/") == []  # the older run's objects are swept


def test_files_that_cannot_be_planned(batch):
    batch.store.put("incoming/notes.txt", b"hello")
    assert "unsupported file type" in batch.pipeline.split("incoming/notes.txt")["reason"]
    assert batch.pipeline.split("incoming/gone.jsonl")["skipped"] == "incoming/gone.jsonl"
    batch.store.put("incoming/o.jsonl", body(rows(5)), metadata={"colour": "red"})
    assert "unknown job option(s) ['colour']" in batch.pipeline.split("incoming/o.jsonl")["failed"]
    batch.store.put("incoming/c.csv", b"id,a,b\n1,2,3\n")
    assert "no key column 'key'" in batch.pipeline.split("incoming/c.csv")["failed"]
    batch.store.put("incoming/m.jsonl", body(rows(5)), metadata={"model": "nope"})
    assert "nope" in batch.pipeline.split("incoming/m.jsonl")["failed"]
    for job in ("o.jsonl", "c.csv", "m.jsonl"):
        manifest = orjson.loads(batch.store.read(f"results/{job}/_FAILED"))
        assert manifest["state"] == "FAILED" and manifest["reasons"]
    assert batch.queue.messages == []
    assert [e["state"] for e in batch.bus.of("BatchJobCompleted")] == ["FAILED"] * 3


def test_a_dead_shard_fails_the_run_once_and_a_late_success_changes_nothing(batch):
    batch.store.put("incoming/p.jsonl", body(rows(200)))
    batch.pipeline.split("incoming/p.jsonl")
    first, *rest = batch.queue.drain()
    for message in rest:
        batch.pipeline.run_shard(message)
    batch.pipeline.shard_dead(first)
    batch.pipeline.shard_dead(first)
    manifest, parts, _ = published(batch, "p.jsonl")
    assert manifest["state"] == "FAILED" and manifest["shards"]["failed"] == [0]
    assert batch.pipeline.run_shard(first)["duplicate"] is True
    assert len(batch.bus.of("BatchJobCompleted")) == 1 and 0 < len(parts) < 200


def test_a_source_replaced_mid_run_makes_the_old_runs_messages_stale(batch):
    batch.store.put("incoming/s.jsonl", body(rows(100)))
    batch.pipeline.split("incoming/s.jsonl")
    old = batch.queue.drain()
    batch.store.put("incoming/s.jsonl", body(rows(100, start=1000)))
    assert batch.pipeline.split("incoming/s.jsonl")["run"] == 2
    assert all(batch.pipeline.run_shard(m)["stale"] for m in old)
    run_all(batch)
    assert {p["key"] for p in published(batch, "s.jsonl")[1]} == {f"k{i:05d}" for i in range(1000, 1100)}


def test_cached_answers_by_key(batch):
    batch.store.put("incoming/k.jsonl", body(rows(10)), metadata={"cache": "true"})
    batch.pipeline.split("incoming/k.jsonl")
    run_all(batch)
    got = batch.cache.get("digits", "k00003")
    assert got["job_id"] == "k.jsonl" and got["run"] == 1 and "class_id" in got
