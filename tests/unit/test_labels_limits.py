"""Label files and POSTs within limits (issue 16): streamed with the batch decompression and line caps, every
refused file recorded in labels-errors/, keys longer than the labels table takes refused as line errors / 400."""

from __future__ import annotations

import gzip

import boto3
import orjson
import pytest
from liteserve.adapters import ObjectStore
from liteserve.errors import BadRequest
from liteserve.evaluation.labels import LabelStore, ingest_object, parse_post
from liteserve.lines import MAX_LINE_BYTES, iter_lines

BUCKET, TABLE = "data", "labels"


@pytest.fixture
def stores(mocked_aws):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
    )
    return LabelStore(TABLE), ObjectStore(BUCKET)


def drop(objects: ObjectStore, key: str, data: bytes) -> None:
    objects.put(key, data)


def error_records(objects: ObjectStore, key: str) -> list[dict]:
    return [orjson.loads(line) for line in objects.read(key).splitlines()]


def stored(key: str) -> str | None:
    item = boto3.resource("dynamodb").Table(TABLE).get_item(Key={"key": key}).get("Item")
    return item["label"] if item else None


def test_iter_lines_skips_an_over_long_line_without_holding_it():
    chunks = [b"a\nb", b"c\n" + b"x" * 50, b"y" * 60, b"\nlast"]
    assert list(iter_lines(chunks, max_line_bytes=100)) == [(1, b"a"), (2, b"bc"), (3, None), (4, b"last")]
    assert list(iter_lines([b"ok\n", b"z" * 500], max_line_bytes=100)) == [(1, b"ok"), (2, None)]


def test_a_label_bomb_stops_at_the_cap_keeps_what_it_read_and_says_why(stores):
    labels, objects = stores
    rows = b"".join(orjson.dumps({"key": f"k{i}", "label": i % 10}) + b"\n" for i in range(200_000))
    drop(objects, "labels/bomb.jsonl.gz", gzip.compress(rows))  # ~5 MB inflated, capped at 1 MB
    summary = ingest_object(labels, objects, BUCKET, "labels/bomb.jsonl.gz", max_bytes=1024 * 1024)
    assert "inflates to more than 1048576 bytes (the decompression cap)" in summary["refused"]
    assert 0 < summary["stored"] < 200_000
    assert stored("k0") == "0"
    assert error_records(objects, "labels-errors/bomb.jsonl.gz.jsonl")[-1]["error"] == summary["refused"]


def test_a_gz_label_file_that_is_not_gzip_is_refused_with_a_record(stores):
    labels, objects = stores
    drop(objects, "labels/fake.csv.gz", b"key,label\na,1\n")
    summary = ingest_object(labels, objects, BUCKET, "labels/fake.csv.gz")
    assert summary["stored"] == 0 and "Not a gzipped file" in summary["refused"]
    [record] = error_records(objects, "labels-errors/fake.csv.gz.jsonl")
    assert record["source"] == "labels/fake.csv.gz" and "Not a gzipped file" in record["error"]


def test_long_keys_labels_and_lines_are_line_errors_and_the_rest_is_stored(stores):
    labels, objects = stores
    lines = [
        orjson.dumps({"key": "ok-1", "label": "cat"}),
        orjson.dumps({"key": "k" * 100_000, "label": "cat"}),
        orjson.dumps({"key": "ok-2", "label": "x" * 2000}),
        b'{"key": "ok-3", "label": "' + b"y" * MAX_LINE_BYTES + b'"}',
        orjson.dumps({"key": "ok-4", "label": 7}),
    ]
    drop(objects, "labels/long.jsonl", b"\n".join(lines))
    summary = ingest_object(labels, objects, BUCKET, "labels/long.jsonl")
    assert (summary["stored"], summary["bad"]) == (2, 3)
    assert (stored("ok-1"), stored("ok-4")) == ("cat", "7")
    errors = {e["line"]: e["error"] for e in error_records(objects, "labels-errors/long.jsonl")}
    assert errors == {
        2: "'key' is 100000 bytes (UTF-8); at most 2048 are stored",
        3: "'label' is 2000 bytes (UTF-8); at most 1024 are stored",
        4: f"line 4 is longer than {MAX_LINE_BYTES} bytes (the line limit): not a row",
    }


def test_a_post_with_a_long_key_is_a_400_naming_the_item():
    with pytest.raises(BadRequest, match=r"item 1: 'key' is 100000 bytes \(UTF-8\); at most 2048 are stored"):
        parse_post([{"key": "a", "label": 1}, {"key": "k" * 100_000, "label": 1}])


def test_bad_rows_past_the_listing_limit_are_counted(stores, monkeypatch):
    labels, objects = stores
    monkeypatch.setattr("liteserve.evaluation.labels.MAX_ERROR_RECORDS", 5)
    drop(objects, "labels/junk.jsonl", b"nope\n" * 12 + orjson.dumps({"key": "a", "label": 1}))
    summary = ingest_object(labels, objects, BUCKET, "labels/junk.jsonl")
    records = error_records(objects, "labels-errors/junk.jsonl")
    assert summary["bad"] == 12 and len(records) == 6
    assert records[-1]["error"] == "7 more bad rows are not listed"
    assert stored("a") == "1"
