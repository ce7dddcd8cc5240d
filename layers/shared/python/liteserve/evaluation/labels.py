"""Ground truth by key: label files dropped under `labels/` (JSONL `{"key", "label"}` or CSV with a header) and
`POST /v1/labels` bodies, validated here and stored in the labels table (a relabel replaces the old label)."""

from __future__ import annotations

import calendar
import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
import orjson
from boto3.dynamodb.conditions import Key as KeyCondition

from liteserve.errors import BadRequest
from liteserve.protocols import schemas

LABELS_PREFIX = "labels/"
ERRORS_PREFIX = "labels-errors/"
MAX_POST_ITEMS = schemas.MAX_LABELS
_LABEL_FIELDS = schemas.fields(schemas.LABEL)  # key, label


@dataclass(frozen=True)
class Label:
    """One label: the prediction key (as a string: keys join as strings) and the class label (as a string)."""

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
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"'{what}' must be a string or an integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"'{what}' must not be empty")
    return text


def parse_file(name: str, data: bytes) -> tuple[list[Label], list[dict[str, Any]]]:
    """Labels of a dropped file and its bad rows `{line, error, row}` (line numbers are 1-based, header included).
    `.csv` files need a header with `key` and `label` columns; anything else is read as JSONL."""
    if name.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
        name = name[:-3]
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".csv"):
        return _parse_csv(text)
    good, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            good.append(check_item(orjson.loads(line)))
        except orjson.JSONDecodeError as err:
            bad.append({"line": number, "error": f"not valid JSON: {err}", "row": line[:500]})
        except ValueError as err:
            bad.append({"line": number, "error": str(err), "row": line[:500]})
    return good, bad


def _parse_csv(text: str) -> tuple[list[Label], list[dict[str, Any]]]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    columns = [c.strip() for c in header] if header else []
    if "key" not in columns or "label" not in columns:
        return [], [{"line": 1, "error": f"CSV header needs 'key' and 'label' columns, got {columns}", "row": None}]
    k, lab = columns.index("key"), columns.index("label")
    good, bad = [], []
    for number, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(columns):
            bad.append({"line": number, "error": f"{len(row)} columns, header has {len(columns)}", "row": row})
            continue
        try:
            good.append(Label(_value(row[k], "key"), _value(row[lab], "label")))
        except ValueError as err:
            bad.append({"line": number, "error": str(err), "row": row})
    return good, bad


def parse_post(doc: Any) -> list[Label]:
    """A `POST /v1/labels` body (a list of `{key, label}`) -> labels; BadRequest names every bad item."""
    if isinstance(doc, dict) and set(doc) == {"labels"}:
        doc = doc["labels"]
    if not isinstance(doc, list) or not doc:
        raise BadRequest('body must be a non-empty JSON list of {"key": ..., "label": ...}')
    if len(doc) > MAX_POST_ITEMS:
        raise BadRequest(f"{len(doc)} labels exceed the limit of {MAX_POST_ITEMS} per request")
    good, bad = [], []
    for index, item in enumerate(doc):
        try:
            good.append(check_item(item))
        except ValueError as err:
            bad.append(f"item {index}: {err}")
    if bad:
        shown = "; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise BadRequest(f"{len(bad)} bad label(s), nothing stored: {shown}")
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


def ingest_object(store: LabelStore, objects: Any, bucket: str, key: str) -> dict[str, Any]:
    """Read a dropped label file, store its good rows, write its bad rows (with line numbers) to the error file."""
    good, bad = parse_file(key, objects.read(key))
    unique, replaced = last_wins(good)
    written = store.put_many(unique, source=f"s3://{bucket}/{key}") if unique else 0
    if bad:
        objects.put(error_key(key), b"".join(orjson.dumps({"source": key, **e}) + b"\n" for e in bad))
    return {"file": key, "rows": len(good) + len(bad), "stored": written, "replaced_in_file": replaced, "bad": len(bad)}
