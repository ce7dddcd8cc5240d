"""Online prediction: TF Serving REST and Open Inference Protocol V2 behind an API Gateway HTTP API."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from liteserve.errors import LiteserveError
from liteserve.http import Request, error_response, response
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


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload v2.0 event -> Lambda proxy response."""
    started = perf_counter()
    set_request_id(event)
    try:
        request = Request.from_event(event)
        result = service.handle(request)
    except LiteserveError as error:
        record_error(error)
        return error_response(error)
    except Exception:  # a bug, never the client's fault: keep the protocol's error shape, log the trace
        logger.exception("unhandled error")
        error = LiteserveError("internal error")
        record_error(error)
        return error_response(error)
    served = result.served
    seconds = perf_counter() - started
    if served is None:
        record_success(None, 0, seconds)
    else:
        confidence = top1_confidence(served.outputs)
        record_success(served.model.name, served.instances, seconds, served.model.version, confidence)
    answer = response(result.status, result.document)
    if served is not None:
        log_prediction(event, request, served, answer["body"])
    return answer


def log_prediction(event: dict[str, Any], request: Request, served: Any, response_body: str) -> None:
    """One prediction-log line (stdout -> CloudWatch Logs -> Firehose -> S3); never fails the request."""
    try:
        raw = event.get("body")
        body = raw if isinstance(raw, str) and not event.get("isBase64Encoded") else request.body.decode()
        protocol = "v2" if request.path.startswith("/v2") else "tfserving"
        request_id = (event.get("requestContext") or {}).get("requestId")
        prediction_log.record(served, protocol, body, response_body, request_id)
    except Exception:
        logger.exception("prediction log line not written")
