"""Ground truth by key: label files dropped under `labels/` (JSONL `{"key", "label"}` or CSV with a header) and
`POST /v1/labels` bodies, validated here and stored in the labels table (a relabel replaces the old label)."""

from __future__ import annotations

import calendar
import csv
import gzip
import math
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import boto3
import orjson
from boto3.dynamodb.conditions import Key as KeyCondition

from liteserve import settings
from liteserve.adapters import MAX_DYNAMODB_KEY_BYTES, key_bytes
from liteserve.errors import BadRequest
from liteserve.lines import iter_lines, line_too_long
from liteserve.protocols import schemas

LABELS_PREFIX = "labels/"
ERRORS_PREFIX = "labels-errors/"
MAX_POST_ITEMS = schemas.MAX_LABELS
_LABEL_FIELDS = schemas.fields(schemas.LABEL)  # key, label
T = TypeVar("T")
MAX_LABEL_BYTES = 1024  # a class name or a number; keeps every item far below DynamoDB's 400 KB
WRITE_BATCH = 5000  # labels stored per batch while a file streams in
MAX_ERROR_RECORDS = 10_000  # bad lines listed one by one in a file's error record; the rest are counted


@dataclass(frozen=True)
class LabelsConfig:
    """The labels function's names and limits, from the environment (see template.yaml)."""

    labels_table: str
    bucket: str
    max_body_bytes: int = 6 * 1024 * 1024
    max_file_bytes: int = 2 * 1024**3  # a label file inflates to at most this, as a batch file does

    @classmethod
    def from_env(cls) -> LabelsConfig:
        """LITESERVE_LABELS_TABLE, LITESERVE_BUCKET, LITESERVE_MAX_BODY_BYTES, LITESERVE_MAX_DECOMPRESSED_BYTES."""
        env = os.environ
        return cls(
            labels_table=env[settings.LABELS_TABLE],
            bucket=env[settings.BUCKET],
            max_body_bytes=int(env.get(settings.MAX_BODY_BYTES, cls.max_body_bytes)),
            max_file_bytes=int(env.get(settings.MAX_DECOMPRESSED_BYTES, cls.max_file_bytes)),
        )


@dataclass(frozen=True)
class Label:
    """One label: the prediction key (as a string: keys join as strings) and the label as a string (a class name,
    or a number's text for a regression model)."""

    key: str
    label: str


def check_item(item: Any) -> Label:
    """A `{key, label}` object -> Label; ValueError names what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an object with 'key' and 'label', got {type(item).__name__}")
    extra = sorted(item.keys() - _LABEL_FIELDS)
    if extra:
        raise ValueError(f"unknown field(s) {extra}; expected 'key' and 'label'")
    return Label(_value(item.get("key"), "key"), _value(item.get("label"), "label"))


def _value(value: Any, what: str) -> str:
    if value is None:
        raise ValueError(f"missing '{what}'")
    # A label may also be a finite number (a regression target); a key may not: keys join as strings.
    number = what == "label" and isinstance(value, float)
    if number and not math.isfinite(value):
        raise ValueError(f"'{what}' must be a finite number, got {value}")
    if isinstance(value, bool) or not (number or isinstance(value, str | int)):
        kinds = "a string or a number" if what == "label" else "a string or an integer"
        raise ValueError(f"'{what}' must be {kinds}, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"'{what}' must not be empty")
    limit = MAX_DYNAMODB_KEY_BYTES if what == "key" else MAX_LABEL_BYTES
    if len(text) * 4 > limit and key_bytes(text) > limit:
        raise ValueError(f"'{what}' is {key_bytes(text)} bytes (UTF-8); at most {limit} are stored")
    return text


def parse_file(name: str, data: bytes) -> tuple[list[Label], list[dict[str, Any]]]:
    """Labels of a whole file in memory and its bad rows `{line, error, row}` (see `parse_lines`)."""
    if name.endswith(".gz"):
        data, name = gzip.decompress(data), name[:-3]
    good: list[Label] = []
    bad: list[dict[str, Any]] = []
    for item in parse_lines(name, iter_lines([data])):
        (good if isinstance(item, Label) else bad).append(item)  # type: ignore[arg-type]
    return good, bad


def parse_lines(name: str, lines: Iterable[tuple[int, bytes | None]]) -> Iterator[Label | dict[str, Any]]:
    """Labels, and bad rows `{line, error, row}`, in file order (line numbers are 1-based, header included).
    `.csv` files need a header with `key` and `label` columns; anything else is read as JSONL. A line that is
    None (longer than the line limit) is a bad row."""
    csv_file = name.endswith(".csv")
    columns: list[str] | None = None
    for number, raw in lines:
        if raw is None:
            yield {"line": number, "error": line_too_long(number), "row": None}
            continue
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if not text.strip():
            continue
        if not csv_file:
            try:
                yield check_item(orjson.loads(raw))
            except orjson.JSONDecodeError as err:
                yield {"line": number, "error": f"not valid JSON: {err}", "row": text[:500]}
            except ValueError as err:
                yield {"line": number, "error": str(err), "row": text[:500]}
            continue
        try:
            row = next(csv.reader([text]))
        except csv.Error as err:
            yield {"line": number, "error": f"not valid CSV: {err}", "row": text[:500]}
            continue
        if columns is None:
            columns = [c.strip() for c in row]
            if "key" not in columns or "label" not in columns:
                yield {
                    "line": number,
                    "error": f"CSV header needs 'key' and 'label' columns, got {columns}",
                    "row": None,
                }
                return
            continue
        if len(row) != len(columns):
            yield {"line": number, "error": f"{len(row)} columns, header has {len(columns)}", "row": row}
            continue
        try:
            yield Label(_value(row[columns.index("key")], "key"), _value(row[columns.index("label")], "label"))
        except ValueError as err:
            yield {"line": number, "error": str(err), "row": row}


def parse_post(doc: Any) -> list[Label]:
    """A `POST /v1/labels` body (a list of `{key, label}`) -> labels; BadRequest names every bad item."""
    return parse_items(doc, "labels", MAX_POST_ITEMS, check_item, 'of {"key": ..., "label": ...}', "label", "item")


def parse_items(
    doc: Any, wrapper: str, limit: int, check: Callable[[Any], T], shape: str, noun: str, item: str
) -> list[T]:
    """An all-or-nothing POST body: a non-empty list (or `{wrapper: [...]}`) of at most `limit` items, each passed
    through `check`; BadRequest names every bad one (`<item> <index>: reason`, the first 20) and nothing is kept."""
    if isinstance(doc, dict) and set(doc) == {wrapper}:
        doc = doc[wrapper]
    if not isinstance(doc, list) or not doc:
        raise BadRequest(f"body must be a non-empty JSON list {shape}")
    if len(doc) > limit:
        raise BadRequest(f"{len(doc)} {noun}s exceed the limit of {limit} per request")
    good, bad = [], []
    for index, value in enumerate(doc):
        try:
            good.append(check(value))
        except ValueError as err:
            bad.append(f"{item} {index}: {err}")
    if bad:
        shown = "; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise BadRequest(f"{len(bad)} bad {noun}(s), nothing stored: {shown}")
    return good


def last_wins(labels: list[Label]) -> tuple[list[Label], int]:
    """Keep the last label of each key (a later row relabels); returns them and how many rows were replaced."""
    latest = {label.key: label for label in labels}
    return list(latest.values()), len(labels) - len(latest)


class LabelStore:
    """The labels table: `key` -> label, time, day, source; GSI `by_day` (day, time) for labels by arrival."""

    def __init__(self, table: str) -> None:
        self.table_name = table

    @cached_property
    def _table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.table_name)

    def put_many(self, labels: list[Label], source: str, now: float | None = None) -> int:
        """Store labels (replacing any earlier label of the same key); returns how many were written."""
        labels, _ = last_wins(labels)
        now = time.time() if now is None else now
        stamp = {"time": int(now * 1000), "day": time.strftime("%Y-%m-%d", time.gmtime(now)), "source": source}
        with self._table.batch_writer() as writer:
            for label in labels:
                writer.put_item(Item={"key": label.key, "label": label.label, **stamp})
        return len(labels)

    def received(self, start: float, end: float) -> Iterator[dict[str, Any]]:
        """Every label received in [start, end] (epoch seconds), through the `by_day` index."""
        t = float(calendar.timegm((*time.gmtime(start)[:3], 0, 0, 0)))  # midnight UTC of the first day
        while t <= end:
            name = time.strftime("%Y-%m-%d", time.gmtime(t))
            condition = KeyCondition("day").eq(name) & KeyCondition("time").between(int(start * 1000), int(end * 1000))
            kwargs: dict[str, Any] = {"IndexName": "by_day", "KeyConditionExpression": condition}
            while True:
                page = self._table.query(**kwargs)
                yield from page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            t += 86400


def error_key(source_key: str) -> str:
    """`labels/a/b.jsonl` -> `labels-errors/a/b.jsonl`; `labels/a/b.csv` -> `labels-errors/a/b.csv.jsonl`."""
    name = source_key.removeprefix(LABELS_PREFIX)
    return f"{ERRORS_PREFIX}{name if name.endswith('.jsonl') else name + '.jsonl'}"


def ingest_object(
    store: LabelStore, objects: Any, bucket: str, key: str, max_bytes: int | None = None
) -> dict[str, Any]:
    """Stream a dropped label file into the labels table in batches (a later row relabels an earlier one) and
    write its bad rows, with line numbers, to the error file. A file that cannot be read to its end (not gzip,
    inflating past `max_bytes`) is refused there with the reason; the labels read before that are kept."""
    gz = key.endswith(".gz")
    summary: dict[str, Any] = {"file": key, "rows": 0, "stored": 0, "replaced_in_file": 0, "bad": 0}
    errors: list[dict[str, Any]] = []
    batch: list[Label] = []
    seen: set[int] = set()  # hashes, not keys: a key may be 2 KB
    last_line = 0

    def flush() -> None:
        if batch:
            summary["stored"] += store.put_many(batch, source=f"s3://{bucket}/{key}")
            batch.clear()

    try:
        lines = iter_lines(objects.stream(key, gunzip=gz, max_bytes=max_bytes))
        for item in parse_lines(key[:-3] if gz else key, lines):
            summary["rows"] += 1
            if isinstance(item, Label):
                digest = hash(item.key)
                summary["replaced_in_file"] += digest in seen
                seen.add(digest)
                batch.append(item)
                if len(batch) >= WRITE_BATCH:
                    flush()
                continue
            summary["bad"] += 1
            last_line = item["line"]
            if len(errors) < MAX_ERROR_RECORDS:
                errors.append(item)
    except (ValueError, EOFError, OSError, zlib.error) as err:  # not gzip, truncated, or past the decompression cap
        summary["refused"] = f"file refused after {summary['rows']} rows: {err}"
    flush()
    if summary["bad"] > len(errors):
        errors.append({"line": last_line, "error": f"{summary['bad'] - len(errors)} more bad rows are not listed"})
    if "refused" in summary:
        errors.append({"line": None, "error": summary["refused"], "row": None})
    if errors:
        objects.put(error_key(key), b"".join(orjson.dumps({"source": key, **e}) + b"\n" for e in errors))
    return summary
