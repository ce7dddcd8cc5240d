"""Label-free monitoring on the local cloud (issue 12, part 3): with zero labels, twenty clean hourly windows raise
nothing, and covariate drift injected into the traffic is flagged in the first window after it starts: in
violations.json, in the report, and as one DriftDetected event on EventBridge (the template's default policy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from liteserve_dev.scenario import corrupt
from localcloud import LocalCloud
from tests.integration.conftest import Events, post, project_cloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-label-free", {}, log_subscriptions=True) as lc:
        yield lc


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    from training.data import split

    return split().x_test


def unlabelled_traffic(cloud: LocalCloud, x_all: np.ndarray, name: str, n: int, severity: float, seed: int) -> None:
    """`n` keyed online predictions of held-out digits at a drift severity; no label is ever sent."""
    rng = np.random.default_rng(seed)
    x = x_all[rng.integers(0, len(x_all), size=n)].astype(np.float32)
    if severity:
        x = corrupt(x, severity, rng, ("contrast", "stroke"))
    for start in range(0, n, 50):
        rows = x[start : start + 50]
        instances = [{"key": f"{name}-{start + i:05d}", "x": row} for i, row in enumerate(rows)]
        status, doc = post(cloud, "/v1/models/digits:predict", {"instances": instances})
        assert status == 200, doc
    cloud.flush_logs()
    cloud.wait_idle(timeout=60)


def test_zero_labels_clean_windows_raise_nothing_and_drift_is_flagged_at_once(cloud, held_out):
    alerts, retrains = Events(cloud, "DriftDetected"), Events(cloud)
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    start = datetime.now(UTC) + timedelta(minutes=1)
    outcomes = []
    for window in range(20):
        unlabelled_traffic(cloud, held_out, f"clean-w{window:02d}", 60, 0.0, seed=200 + window)
        [summary] = cloud.fire_schedule("EvaluateFunction", start + timedelta(hours=window))
        result = summary["models"]["digits"]
        outcomes.append((result["retrain"], result["alert"], result["findings"]))
    assert all(o == (False, None, []) for o in outcomes), outcomes
    assert alerts.drain() == [] and retrains.drain() == []
    last = summary["models"]["digits"]["report"].removeprefix(f"s3://{bucket}/").replace("report.html", "")
    clean = json.loads(s3.get_object(Bucket=bucket, Key=last + "violations.json")["Body"].read())
    assert clean["versions"]["1"]["judged"] is True and clean["versions"]["1"]["violations"] == []

    unlabelled_traffic(cloud, held_out, "drift", 300, 0.6, seed=300)  # the drift starts
    [summary] = cloud.fire_schedule("EvaluateFunction", start + timedelta(hours=20))
    result = summary["models"]["digits"]
    assert result["retrain"] is False and result["alert"] == "claimed", result
    assert any(f.startswith("data quality:") for f in result["findings"])
    prefix = result["report"].removeprefix(f"s3://{bucket}/").replace("report.html", "")
    found = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "violations.json")["Body"].read())["versions"]["1"]
    assert found["violations"] and found["predictions"] == 1500
    html = s3.get_object(Bucket=bucket, Key=prefix + "report.html")["Body"].read().decode()
    assert "Label-free alert (DriftDetected): claimed" in html
    [event] = alerts.drain()
    assert event["detail"]["model"] == "digits" and event["detail"]["violations"].endswith("violations.json")
    assert retrains.drain() == []
