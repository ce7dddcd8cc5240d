"""Plans every keyed file dropped under incoming/ into shard messages (S3 ObjectCreated events)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.events import S3, expects
from liteserve.observability import logger
from liteserve.runtime import default_repository

pipeline = Pipeline(BatchConfig.from_env(), default_repository())


@expects(S3)
@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: Any) -> dict[str, Any]:
    """One planning summary per record."""
    summaries = []
    for record in event.records:
        summary = pipeline.split(unquote_plus(record.s3.get_object.key))  # S3 event keys arrive URL-encoded
        logger.info("planned", extra=summary)
        summaries.append(summary)
    return {"jobs": summaries}
