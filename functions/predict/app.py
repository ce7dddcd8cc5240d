"""Online prediction: TF Serving REST and Open Inference Protocol V2 behind an API Gateway HTTP API."""

from __future__ import annotations

import re
from time import perf_counter
from typing import Any

from liteserve.events import HTTP, expects
from liteserve.http import Exchange, serve
from liteserve.observability import (
    logger,
    metrics,
    record_error,
    record_success,
    set_request_id,
    top1_confidence,
    traced,
)
from liteserve.predlog import PredictionLog
from liteserve.runtime import default_repository
from liteserve.service import PredictService

# Once per container, in the init phase: every model of the model layer, one interpreter each.
service = PredictService(default_repository())
prediction_log = PredictionLog.from_env()


@expects(HTTP)
@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload v2.0 event -> Lambda proxy response."""
    started = perf_counter()
    set_request_id(event)
    exchange = serve(event, service.handle)
    if exchange.error is not None:
        record_error(exchange.error)
        if exchange.error.status < 500:
            log_rejection(event, exchange)
        return exchange.response
    served = exchange.result.served
    seconds = perf_counter() - started
    if served is None:
        record_success(None, 0, seconds)
    else:
        record_success(
            served.model.name, served.instances, seconds, served.model.version, top1_confidence(served.outputs)
        )
    if served is not None:
        log_prediction(event, exchange)
    return exchange.response


_INFERENCE = re.compile(
    r"^/(v1)/models/([^/:]+)(?:/versions/[^/:]+)?:(?:predict|classify|regress)$|^/(v2)/models/([^/]+)(?:/versions/[^/]+)?/infer$"
)


def log_rejection(event: dict[str, Any], exchange: Exchange) -> None:
    """A refused inference request, for the evaluation's rejection rate (other routes are not inferences)."""
    try:
        match = _INFERENCE.match(event.get("rawPath") or "")
        if match is None:
            return
        protocol = "v2" if match.group(3) else "tfserving"
        request_id = (event.get("requestContext") or {}).get("requestId")
        prediction_log.rejected(
            match.group(2) or match.group(4), protocol, exchange.error.status, exchange.error.kind, request_id
        )
    except Exception:
        logger.exception("rejection line not written")


def log_prediction(event: dict[str, Any], exchange: Exchange) -> None:
    """One prediction-log line (stdout -> CloudWatch Logs -> Firehose -> S3); never fails the request."""
    try:
        request, served, answer = exchange.request, exchange.result.served, exchange.response
        request_id = (event.get("requestContext") or {}).get("requestId")
        protocol = "v2" if request.path.startswith("/v2") else "tfserving"
        if not served.json_exchange or answer["isBase64Encoded"]:
            # binary tensors, :classify / :regress: the per-instance form, built from what was inferred
            prediction_log.record_instances(served, protocol, request_id)
            return
        raw = event.get("body")
        if isinstance(raw, str) and not event.get("isBase64Encoded"):
            body = raw
        else:  # base64-encoded or compressed JSON
            body = request.payload(service.config.max_body_bytes).decode()
        prediction_log.record(served, protocol, body, answer["body"], request_id)
    except Exception:
        logger.exception("prediction log line not written")
