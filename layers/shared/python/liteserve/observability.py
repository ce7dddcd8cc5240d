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
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRIC_NAME_LENGTH, MAX_METRICS

from liteserve.errors import LiteserveError


class OrjsonEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider with a leaner warm path, same EMF documents.

    Flushes through orjson (the stdlib encoder was ~15 us of every request), and `add_metric` skips, for the
    common case (a MetricUnit, standard resolution, far from the 100-metric limit), the library's eager
    debug f-string that formats the whole metric on every call. Everything else goes to Powertools' own code.
    """

    def add_metric(
        self, name: str, unit: MetricUnit | str, value: float, resolution: MetricResolution | int = 60
    ) -> None:
        """Same contract as Powertools' `add_metric`."""
        metric = self.metric_set.get(name)
        if (
            isinstance(unit, MetricUnit)
            and resolution == 60
            and type(value) in (int, float)
            and len(self.metric_set) < MAX_METRICS - 1
            and (metric is None or len(metric["Value"]) < MAX_METRICS - 1)
            and 0 < len(name) <= MAX_METRIC_NAME_LENGTH
            and name == name.strip()
        ):
            if metric is None:
                metric = self.metric_set[name] = {"Unit": unit.value, "StorageResolution": 60, "Value": []}
            metric["Unit"] = unit.value
            metric["Value"].append(float(value))
            return
        super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

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


def set_request_id(event: dict[str, Any]) -> None:
    """Correlation id = API Gateway's request id. Read directly: Powertools' `correlation_id_path` runs a JMESPath
    query per request (~15 us of a ~100 us warm request)."""
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))


def record_success(
    model: str | None,
    instances: int,
    seconds: float,
    version: str | None = None,
    confidence: float | None = None,
) -> None:
    """Latency (its SampleCount is the request count) and, for inferences, instances and the mean top-1 confidence
    per model and version (so a canary can be compared with its primary)."""
    if model:
        metrics.add_dimension(name="model", value=model)
        if version is not None:
            metrics.add_dimension(name="version", value=version)
        metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=instances)
        if confidence is not None:
            metrics.add_metric(name="Confidence", unit=MetricUnit.NoUnit, value=confidence)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1000.0)


def top1_confidence(outputs: dict[str, Any]) -> float | None:
    """Mean highest class probability of a classifying answer (None for other outputs, e.g. an embedding)."""
    probabilities = outputs.get("probabilities")
    if probabilities is None or getattr(probabilities, "ndim", 0) != 2 or not len(probabilities):
        return None
    return float(probabilities.max(axis=1).mean())


def emit(values: dict[str, tuple[float, MetricUnit]], **dimensions: str) -> None:
    """One EMF document with these metrics under these dimensions, printed now (batch shards, label files,
    evaluations: one document per unit of work, apart from the request metrics above)."""
    provider = OrjsonEMFProvider(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Liteserve"),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "liteserve"),
    )
    for name, value in dimensions.items():
        provider.add_dimension(name=name, value=value)
    for name, (value, unit) in values.items():
        provider.add_metric(name=name, unit=unit, value=float(value))
    provider.flush_metrics()


def record_error(error: LiteserveError) -> None:
    """Count an error by kind; server-side ones are logged with their reason."""
    metrics.add_metric(name=f"Errors.{error.kind}", unit=MetricUnit.Count, value=1)
    if error.status >= 500:
        logger.error("request failed", extra={"kind": error.kind, "reason": error.message})
    else:
        logger.info("request refused", extra={"status": error.status, "kind": error.kind, "reason": error.message})
