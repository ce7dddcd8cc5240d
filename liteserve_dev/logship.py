"""What CloudWatch Logs -> Firehose writes to S3 for the predict function's prediction-log lines.

On AWS: the subscription filter `{ $.liteserve = "prediction" }` on the predict log group sends matching log
events to Firehose; Firehose decompresses them (Decompression processor), keeps only each event's message
(CloudWatchLogProcessing, DataMessageExtraction), appends a newline (AppendDelimiterToRecord), gzips the buffer
and writes one object under `predictions/online/YYYY/MM/DD/HH/`. The local cloud emulates that delivery from the
template (`localcloud.logship`); tests that seed prediction logs without running the function call `ship` on log lines
and put the object at `object_key(...)`, named by the local cloud's one implementation of Firehose's object naming.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterable

import orjson
from liteserve.records import ONLINE_PREFIX

from localcloud import logship as firehose

FILTER_PATTERN = (
    '{ ($.liteserve = "prediction") || ($.liteserve = "prediction.instance") || ($.liteserve = "prediction.rejected") }'
)
KINDS = ("prediction", "prediction.instance")


def matches(line: str | bytes) -> bool:
    """Whether a log line passes the subscription filter: a JSON object whose `liteserve` is a prediction kind."""
    text = line.strip()
    if not text.startswith(b"{" if isinstance(text, bytes) else "{"):
        return False
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("liteserve") in KINDS


def ship(lines: Iterable[str | bytes]) -> bytes:
    """The gzip object Firehose writes for these log lines (only the matching ones, one per line); b"" if none."""
    kept = [line.strip() if isinstance(line, bytes) else line.strip().encode() for line in lines if matches(line)]
    if not kept:
        return b""
    return gzip.compress(b"".join(line + b"\n" for line in kept), mtime=0)


def object_key(stream: str, now: float | None = None, prefix: str = ONLINE_PREFIX) -> str:
    """A key as Firehose names objects: `<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz`."""
    return firehose.object_key(stream, prefix, time.time() if now is None else now, compressed=True)
