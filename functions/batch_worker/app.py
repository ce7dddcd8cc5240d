"""Predicts one shard per SQS message; failed messages alone are retried (ReportBatchItemFailures)."""

from __future__ import annotations

from typing import Any

import orjson
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.events import SQS, expects
from liteserve.observability import logger
from liteserve.runtime import default_repository

pipeline = Pipeline(BatchConfig.from_env(), default_repository())
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    """Run the shard a message points to; any exception leaves the message for retry and, later, the DLQ."""
    summary = pipeline.run_shard(orjson.loads(record.body))
    logger.info("shard", extra=summary)
    return summary


@expects(SQS)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS event -> {"batchItemFailures": [...]}."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
