"""Powertools Logger, Metrics (EMF) and Tracer, configured once per container.

Tracer is imported only when tracing is enabled: it pulls in the X-Ray SDK and patches botocore, which costs
~0.35 s and ~40 MB of a cold start (bench/cold_start.py) that a serving function should not pay when tracing is off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from liteserve.errors import LiteserveError


class OrjsonEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider, flushing with orjson: the stdlib encoder was ~20 us of every warm request."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Print the metric set as one EMF line (same document as Powertools), then clear it."""
        if not self.metric_set:
            super().flush_metrics(raise_on_empty_metrics)  # keeps Powertools' warning / error behaviour
            return
        if is_metrics_disabled():
            return
        sys.stdout.write(orjson.dumps(self.serialize_metric_set()).decode() + "\n")
        self.clear_metrics()


logger = Logger(json_serializer=lambda obj: orjson.dumps(obj, default=str).decode())
metrics = Metrics(
    provider=OrjsonEMFProvider(
        service=os.getenv("POWERTOOLS_SERVICE_NAME"), namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE")
    )
)

F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Tracing is on unless POWERTOOLS_TRACE_DISABLED is truthy (the template sets it from a parameter)."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() not in ("1", "true", "yes")


def traced(handler: F) -> F:
    """`Tracer.capture_lambda_handler` when tracing is enabled, the handler itself otherwise."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler)


def record_success(model: str | None, instances: int, seconds: float) -> None:
    """Latency (its SampleCount is the request count) and, for inferences, instances per model."""
    if model:
        metrics.add_dimension(name="model", value=model)
        metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=instances)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1000.0)


def record_error(error: LiteserveError) -> None:
    """Count an error by kind; server-side ones are logged with their reason."""
    metrics.add_metric(name=f"Errors.{error.kind}", unit=MetricUnit.Count, value=1)
    if error.status >= 500:
        logger.error("request failed", extra={"kind": error.kind, "reason": error.message})
    else:
        logger.info("request refused", extra={"status": error.status, "kind": error.kind, "reason": error.message})
