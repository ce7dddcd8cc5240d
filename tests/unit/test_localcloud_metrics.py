"""localcloud.metrics: EMF documents read back from function logs and aggregated as CloudWatch files them."""

from __future__ import annotations

import json

from localcloud.metrics import collect, documents, from_logs


def emf(metrics: dict[str, float | list[float]], **dims: str) -> str:
    directive = {
        "Namespace": "Liteserve",
        "Dimensions": [list(dims)],
        "Metrics": [{"Name": n, "Unit": "Milliseconds"} for n in metrics],
    }
    return json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [directive]}, **dims, **metrics})


def test_series_per_metric_and_dimension_values(tmp_path):
    lines = [
        emf({"Latency": 2.0}, model="digits", version="1"),
        "START RequestId: x",
        emf({"Latency": [4.0, 6.0]}, model="digits", version="2"),
        '{"level": "INFO", "message": "not a metric"}',
        "2026-12-02 prefix " + emf({"Latency": 8.0}, model="digits", version="1"),
        '{"_aws": broken',
    ]
    (tmp_path / "PredictFunction.log").write_text("\n".join(lines))
    got = {tuple(s.dimensions.values()): s.as_dict() for s in from_logs(tmp_path)}
    assert got[("digits", "1")]["count"] == 2 and got[("digits", "1")]["average"] == 5.0
    assert got[("digits", "2")]["min"] == 4.0 and got[("digits", "2")]["max"] == 6.0
    assert from_logs(tmp_path, "OtherFunction") == []
    assert collect(documents(["no metrics here"])) == []
