"""The fakes of tests/fakes.py keep their adapters' contracts: the same sequence of calls gives the same answers from
the fake and from the boto3 adapter on in-process moto (conditional updates, pinned reads, claims and cooldowns)."""

from __future__ import annotations

import gzip

import boto3
import pytest
from botocore.exceptions import ClientError
from liteserve.adapters import ObjectStore, Pin, SourceChanged
from liteserve.batch.storage import JobStore
from liteserve.evaluation.evaluate import DecisionStore

from tests.fakes import FakeClaims, FakeJobs, FakeObjects

T0 = 1795835400.0


@pytest.fixture(params=["fake", "moto"])
def adapters(request):
    """(objects, jobs, claims) of one kind."""
    if request.param == "fake":
        yield FakeObjects("data"), FakeJobs(), FakeClaims()
        return
    request.getfixturevalue("mocked_aws")
    boto3.client("s3").create_bucket(Bucket="data")
    ddb = boto3.client("dynamodb")
    for name, key in (("jobs", "job_id"), ("evals", "pk")):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        )
    yield ObjectStore("data"), JobStore("jobs"), DecisionStore("evals")


def test_job_ledger_conditions(adapters):
    _, jobs, _ = adapters
    pin = Pin("etag-1")
    job = jobs.begin("j", pin, "incoming/j", {"model": "m"}, "1", drop="d1")
    assert (job.run, job.state, job.done, job.shards_total) == (1, "PLANNING", set(), None)
    assert jobs.begin("j", pin, "incoming/j", {"model": "m"}, "1", drop="d1") is not None  # PLANNING: a crashed planner
    assert jobs.planned("j", 2, 3).state == "RUNNING"
    assert jobs.begin("j", pin, "incoming/j", {"model": "m"}, "1", drop="d1") is None  # a repeated notification
    assert jobs.begin("j", pin, "incoming/j", {"model": "m", "force": True}, "1", drop="d1", force=True) is None
    assert jobs.planned("j", 2, 3) is None  # already planned
    done = jobs.shard_done("j", 2, 0, {"rows_in": 5, "rows_predicted": 4, "rows_rejected": 1}, 0.5)
    assert done.done == {0} and done.counts == {"rows_in": 5, "rows_predicted": 4, "rows_rejected": 1}
    assert jobs.shard_done("j", 2, 0, {"rows_in": 5, "rows_predicted": 4, "rows_rejected": 1}, 0.5) is None
    assert jobs.shard_done("j", 1, 1, {"rows_in": 1, "rows_predicted": 1, "rows_rejected": 0}, 0.1) is None  # stale
    assert jobs.shard_failed("j", 2, 0) is None  # already done
    assert jobs.shard_failed("j", 2, 1).failed == {1}
    assert jobs.finish("j", 2, "FAILED", "shard 1") is not None
    assert jobs.finish("j", 2, "SUCCEEDED") is None
    assert jobs.published("j", 2).published is True
    assert jobs.published("j", 2) is None
    again = jobs.begin("j", pin, "incoming/j", {"model": "m"}, "1", drop="d2", force=True)  # a forced re-drop
    assert (again.run, again.state, again.done, again.failed, again.published) == (3, "PLANNING", set(), set(), False)
    assert jobs.fail_planning("j", 3, "bad header").state == "FAILED"
    assert jobs.begin("j", Pin("etag-2"), "incoming/j", {"model": "m"}, "1").run == 4  # new bytes
    assert jobs.begin("j", Pin("etag-2"), "incoming/j", {"model": "m"}, "2") is not None  # promoted since
    assert jobs.get("j").run == 5 and jobs.get("nope") is None


def test_claims_once_per_window_with_cooldown_and_resend(adapters):
    _, _, claims = adapters
    assert claims.claim("m", "w1", T0, 24) == "claimed"
    assert claims.claim("m", "w1", T0 + 20, 24) == "duplicate"
    assert claims.claim("m", "w1", T0 + 1000, 24) == "resend"
    claims.sent("m", "w1", T0 + 1000)
    assert claims.claim("m", "w1", T0 + 5000, 24) == "duplicate"
    assert claims.claim("m", "w2", T0 + 3600, 24) == "cooldown"
    assert claims.claim("other", "w2", T0 + 3600, 24) == "claimed"
    assert claims.claim("m", "w3", T0 + 25 * 3600, 24) == "claimed"


def test_objects_pinned_reads_ranges_and_missing_keys(adapters):
    objects, _, _ = adapters
    objects.put("a/x", b"0123456789")
    objects.put("a/y.gz", gzip.compress(b"abc" * 10))
    objects.put("b/z", b"")
    head = objects.head("a/x")
    assert head["size"] == 10 and head["version_id"] == "" and head["metadata"] == {}
    pin = Pin(head["etag"])
    assert objects.read("a/x", (2, 4), pin=pin) == b"234"
    assert b"".join(objects.stream("a/y.gz", gunzip=True)) == b"abc" * 10
    with pytest.raises(ValueError, match="decompression cap"):
        list(objects.stream("a/y.gz", gunzip=True, max_bytes=10))
    assert objects.keys("a/") == ["a/x", "a/y.gz"] and objects.exists("b/z") and not objects.exists("b/q")
    objects.put("a/x", b"replaced")
    with pytest.raises(SourceChanged):
        objects.read("a/x", pin=pin)
    objects.delete(["a/x", "a/missing"])
    with pytest.raises(SourceChanged):
        list(objects.stream("a/x", pin=pin))
    for call in (lambda: objects.head("a/x"), lambda: objects.read("a/x")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")
