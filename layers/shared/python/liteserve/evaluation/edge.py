"""Edge-vs-cloud agreement (two-phase prediction): keyed records the edge client sends with its escalations and
after `flush()` — the edge model's class and confidence next to the cloud model's for the same key. Stored under
`predictions/edge/YYYY/MM/DD/HH/`, read by the scheduled evaluation, which reports agreement per edge model version
and, where labels exist, the edge and cloud accuracy on the escalated instances."""

from __future__ import annotations

import gzip
import math
import time
import uuid
from typing import Any

import orjson

from liteserve.evaluation.labels import parse_items
from liteserve.protocols import schemas
from liteserve.records import hour_path

EDGE_PREFIX = "predictions/edge/"
MAX_RECORDS = 1000  # per POST /v1/edge/agreements
_FIELDS = schemas.required(schemas.EDGE_RECORD)  # key, both models, classes, confidences, recorded_at


def check_record(item: Any) -> dict[str, Any]:
    """One agreement record (the edge client's `Outcome.to_dict()` of an answered escalation) -> its stored form;
    ValueError names what is wrong. Extra fields of the client's form (status, via, agree, error) are dropped."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    missing = sorted(_FIELDS - item.keys())
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    key = item["key"]
    if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
        raise ValueError("'key' must be a non-empty string or an integer")
    for name in ("edge_model", "cloud_model"):
        if not isinstance(item[name], str) or not item[name]:
            raise ValueError(f"'{name}' must be a non-empty string")
    for name in ("edge_class_id", "cloud_class_id"):
        if isinstance(item[name], bool) or not isinstance(item[name], int) or item[name] < 0:
            raise ValueError(f"'{name}' must be a class id (an integer >= 0)")
    for name in ("edge_confidence", "cloud_confidence"):
        value = item[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"'{name}' must be a number in [0, 1]")
    if isinstance(item["recorded_at"], bool) or not isinstance(item["recorded_at"], int | float):
        raise ValueError("'recorded_at' must be epoch seconds")
    if not math.isfinite(float(item["recorded_at"])):
        raise ValueError("'recorded_at' must be finite")
    return {name: item[name] for name in sorted(_FIELDS)}


def parse_post(doc: Any) -> list[dict[str, Any]]:
    """A `POST /v1/edge/agreements` body (`{"records": [...]}` or a list) -> records; BadRequest names every bad one,
    and nothing is stored."""
    shape = 'of agreement records (or {"records": [...]})'
    return parse_items(doc, "records", MAX_RECORDS, check_record, shape, "record", "record")


def edge_object(records: list[dict[str, Any]], now: float | None = None) -> tuple[str, bytes]:
    """(S3 key, gzip JSONL body) of one accepted POST; every record gets the cloud's receipt time (`time`)."""
    now = time.time() if now is None else now
    body = b"".join(orjson.dumps({**r, "time": round(now, 3)}) + b"\n" for r in records)
    return f"{EDGE_PREFIX}{hour_path(now)}/{uuid.uuid4().hex}.jsonl.gz", gzip.compress(body, compresslevel=1)


def agreement_report(records: list[dict[str, Any]], labels: dict[str, str], class_names: list[str]) -> dict[str, Any]:
    """Per edge model version (`name@version`): escalations answered, edge-cloud agreement and, for labelled keys,
    the edge's and the cloud's accuracy. A key reported twice (a retried POST) counts once, the latest."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        k = (r["edge_model"], orjson.dumps(r["key"]).decode())
        if k not in latest or r["time"] >= latest[k]["time"]:
            latest[k] = r
    index = {name: i for i, name in enumerate(class_names)}
    out: dict[str, Any] = {}
    for (edge_model, _), r in sorted(latest.items()):
        g = out.setdefault(
            edge_model, {"escalations": 0, "agree": 0, "labelled": 0, "edge_correct": 0, "cloud_correct": 0}
        )
        g["escalations"] += 1
        g["agree"] += r["edge_class_id"] == r["cloud_class_id"]
        label = labels.get(str(r["key"]))
        truth = index.get(label) if label is not None else None
        if truth is not None:
            g["labelled"] += 1
            g["edge_correct"] += r["edge_class_id"] == truth
            g["cloud_correct"] += r["cloud_class_id"] == truth
    for g in out.values():
        g["agreement"] = g["agree"] / g["escalations"]
        g["edge_accuracy"] = g["edge_correct"] / g["labelled"] if g["labelled"] else None
        g["cloud_accuracy"] = g["cloud_correct"] / g["labelled"] if g["labelled"] else None
        for name in ("agree", "edge_correct", "cloud_correct"):
            del g[name]
    return out
