"""Settles shard messages that exhausted their retries: the shard is recorded as failed and, if it was the last
one outstanding, the job is finalized as _FAILED naming it."""

from __future__ import annotations

from typing import Any

import orjson
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from liteserve.batch.jobs import Pipeline
from liteserve.events import SQS, expects
from liteserve.observability import logger

pipeline = Pipeline.from_env()
processor = BatchProcessor(event_type=EventType.SQS)
_FIELDS = ("job_id", "etag", "shard")


def record_handler(record: SQSRecord) -> None:
    """Mark the shard failed. A body that is not a shard message cannot belong to any job: it is logged whole,
    with the reason, and consumed."""
    try:
        message = orjson.loads(record.body)
        if not isinstance(message, dict) or not all(f in message for f in _FIELDS):
            raise ValueError(f"not a shard message (needs {_FIELDS})")
    except ValueError as err:
        logger.error(
            "unreadable dead message",
            extra={"reason": str(err), "message_id": record.message_id, "body": record.body[:10_000]},
        )
        return
    logger.warning("shard failed after its retries", extra={k: message[k] for k in _FIELDS})
    pipeline.shard_dead(message)


@expects(SQS)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS (dead-letter queue) event -> {"batchItemFailures": [...]}."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
