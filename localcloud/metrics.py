"""The CloudWatch metrics the functions published, read back from their logs: every EMF document a function prints
(Powertools Metrics, liteserve.observability.emit) is aggregated by namespace, metric and dimension values, as
CloudWatch would file them. `localcloud metrics` prints them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Series:
    """One metric under one set of dimension values: count, sum, min, max and the last value received."""

    namespace: str
    name: str
    unit: str
    dimensions: dict[str, str]
    values: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (CloudWatch's SampleCount, Sum, Minimum, Maximum, Average)."""
        v = self.values
        return {
            "namespace": self.namespace,
            "metric": self.name,
            "unit": self.unit,
            "dimensions": self.dimensions,
            "count": len(v),
            "sum": sum(v),
            "min": min(v),
            "max": max(v),
            "average": sum(v) / len(v),
            "last": v[-1],
        }


def documents(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """The EMF documents among log lines (a line that is a JSON object with `_aws.CloudWatchMetrics`)."""
    for line in lines:
        start = line.find('{"')
        if start < 0 or '"_aws"' not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("_aws"), dict) and "CloudWatchMetrics" in doc["_aws"]:
            yield doc


def collect(docs: Iterable[dict[str, Any]]) -> list[Series]:
    """Aggregate EMF documents into series, in first-seen order."""
    series: dict[tuple[Any, ...], Series] = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            names = [d for dims in directive.get("Dimensions") or [[]] for d in dims]
            dims = {d: str(doc.get(d)) for d in names}
            for metric in directive.get("Metrics", []):
                raw = doc.get(metric["Name"])
                values = raw if isinstance(raw, list) else [raw]
                key = (directive.get("Namespace"), metric["Name"], tuple(sorted(dims.items())))
                s = series.setdefault(
                    key, Series(directive.get("Namespace", ""), metric["Name"], metric.get("Unit", ""), dims)
                )
                s.values.extend(float(v) for v in values if isinstance(v, int | float))
    return [s for s in series.values() if s.values]


def from_logs(log_dir: Path, function: str | None = None) -> list[Series]:
    """Series from the function logs under a local cloud's log folder (one function, or all)."""
    files = [log_dir / f"{function}.log"] if function else sorted(log_dir.glob("*.log"))
    lines: list[str] = []
    for path in files:
        if path.exists():
            lines.extend(path.read_text(errors="replace").splitlines())
    return collect(documents(lines))
