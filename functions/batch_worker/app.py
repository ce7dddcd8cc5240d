"""Predicts one shard per SQS message; failed messages alone are retried (ReportBatchItemFailures)."""

from __future__ import annotations

from typing import Any

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from liteserve.batch.jobs import Pipeline
from liteserve.events import SQS, expects
from liteserve.observability import emit, logger
from liteserve.promotion.live import LiveModels
from liteserve.registry import Registry
from liteserve.runtime import default_repository

pipeline = Pipeline.from_env()
# The live version (the registry's routing record after a promotion), else the model layer's.
pipeline.models = LiveModels(default_repository(), Registry(pipeline.store))
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    """Run the shard a message points to; any exception leaves the message for retry and, later, the DLQ."""
    summary = pipeline.run_shard(orjson.loads(record.body))
    logger.info("shard", extra=summary)
    if "seconds" in summary:  # a shard this delivery counted (not a stale or duplicate one)
        retries = int(record.attributes.approximate_receive_count) - 1
        emit(
            {
                "BatchRows": (summary["rows_in"], MetricUnit.Count),
                "BatchRowsPredicted": (summary["rows_predicted"], MetricUnit.Count),
                "BatchBadLines": (summary["rows_rejected"], MetricUnit.Count),
                "BatchShardRetries": (retries, MetricUnit.Count),
                "BatchRowsPerSecond": (summary["rows_in"] / max(summary["seconds"], 1e-6), MetricUnit.CountPerSecond),
            },
            model=summary["model"],
            version=summary["version"],
        )
    return summary


@expects(SQS)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS event -> {"batchItemFailures": [...]}."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
