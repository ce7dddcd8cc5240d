"""Batch job status and cached predictions by key, behind the HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from liteserve.batch import api
from liteserve.batch.jobs import Pipeline
from liteserve.events import HTTP, expects
from liteserve.http import Request, Result, Router, serve
from liteserve.observability import logger
from liteserve.registry import Registry

pipeline = Pipeline.from_env()
registry = Registry(pipeline.store)


def live_version(model: str) -> str | None:
    """The version the model's live alias serves since the last promotion (None before any)."""
    live = registry.live(model)
    return str(live["primary"]["model_version"]) if live else None


def read(request: Request) -> Result:
    """The batch pipeline's read side answers both routes."""
    return api.handle(pipeline, request, live_version)


router = Router([("GET", rf"{api.JOBS}.+", read), ("GET", rf"{api.PREDICTIONS}.+", read)])


@expects(HTTP)
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload v2.0 event -> Lambda proxy response."""
    return serve(event, router.dispatch).response
