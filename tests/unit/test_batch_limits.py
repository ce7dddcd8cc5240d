"""The planner's memory bounds (line limit, decompression cap) and the local cloud's moto state log (issue 7)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.batch.plan import LineTooLong, cut_shards, read_header

from localcloud.motoserver import mutating, read_log
from tests.unit.test_batch_pipeline import BUCKET, CACHE, JOBS, aws, drain, make_rows, put, read, run_all

__all__ = ["aws"]  # the in-process moto fixture, shared with test_batch_pipeline


class Endless:
    """Chunks of one byte value, forever; counts what was consumed."""

    def __init__(self, byte: bytes, size: int = 64 * 1024) -> None:
        self.chunk, self.consumed = byte * size, 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.consumed += len(self.chunk)
            yield self.chunk


def test_an_over_long_line_is_skipped_to_its_newline_with_bounded_memory():
    long_line = Endless(b"\0")  # 12.8 MB without a line end, then two rows

    def chunks() -> Iterator[bytes]:
        for chunk, _ in zip(long_line, range(200), strict=False):
            yield chunk
        yield b"\nok\nfine\n"

    tracemalloc.start()
    try:
        shards = list(cut_shards(chunks(), 4096, max_line_bytes=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4096 + 100_000 + 3 * 64 * 1024  # not "read on until the line ends"
    assert [(s.index, s.first_line, s.skipped, s.data) for s in shards] == [(0, 2, [1], b"ok\nfine\n")]
    assert shards[0].start == 200 * 64 * 1024 + 1  # byte offsets still match the source


def test_the_skipped_line_is_named_wherever_it_falls():
    rows = b"a\n" * 10

    def chunks(tail: bytes) -> Iterator[bytes]:
        yield rows
        yield from (b"x" * 512 for _ in range(10))
        yield tail

    shards = list(cut_shards(chunks(b"\nb\n"), 100, max_line_bytes=1000, first_line=1))
    assert [(s.first_line, s.skipped, s.data) for s in shards] == [(1, [], rows), (12, [11], b"b\n")]
    assert shards[1].start == len(rows) + 5120 + 1
    # at the very end of a file the last shard carries it with no data
    shards = list(cut_shards(chunks(b""), 100, max_line_bytes=1000, first_line=1))
    assert [(s.first_line, s.skipped, s.data) for s in shards] == [(1, [], rows), (11, [11], b"")]


def test_a_long_line_within_the_limit_stays_whole():
    data = b"k\n" + b"y" * 5000 + b"\n" + b"z\n"
    shards = list(cut_shards([data[i : i + 7] for i in range(0, len(data), 7)], 100, max_line_bytes=6000))
    assert b"".join(s.data for s in shards) == data
    assert [s.first_line for s in shards] == [1, 3]


def test_a_csv_header_without_line_end_stops_at_the_line_limit():
    stream = Endless(b"c", 1000)
    with pytest.raises(LineTooLong):
        read_header(iter(stream), max_line_bytes=10_000)
    assert stream.consumed <= 11_000


@pytest.fixture
def capped(aws, models):
    config = BatchConfig(
        bucket=BUCKET,
        jobs_table=JOBS,
        queue_url=aws,
        cache_table=CACHE,
        shard_bytes=20_000,
        max_decompressed_bytes=100_000,
    )
    return Pipeline(config, models)


def test_the_decompression_cap_fails_a_gzip_bomb_and_spares_plain_files(capped):
    bomb = gzip.compress(b"{}\n" * 1_000_000)  # 3 MB of rows in about 3 KB
    put("incoming/bomb.jsonl.gz", bomb)
    assert (
        "inflates to more than 100000 bytes (the decompression cap)" in capped.split("incoming/bomb.jsonl.gz")["failed"]
    )
    run_all(capped, drain(capped))  # shards sent before the cap was hit change nothing
    assert capped.jobs.get("bomb.jsonl.gz").state == "FAILED"
    assert "the decompression cap" in orjson.loads(read("results/bomb.jsonl.gz/_FAILED"))["reasons"][0]

    lines, valid, _ = make_rows(300)  # ~200 KB, above the cap: not compressed, so not capped
    put("incoming/plain.jsonl", b"\n".join(lines) + b"\n")
    capped.split("incoming/plain.jsonl")
    run_all(capped, drain(capped))
    manifest = orjson.loads(read("results/plain.jsonl/_SUCCESS"))
    assert manifest["counts"]["rows_predicted"] == len(valid)


# ---------------------------------------------------------------------------------------------- moto state log


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    [
        ("PUT", "/bucket/key", {}, None, True),
        ("POST", "/bucket", {}, b"<Delete/>", True),  # S3 DeleteObjects
        ("GET", "/bucket/key", {}, None, False),
        ("HEAD", "/bucket/key", {}, None, False),
        ("POST", "/", {"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}, None, True),
        ("POST", "/", {"X-Amz-Target": "DynamoDB_20120810.GetItem"}, None, False),
        ("POST", "/", {"X-Amz-Target": "DynamoDB_20120810.Query"}, None, False),
        ("POST", "/", {"x-amz-target": "AmazonSQS.SendMessageBatch"}, None, True),
        ("POST", "/", {"X-Amz-Target": "AmazonSQS.ReceiveMessage"}, None, False),
        ("POST", "/", {"X-Amz-Target": "AmazonSQS.DeleteMessageBatch"}, None, False),  # receipt handles: not replayable
        ("POST", "/", {"X-Amz-Target": "AmazonSQS.PurgeQueue"}, None, True),
        ("POST", "/", {}, b"Action=ListTopics&Version=2010-03-31", False),  # query protocol
        ("POST", "/", {}, b"Version=2010-03-31&Action=Publish", True),
        ("POST", "/moto-api/reset", {}, None, True),  # the marker a replay starts after
        ("POST", "/moto-api/seed", {}, None, False),
    ],
)
def test_which_requests_the_moto_state_log_keeps(method, path, headers, body, expected):
    assert mutating(method, path, headers, body) is expected


def entry(path: str) -> bytes:
    return json.dumps({"method": "POST", "url": f"http://127.0.0.1:5000{path}", "headers": {}, "body": ""}).encode()


def test_the_state_log_replays_from_the_last_reset_and_cuts_a_torn_entry(tmp_path: Path):
    log = tmp_path / "state.jsonl"
    whole = b"\n".join([entry("/a"), entry("/moto-api/reset"), entry("/b"), entry("/c")]) + b"\n"
    log.write_bytes(whole + entry("/torn")[:25])
    assert [e["url"].rsplit("/", 1)[1] for e in read_log(log)] == ["b", "c"]
    assert log.read_bytes() == whole  # the next entry is appended after a whole line
    assert read_log(tmp_path / "missing.jsonl") == []
