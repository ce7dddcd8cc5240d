"""Batch job status and cached predictions by key, behind the HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from liteserve.batch import api
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.errors import LiteserveError
from liteserve.http import Request, error_response, response
from liteserve.observability import logger
from liteserve.promotion.registry import Registry

pipeline = Pipeline(BatchConfig.from_env())
registry = Registry(pipeline.store)


def live_version(model: str) -> str | None:
    """The version the model's live alias serves since the last promotion (None before any)."""
    live = registry.live(model)
    return str(live["primary"]["model_version"]) if live else None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload v2.0 event -> Lambda proxy response."""
    try:
        result = api.handle(pipeline, Request.from_event(event), live_version)
    except LiteserveError as error:
        return error_response(error)
    return response(result.status, result.document)
