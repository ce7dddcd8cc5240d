"""Ground truth in: label files dropped under labels/ (S3 event), POST /v1/labels, and the edge devices'
agreement records (POST /v1/edge/agreements: the cloud's answer is a free label for the edge model)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from liteserve.adapters import ObjectStore
from liteserve.evaluation import edge
from liteserve.evaluation.labels import LabelsConfig, LabelStore, ingest_object, last_wins, parse_post
from liteserve.events import HTTP, S3, expects, kind
from liteserve.http import Request, Result, Router, serve
from liteserve.observability import emit, logger

config = LabelsConfig.from_env()
labels = LabelStore(config.labels_table)
objects = ObjectStore(config.bucket)
MAX_BODY = config.max_body_bytes
MAX_FILE_BYTES = config.max_file_bytes  # as for batch files


def post_labels(request: Request) -> Result:
    """`POST /v1/labels`: all or nothing, the last label of a key in the request wins."""
    doc, _ = request.json(MAX_BODY)
    items = parse_post(doc)
    unique, replaced = last_wins(items)
    stored = labels.put_many(unique, source="api")
    logger.info("labels posted", extra={"received": len(items), "stored": stored})
    emit({"LabelsStored": (stored, MetricUnit.Count)}, source="api")
    return Result(200, {"received": len(items), "stored": stored, "replaced_in_request": replaced})


def post_edge_agreements(request: Request) -> Result:
    """`POST /v1/edge/agreements`: the edge client's answered escalations (edge next to cloud), all or nothing."""
    doc, _ = request.json(MAX_BODY)
    records = edge.parse_post(doc)
    objects.put(*edge.edge_object(records), "application/gzip")
    emit({"EdgeAgreementRecords": (len(records), MetricUnit.Count)}, source="edge")
    return Result(200, {"received": len(records)})


router = Router([("POST", r"/v1/labels", post_labels), ("POST", r"/v1/edge/agreements", post_edge_agreements)])


@expects(S3, HTTP)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """S3 notification -> per-file summaries; HTTP API payload v2.0 event -> Lambda proxy response."""
    if kind(event) == HTTP:
        return serve(event, router.dispatch).response
    summaries = [
        ingest_object(
            labels, objects, r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"]), MAX_FILE_BYTES
        )
        for r in event["Records"]
    ]
    for summary in summaries:
        logger.info("label file", extra=summary)
        emit(
            {
                "LabelsStored": (summary["stored"], MetricUnit.Count),
                "LabelsBadRows": (summary["bad"], MetricUnit.Count),
                "LabelFilesRefused": ("refused" in summary, MetricUnit.Count),
            },
            source="file",
        )
    return {"files": summaries}
