"""Plans every keyed file dropped under incoming/ into shard messages (S3 ObjectCreated events)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from liteserve.batch.jobs import Pipeline
from liteserve.events import S3, expects
from liteserve.observability import logger
from liteserve.promotion.live import LiveModels
from liteserve.registry import Registry
from liteserve.runtime import default_repository

pipeline = Pipeline.from_env()
# The live version (the registry's routing record after a promotion), else the model layer's.
pipeline.models = LiveModels(default_repository(), Registry(pipeline.store))


@expects(S3)
@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: Any) -> dict[str, Any]:
    """One planning summary per record."""
    summaries = []
    for record in event.records:
        obj = record.s3.get_object
        summary = pipeline.split(unquote_plus(obj.key), obj.get("sequencer") or "")  # keys arrive URL-encoded
        logger.info("planned", extra=summary)
        summaries.append(summary)
    return {"jobs": summaries}
