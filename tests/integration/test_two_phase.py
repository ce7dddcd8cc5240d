"""Two-phase prediction against the local cloud's real HTTP API (template.yaml: the predict function serving every
model of the model layer, behind the local API Gateway, on moto over HTTP). The edge client is the installed
`liteserve_edge` package; "cloud down" is a port where nothing listens (connection refused)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from liteserve_edge import ChecksumMismatch, EdgeModel, TwoPhaseClient, fetch_model

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.97


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The project's own template running locally on free ports (the conftest's cloud runs a fixture template)."""
    with project_cloud(tmp_path_factory, "localcloud-two-phase", log_subscriptions=True) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    from training.data import split

    s = split()
    return s.x_test, s.y_test


@pytest.fixture(scope="module")
def edge_dir(lc: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_model(lc.api_url, "digits-edge", tmp_path_factory.mktemp("device") / "digits-edge", token=lc.token)


def predict_invocations(lc: LocalCloud) -> int:
    return lc.status()["functions"]["PredictFunction"]["invocations"]


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def instances(x: np.ndarray, prefix: str) -> list[dict]:
    return [{"key": f"{prefix}-{i}", "x": row.tolist()} for i, row in enumerate(x)]


def cloud_answers(lc: LocalCloud, insts: list[dict]) -> dict:
    """The cloud model's class per key, straight from the API (the reference for the client's answers)."""
    body = json.dumps({"instances": insts}).encode()
    req = urllib.request.Request(
        lc.api_url + "/v1/models/digits-cloud:predict", body, {"content-type": "application/json", **auth(lc)}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return {p["key"]: p["class_id"] for p in json.loads(r.read())["predictions"]}


def test_edge_model_fetched_from_the_deployment_is_the_committed_one(edge_dir: Path) -> None:
    committed = ROOT / "layers" / "model" / "models" / "digits-edge"
    assert (edge_dir / "model.tflite").read_bytes() == (committed / "model.tflite").read_bytes()
    assert EdgeModel.load(edge_dir).sha256 == json.loads((committed / "manifest.json").read_text())["sha256"]


def test_a_file_that_does_not_match_the_manifest_is_refused(lc: LocalCloud, tmp_path: Path) -> None:
    # The deployment hands out the cloud model's file where the edge manifest is expected.
    with pytest.raises(ChecksumMismatch):
        fetch_model(
            lc.api_url,
            "digits-edge",
            tmp_path / "m",
            artifact_url=lc.api_url + "/v1/models/digits-cloud/artifact",
            token=lc.token,
        )
    assert not (tmp_path / "m" / "model.tflite").exists()


def test_low_confidence_instances_escalate_in_one_keyed_request(lc, edge_dir, held_out, tmp_path) -> None:
    x, _ = held_out
    insts = instances(x, "online")
    edge = EdgeModel.load(edge_dir)
    _, conf = edge.predict(x)
    low = {i["key"] for i, c in zip(insts, conf, strict=True) if c < THRESHOLD}
    assert low
    before = predict_invocations(lc)
    with TwoPhaseClient(edge, lc.api_url, THRESHOLD, queue_path=tmp_path / "q.sqlite3", token=lc.token) as client:
        out = client.predict(insts)
        # one keyed :predict request, then one POST of the agreement records (to the labels function)
        assert client.cloud.stats.requests == client.cloud.stats.attempts == 2
        assert client.agreement_records(unreported=True) == []
    assert predict_invocations(lc) - before == 1
    reference = cloud_answers(lc, [i for i in insts if i["key"] in low])
    assert {p.key for p in out if p.phase == "cloud"} == low
    assert {p.key: p.class_id for p in out if p.phase == "cloud"} == reference
    assert not any(p.provisional or p.error for p in out)


def test_offline_queue_survives_a_restart_and_flush_refines_each_key_once(lc, edge_dir, held_out, tmp_path) -> None:
    x, _ = held_out
    insts = instances(x, "offline")
    queue = tmp_path / "device.sqlite3"

    # Cloud down: edge answers at once, provisional, escalations queued.
    with TwoPhaseClient(edge_dir, dead_endpoint(), THRESHOLD, queue_path=queue, retries=1, backoff=0.01) as down:
        out = down.predict(insts)
        provisional = {p.key for p in out if p.provisional}
        assert provisional and all(p.phase == "edge" for p in out)
        assert down.queue_depth == len(provisional)

    # "Process restart": a new client on the same file, now reaching the cloud.
    before = predict_invocations(lc)
    with TwoPhaseClient(edge_dir, lc.api_url, THRESHOLD, queue_path=queue, max_batch=4, token=lc.token) as up:
        assert up.queue_depth == len(provisional)
        report = up.flush()
        again = up.flush()
        records = up.agreement_records()
    assert report.error is None and report.remaining == 0
    assert sorted(o.key for o in report.refined) == sorted(provisional)  # each key exactly once
    assert again.refined == [] and again.requests == 0
    assert predict_invocations(lc) - before == -(-len(provisional) // 4)  # keyed batches of 4, nothing re-sent
    reference = cloud_answers(lc, [i for i in insts if i["key"] in provisional])
    assert {o.key: o.cloud_class for o in report.refined} == reference
    assert {r["key"] for r in records} == provisional


def test_wrong_cloud_model_is_a_4xx_reported_once(lc, edge_dir, held_out, tmp_path) -> None:
    before = predict_invocations(lc)
    with TwoPhaseClient(
        edge_dir, lc.api_url, THRESHOLD, cloud_model="no-such-model", queue_path=tmp_path / "q.sqlite3", token=lc.token
    ) as client:
        out = client.predict(instances(held_out[0], "bad"))
        assert client.queue_depth == 0
    assert predict_invocations(lc) - before == 1
    errors = [p.error for p in out if p.error]
    assert errors and all("HTTP 404" in e for e in errors)


def test_agreement_records_reach_the_cloud_evaluation_per_edge_version(lc, edge_dir, held_out, tmp_path) -> None:
    """Issue 12: after flush() the answered escalations go to POST /v1/edge/agreements; the scheduled evaluation of
    the cloud model reports agreement per edge model version and, with labels, the edge's accuracy."""
    lc.reset()  # only this test's records and predictions in the evaluation window
    x, y = held_out
    insts = instances(x, "agree")
    with TwoPhaseClient(edge_dir, dead_endpoint(), THRESHOLD, queue_path=tmp_path / "q.sqlite3", retries=0) as down:
        escalated = {p.key for p in down.predict(insts) if p.provisional}
    with TwoPhaseClient(edge_dir, lc.api_url, THRESHOLD, queue_path=tmp_path / "q.sqlite3", token=lc.token) as up:
        report = up.flush()
        assert report.agreement_sent == len(escalated) and up.agreement_records(unreported=True) == []
        records = {r["key"]: r for r in up.agreement_records()}
    labels = [{"key": i["key"], "label": str(int(y[n]))} for n, i in enumerate(insts) if i["key"] in escalated]
    req = urllib.request.Request(
        lc.api_url + "/v1/labels", json.dumps(labels).encode(), {"content-type": "application/json", **auth(lc)}
    )
    urllib.request.urlopen(req, timeout=30).read()
    lc.flush_logs()
    lc.wait_idle(timeout=60)
    [summary] = lc.fire_schedule("EvaluateFunction")
    edge = summary["models"]["digits-cloud"]["edge"]["digits-edge@1"]
    truth = {i["key"]: int(y[n]) for n, i in enumerate(insts)}
    agree = sum(r["agree"] for r in records.values()) / len(records)
    edge_acc = sum(r["edge_class_id"] == truth[k] for k, r in records.items()) / len(records)
    assert edge["escalations"] == edge["labelled"] == len(escalated)
    assert edge["agreement"] == agree and edge["edge_accuracy"] == edge_acc
