"""Batch job status and cached predictions by key, behind the HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from liteserve.batch import api
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.errors import LiteserveError
from liteserve.http import Request, error_response, response
from liteserve.observability import logger

pipeline = Pipeline(BatchConfig.from_env())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload v2.0 event -> Lambda proxy response."""
    try:
        result = api.handle(pipeline, Request.from_event(event))
    except LiteserveError as error:
        return error_response(error)
    return response(result.status, result.document)
