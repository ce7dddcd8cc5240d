"""Continued evaluation end to end on the local cloud: predictions through the HTTP API and a batch file, the
prediction log delivered by the template's subscription filter and Firehose stream (as the local cloud emulates
them), labels by POST and by a labels/ drop, the scheduled evaluation, its report, and the RetrainRequested event on
EventBridge (observed through a rule -> SQS queue, as on AWS)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import numpy as np
import orjson
import pytest

from liteserve_dev.logship import matches
from liteserve_dev.scenario import corrupt
from localcloud import LocalCloud
from tests.integration.conftest import Events, post, project_cloud, wait_for

pytestmark = pytest.mark.integration
MIN_LABELLED = 200
POLICY = {"min_labelled": MIN_LABELLED, "cooldown_hours": 24}
PARAMETERS = {"RetrainPolicy": json.dumps(POLICY), "ShardBytes": "65536", "AutoRetrain": "false"}


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-eval", PARAMETERS, log_subscriptions=True) as cloud:
        yield cloud


@pytest.fixture
def cloud(lc: LocalCloud) -> Iterator[LocalCloud]:
    lc.reset()
    yield lc
    lc.wait_idle(timeout=60)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from training.data import split

    s = split()
    return s.x_test, s.y_test


def predict_online(cloud: LocalCloud, keys: list[str], x: np.ndarray) -> dict[str, int]:
    """TF Serving requests of 100 keyed rows, the last chunk over V2; returns class ids by key."""
    answers: dict[str, int] = {}
    for start in range(0, len(keys), 100):
        k, rows = keys[start : start + 100], x[start : start + 100]
        if start + 100 >= len(keys):
            body = {
                "inputs": [
                    {"name": "key", "datatype": "BYTES", "shape": [len(k)], "data": k},
                    {"name": "x", "datatype": "FP32", "shape": [len(k), 64], "data": rows.reshape(-1).tolist()},
                ]
            }
            status, doc = post(cloud, "/v2/models/digits/infer", body)
            assert status == 200, doc
            out = {t["name"]: t["data"] for t in doc["outputs"]}
            answers.update(zip(out["key"], out["class_id"], strict=True))
        else:
            status, doc = post(
                cloud,
                "/v1/models/digits:predict",
                {"instances": [{"key": a, "x": b} for a, b in zip(k, rows, strict=True)]},
            )
            assert status == 200, doc
            answers.update({p["key"]: p["class_id"] for p in doc["predictions"]})
    return answers


def ship_log(cloud: LocalCloud) -> int:
    """Subscription filter -> Firehose -> S3, as the local cloud emulates it from the template; returns the number
    of prediction-log lines now under predictions/online/ (each also passes liteserve's own filter)."""
    cloud.flush_logs()
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="predictions/online/").get("Contents", [])]
    lines = [line for key in keys for line in gzip.decompress(read(cloud, key)).splitlines()]
    assert all(matches(line) for line in lines)
    return len(lines)


def run_batch(cloud: LocalCloud, job: str, keys: list[str], x: np.ndarray) -> dict[str, int]:
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    rows = b"".join(
        orjson.dumps({"key": k, "x": r}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        for k, r in zip(keys, x, strict=True)
    )
    s3.put_object(Bucket=bucket, Key=f"incoming/{job}.jsonl", Body=rows)

    def done():
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=f"results/{job}.jsonl/_SUCCESS")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    manifest = wait_for(done, timeout=60, interval=0.3)
    parts = [uri.removeprefix(f"s3://{bucket}/") for uri in manifest["output"]["parts"]]
    return {p["key"]: p["class_id"] for key in parts for p in map(orjson.loads, read(cloud, key).splitlines())}


def traffic(
    cloud: LocalCloud, prefix: str, x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, int], list[str], list[str]]:
    """400 online + 100 batch predictions; returns every class id by key, and the online and batch keys."""
    keys = [f"{prefix}-{i:04d}" for i in range(len(x))]
    answers = predict_online(cloud, keys[:400], x[:400])
    assert ship_log(cloud) == 4  # one line per request: three TF Serving, one V2
    answers.update(run_batch(cloud, f"{prefix}-batch", keys[400:], x[400:]))
    return answers, keys[:400], keys[400:]


def read(cloud: LocalCloud, key: str) -> bytes:
    return cloud.client("s3").get_object(Bucket=cloud.name("DataBucket"), Key=key)["Body"].read()


def sample(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).integers(0, len(x), size=n)
    return x[idx], y[idx]


def test_clean_traffic_labels_from_post_and_a_file_no_retraining(cloud, digits):
    events = Events(cloud)
    x, y = sample(*digits, 500, seed=1)
    answers, online, batch = traffic(cloud, "clean", x, y)
    labels = {k: str(int(v)) for k, v in zip(online + batch, y, strict=True)}

    # POST half of the labels; a bad body is refused whole, naming the bad items
    status, doc = post(cloud, "/v1/labels", [{"key": k, "label": labels[k]} for k in online[:250]])
    assert (status, doc["stored"]) == (200, 250)
    status, doc = post(cloud, "/v1/labels", [{"key": "a", "label": "1"}, {"key": "b"}, {"label": 2}])
    assert status == 400 and "item 1" in doc["error"] and "item 2" in doc["error"]

    # the rest as a dropped file, with two bad rows, three unknown keys and a relabel of a posted key
    rows = [orjson.dumps({"key": k, "label": labels[k]}) for k in online[250:] + batch]
    rows.insert(10, b'{"key": "x", "label": ')
    rows.insert(20, orjson.dumps({"key": "y", "label": True}))
    rows += [orjson.dumps({"key": f"unknown-{i}", "label": "3"}) for i in range(3)]
    wrong = online[0]
    rows.append(orjson.dumps({"key": wrong, "label": "9" if labels[wrong] != "9" else "8"}))
    rows.append(orjson.dumps({"key": wrong, "label": labels[wrong]}))  # relabelled back: the last row wins
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    s3.put_object(Bucket=bucket, Key="labels/day-1.jsonl", Body=b"\n".join(rows) + b"\n")
    errors = wait_for(lambda: _maybe(cloud, "labels-errors/day-1.jsonl"), timeout=30)
    bad = [orjson.loads(line) for line in errors.splitlines()]
    assert [b["line"] for b in bad] == [11, 21]
    cloud.wait_idle(timeout=30)

    [summary] = cloud.fire_schedule("EvaluateFunction")
    result = summary["models"]["digits"]
    assert result["retrain"] is False and result["trigger"] is None
    report = json.loads(read(cloud, result["report"].split("/", 3)[3].replace(".html", ".json")))
    version = report["versions"]["1"]
    assert version["predictions"] == 500 and version["labelled"] == 500
    assert version["sources"] == {"online": 400, "batch": 100}
    assert report["counts"]["labels_without_prediction"] == 3
    expected = np.mean([answers[k] == int(labels[k]) for k in online + batch])
    assert version["metrics"]["accuracy"] == pytest.approx(expected)
    assert version["metrics"]["accuracy"] > 0.9
    assert version["drift"]["dataset_drift"] is False
    html = read(cloud, result["report"].split("/", 3)[3]).decode()
    assert "<svg" in html and "Healthy" in html
    assert events.drain() == []


def test_drifted_traffic_requests_one_retraining_even_when_the_schedule_fires_twice(cloud, digits):
    events = Events(cloud)
    x, y = sample(*digits, 500, seed=2)
    x = corrupt(x, 0.6, np.random.default_rng(3))
    _, online, batch = traffic(cloud, "drift", x, y)
    status, _ = post(cloud, "/v1/labels", [{"key": k, "label": int(v)} for k, v in zip(online + batch, y, strict=True)])
    assert status == 200

    first = cloud.fire_schedule("EvaluateFunction")[0]["models"]["digits"]
    second = cloud.fire_schedule("EvaluateFunction")[0]["models"]["digits"]
    assert first["retrain"] is True and first["trigger"] == "claimed"
    # Same window id -> "duplicate"; a second fire that crosses the hour lands in the next window -> "cooldown".
    assert second["retrain"] is True and second["trigger"] in ("duplicate", "cooldown")
    assert any("dataset drift" in r for r in first["reasons"])
    got = wait_for(events.drain, timeout=10)
    time.sleep(0.5)
    got += events.drain()
    assert len(got) == 1
    detail = got[0]["detail"]
    assert detail["model"] == "digits" and detail["metrics"]["labelled"] == 500
    assert detail["report"].endswith("/report.json")
    report = json.loads(read(cloud, detail["report"].split("/", 3)[3]))
    assert report["decision"]["retrain"] is True and report["versions"]["1"]["drift"]["dataset_drift"] is True


def _maybe(cloud: LocalCloud, key: str) -> bytes | None:
    try:
        return read(cloud, key)
    except cloud.client("s3").exceptions.NoSuchKey:
        return None
