"""Which AWS event a handler was given, so that a function invoked with the wrong kind of event says which one it
expects instead of failing on a missing key deep inside (e.g. `sam local invoke -e` with another function's sample).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

HTTP = "an API Gateway HTTP API request (payload format 2.0)"
S3 = "an S3 ObjectCreated notification (Records[].s3)"
SQS = "an SQS message batch (Records[].eventSource aws:sqs)"
SCHEDULE = 'an EventBridge schedule event (detail-type "Scheduled Event"), or {} / {"time": ISO 8601} to run by hand'


class UnexpectedEvent(TypeError):
    """The function was invoked with an event of another type than its event sources send."""


def kind(event: Any) -> str:
    """What `event` is, in words (for the error message)."""
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}, not an object"
    if event.get("version") == "2.0" and "requestContext" in event:
        return HTTP
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        source = records[0].get("eventSource") or records[0].get("EventSource")
        if source == "aws:s3" or "s3" in records[0]:
            return S3
        if source == "aws:sqs":
            return SQS
        return f"a batch of {source or 'unknown'} records"
    if "detail-type" in event:
        if event["detail-type"] == "Scheduled Event":
            return SCHEDULE
        return f'an EventBridge "{event["detail-type"]}" event from {event.get("source")}'
    if "httpMethod" in event:
        return "an API Gateway REST API (payload format 1.0) request"
    return f"an object with fields {sorted(event)[:8]}"


def is_manual_run(event: Any) -> bool:
    """`{}` or `{"time": "..."}`: a person running a scheduled function by hand."""
    return isinstance(event, dict) and set(event) <= {"time"}


def expects(*accepted: str) -> Callable[[F], F]:
    """Decorate a Lambda handler: an event of another kind raises UnexpectedEvent naming the accepted kinds."""

    http_ok = HTTP in accepted

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def checked(event: Any, context: Any) -> Any:
            # HTTP requests first and without a call: the predict function pays this on every request
            if http_ok and event.__class__ is dict and event.get("version") == "2.0" and "requestContext" in event:
                return handler(event, context)
            got = kind(event)
            if got not in accepted and not (SCHEDULE in accepted and is_manual_run(event)):
                raise UnexpectedEvent(f"this function expects {' or '.join(accepted)}; it was given {got}")
            return handler(event, context)

        return checked  # type: ignore[return-value]

    return decorate
