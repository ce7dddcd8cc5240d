"""The edge client (liteserve_edge) against an in-process HTTP server on 127.0.0.1 that answers with the real
PredictService on the committed models, and can fail on demand (stopped, 5xx, hanging, tampered artifact)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from liteserve.errors import LiteserveError
from liteserve.evaluation.edge import parse_post as parse_agreements
from liteserve.http import Request, error_response, response
from liteserve.service import PredictService, ServingConfig
from liteserve_edge import (
    ChecksumMismatch,
    EdgeModel,
    TwoPhaseClient,
    choose_threshold,
    fetch_model,
    trade_off_table,
)
from liteserve_edge.cli import main as cli_main
from liteserve_edge.store import Outcome, Store

from tests.support import MODEL_ROOT

EDGE_DIR = MODEL_ROOT / "digits-edge"
THRESHOLD = 0.97  # escalates a few percent of the held-out digits


class FakeCloud:
    """A real HTTP server around PredictService. `fail` makes the next requests fail: a list of statuses (or
    "hang") consumed one per request. `stop()`/`start()` take it off the port and back on the same port."""

    def __init__(self, service: PredictService) -> None:
        self.service = service
        self.requests: list[tuple[str, str, dict | None]] = []
        self.agreements: list[dict] = []
        self.fail: list[int | str] = []
        self.tamper = False
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with cloud._lock:
                    cloud.requests.append((self.command, self.path, json.loads(body) if body else None))
                    failure = cloud.fail.pop(0) if cloud.fail else None
                if failure == "hang":
                    time.sleep(1.0)
                    return
                if failure is not None:
                    out = response(int(failure), {"error": f"injected {failure}"})
                elif self.path == "/v1/edge/agreements":  # as the labels function: validate, keep, count
                    records = parse_agreements(json.loads(body))
                    cloud.agreements.extend(records)
                    out = response(200, {"received": len(records)})
                else:
                    request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    try:
                        result = cloud.service.handle(request)
                        out = response(result.status, result.document)
                    except LiteserveError as err:
                        out = error_response(err)
                payload = out["body"].encode()
                if out["isBase64Encoded"]:
                    import base64

                    payload = base64.b64decode(payload)
                    if cloud.tamper:
                        payload = payload[:-1] + bytes([payload[-1] ^ 1])
                self.send_response(out["statusCode"])
                for name, value in out["headers"].items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def predict_requests(self) -> list[list]:
        """The keys of every :predict request received, in order."""
        return [
            [i["key"] for i in body["instances"]] for method, path, body in self.requests if path.endswith(":predict")
        ]


@pytest.fixture(scope="module")
def server_service(models) -> PredictService:
    return PredictService(models, ServingConfig())


@pytest.fixture
def cloud(server_service):
    fake = FakeCloud(server_service)
    yield fake
    if fake._server is not None:
        fake.stop()


@pytest.fixture(scope="module")
def edge() -> EdgeModel:
    return EdgeModel.load(EDGE_DIR)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(tmp_path, edge, cloud, sleeps):
    made = []

    def make(**kw) -> TwoPhaseClient:
        kw.setdefault("queue_path", tmp_path / "edge.sqlite3")
        kw.setdefault("sleep", sleeps.append)  # backoff is recorded, not slept
        kw.setdefault("timeout", 2.0)
        client = TwoPhaseClient(
            kw.pop("edge_model", edge), kw.pop("endpoint", cloud.url), kw.pop("threshold", THRESHOLD), **kw
        )
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def instances(x: np.ndarray, prefix: str = "img") -> list[dict]:
    return [{"key": f"{prefix}-{i}", "x": row.tolist()} for i, row in enumerate(x)]


def low_keys(edge: EdgeModel, insts: list[dict], threshold: float = THRESHOLD) -> set:
    _, conf = edge.predict(np.asarray([i["x"] for i in insts], dtype=np.float32))
    return {inst["key"] for inst, c in zip(insts, conf, strict=True) if c < threshold}


# ---------------------------------------------------------------- online escalation


def test_low_confidence_keys_escalate_in_one_keyed_batch_request(make_client, cloud, edge, models, digits):
    x, _ = digits
    insts = instances(x)
    expected_low = low_keys(edge, insts)
    assert 2 <= len(expected_low) < len(insts) // 5  # the data makes this test meaningful
    client = make_client()
    out = client.predict(insts)

    batches = cloud.predict_requests()
    assert len(batches) == 1 and sorted(batches[0]) == sorted(expected_low)
    assert all(p.endswith("digits-cloud:predict") for _, p, _ in cloud.requests if p != "/v1/edge/agreements")
    # the answered escalations went to the cloud's evaluation, once each, and are marked reported
    assert sorted(r["key"] for r in cloud.agreements) == sorted(expected_low)
    assert client.agreement_records(unreported=True) == []
    assert [p.key for p in out] == [i["key"] for i in insts]
    cloud_ref = models.get("digits-cloud").predict("serving_default", {"x": x})
    edge_cls, edge_conf = edge.predict(x)
    for i, p in enumerate(out):
        assert not p.provisional and not p.capped and p.error is None
        assert p.edge_class_id == edge_cls[i]
        if p.key in expected_low:
            assert p.phase == "cloud"
            assert p.class_id == int(cloud_ref["class_id"][i])
            assert p.confidence == pytest.approx(float(cloud_ref["probabilities"][i].max()), rel=1e-5)
        else:
            assert p.phase == "edge"
            assert (p.class_id, p.confidence) == (int(edge_cls[i]), pytest.approx(float(edge_conf[i])))
        assert p.label == str(p.class_id)
    records = client.agreement_records()
    assert {r["key"] for r in records} == expected_low
    assert all(r["agree"] == (r["edge_class_id"] == r["cloud_class_id"]) and r["via"] == "online" for r in records)
    assert client.queue_depth == 0


def test_nothing_escalated_makes_no_request(make_client, cloud, digits):
    client = make_client(threshold=0.0)
    out = client.predict(instances(digits[0][:30]))
    assert {p.phase for p in out} == {"edge"}
    assert cloud.requests == []


# ---------------------------------------------------------------- offline queue


def test_cloud_down_then_restart_then_flush_refines_each_key_exactly_once(make_client, cloud, edge, digits, sleeps):
    x, _ = digits
    insts = instances(x)
    expected_low = low_keys(edge, insts)
    cloud.stop()

    first = make_client(retries=2)
    out = first.predict(insts)
    provisional = {p.key for p in out if p.provisional}
    assert provisional == expected_low
    assert all(p.phase == "edge" for p in out)
    assert first.queue_depth == len(expected_low)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9  # two backoffs before giving up, growing
    # The same keys again while still offline: answered without trying the cloud again, queued once, not twice.
    again = first.predict(insts)
    assert {p.key for p in again if p.provisional} == expected_low
    assert first.queue_depth == len(expected_low)
    assert len(sleeps) == 2 and first.cloud.stats.attempts == 3
    first.close()

    # A new process on the same file: the queue survived.
    second = make_client(retries=0)
    assert second.queue_depth == len(expected_low)
    report = second.flush()  # still down
    assert report.refined == [] and report.remaining == len(expected_low) and "failed" in report.error

    cloud.start()
    report = second.flush()
    assert report.error is None and report.remaining == 0
    refined = [o.key for o in report.refined]
    assert sorted(refined) == sorted(expected_low)  # every queued key, each once
    sent = [k for batch in cloud.predict_requests() for k in batch]
    assert sorted(sent) == sorted(expected_low)  # and sent once
    assert all(o.via == "replay" and o.cloud_class is not None for o in report.refined)

    again = second.flush()
    assert again.refined == [] and again.requests == 0
    assert len(cloud.predict_requests()) == 1
    assert {r["key"] for r in second.agreement_records()} == expected_low


def test_offline_cooldown_expires_and_the_next_call_reaches_the_cloud(make_client, cloud, edge, digits):
    now = [0.0]
    insts = instances(digits[0])
    cloud.stop()
    client = make_client(retries=0, offline_cooldown=30, clock=lambda: now[0])
    client.predict(insts)
    assert client.offline and client.cloud.stats.attempts == 1
    cloud.start()
    now[0] += 10
    assert all(p.phase != "cloud" for p in client.predict(instances(digits[0], "b")))
    assert client.cloud.stats.attempts == 1  # still in the cooldown: not tried
    now[0] += 25
    out = client.predict(instances(digits[0], "c"))
    assert {p.key for p in out if p.phase == "cloud"} == low_keys(edge, instances(digits[0], "c"))
    assert client.queue_depth == 0 and not client.offline  # and the queue was replayed


def test_flush_replays_in_batches_of_max_batch(make_client, cloud, edge, digits):
    insts = instances(digits[0])
    n = len(low_keys(edge, insts))
    cloud.stop()
    make_client(retries=0).predict(insts)
    cloud.start()
    report = make_client(retries=0, max_batch=5).flush()
    assert len(report.refined) == n
    batches = cloud.predict_requests()
    assert len(batches) == -(-n // 5) and all(len(b) <= 5 for b in batches)


def test_next_successful_call_replays_the_queue(make_client, cloud, edge, digits):
    x, _ = digits
    old, new = instances(x[:180], "old"), instances(x[180:], "new")
    cloud.stop()
    client_down = make_client(retries=0)
    client_down.predict(old)
    queued = low_keys(edge, old)
    assert client_down.queue_depth == len(queued) > 0
    client_down.close()

    cloud.start()
    seen: list = []
    client = make_client(retries=0, on_refined=seen.extend)
    out = client.predict(new)
    assert {p.key for p in out if p.phase == "cloud"} == low_keys(edge, new)
    assert sorted(o.key for o in seen) == sorted(queued)
    assert client.queue_depth == 0
    assert len(cloud.predict_requests()) == 2  # this call's escalations, then one replay batch


def test_5xx_is_retried_with_backoff(make_client, cloud, edge, digits, sleeps):
    insts = instances(digits[0])
    cloud.fail = [503, 502]
    out = make_client(retries=3).predict(insts)
    assert {p.key for p in out if p.phase == "cloud"} == low_keys(edge, insts)
    assert len(cloud.predict_requests()) == 3 and len(sleeps) == 2


def test_timeout_is_retried_then_queued(make_client, cloud, edge, digits):
    insts = instances(digits[0])
    cloud.fail = ["hang", "hang"]
    client = make_client(retries=1, timeout=0.2)
    out = client.predict(insts)
    assert {p.key for p in out if p.provisional} == low_keys(edge, insts)
    assert len(cloud.predict_requests()) == 2
    assert client.queue_depth == len(low_keys(edge, insts))


def test_4xx_is_not_retried_and_is_reported(make_client, cloud, edge, digits, sleeps):
    insts = instances(digits[0])
    client = make_client(cloud_model="no-such-model", retries=3)  # the real service answers 404
    out = client.predict(insts)
    low = low_keys(edge, insts)
    assert len(cloud.requests) == 1 and sleeps == []
    bad = [p for p in out if p.error]
    assert {p.key for p in bad} == low
    assert all("HTTP 404" in p.error and "no-such-model" in p.error and p.phase == "edge" for p in bad)
    assert not any(p.provisional for p in out) and client.queue_depth == 0
    assert {o.key for o in client.store.outcomes("rejected")} == low
    # After fixing the cause, the rejected escalations can be queued again and replayed.
    assert client.requeue_rejected() == len(low)
    fixed = make_client(retries=0)
    assert {o.key for o in fixed.flush().refined} == low


def test_4xx_during_flush_is_reported_not_retried(make_client, cloud, edge, digits):
    insts = instances(digits[0])
    cloud.stop()
    make_client(retries=0).predict(insts)
    cloud.start()
    cloud.fail = [400]
    report = make_client(retries=3).flush()
    assert {o.key for o in report.rejected} == low_keys(edge, insts)
    assert report.refined == [] and report.remaining == 0 and len(cloud.requests) == 1


# ---------------------------------------------------------------- rate cap


def test_rate_cap_per_call_escalates_the_least_confident(make_client, cloud, edge, digits):
    x, _ = digits
    insts = instances(x)
    _, conf = edge.predict(x)
    client = make_client(max_escalations_per_call=3)
    out = client.predict(insts)
    least = {insts[i]["key"] for i in np.argsort(conf, kind="stable")[:3]}
    assert set(cloud.predict_requests()[0]) == least
    assert {p.key for p in out if p.phase == "cloud"} == least
    capped = {p.key for p in out if p.capped}
    assert capped == low_keys(edge, insts) - least
    assert all(p.phase == "edge" and not p.provisional for p in out if p.capped)


def test_rate_cap_per_minute_slides(make_client, cloud, edge, digits):
    x, _ = digits
    now = [1000.0]
    client = make_client(max_escalations_per_minute=5, max_escalations_per_call=3, clock=lambda: now[0])
    sent = []
    for part in range(3):
        insts = instances(x, f"p{part}")
        out = client.predict(insts)
        sent.append(sum(p.phase == "cloud" for p in out))
        now[0] += 10
    assert sent == [3, 2, 0]
    now[0] += 60
    assert sum(p.phase == "cloud" for p in client.predict(instances(x, "later"))) == 3


def test_capped_escalations_are_not_queued_when_offline(make_client, cloud, digits):
    cloud.stop()
    client = make_client(max_escalations_per_call=2, retries=0)
    out = client.predict(instances(digits[0]))
    assert sum(p.provisional for p in out) == 2 and client.queue_depth == 2
    assert sum(p.capped for p in out) > 0


# ---------------------------------------------------------------- artifact fetch and checksum


def test_fetch_model_downloads_a_verified_copy(cloud, tmp_path, make_client, digits):
    directory = fetch_model(cloud.url, "digits-edge", tmp_path / "dl")
    assert (directory / "model.tflite").read_bytes() == (EDGE_DIR / "model.tflite").read_bytes()
    assert json.loads((directory / "manifest.json").read_text())["sha256"] == EdgeModel.load(EDGE_DIR).sha256
    client = TwoPhaseClient.from_deployment(cloud.url, "digits-edge", tmp_path / "cache", THRESHOLD,
                                            queue_path=tmp_path / "q.sqlite3")  # fmt: skip
    try:
        assert len(client.predict(instances(digits[0][:5]))) == 5
    finally:
        client.close()


def test_checksum_mismatch_is_refused(cloud, tmp_path):
    cloud.tamper = True
    with pytest.raises(ChecksumMismatch, match="does not match"):
        fetch_model(cloud.url, "digits-edge", tmp_path / "dl")
    assert not (tmp_path / "dl" / "model.tflite").exists()
    assert not (tmp_path / "dl" / "manifest.json").exists()
    assert cli_main(["fetch", "--endpoint", cloud.url, "--dest", str(tmp_path / "cli")]) == 4


def test_tampered_file_on_disk_is_refused(tmp_path):
    shutil.copytree(EDGE_DIR, tmp_path / "m")
    path = tmp_path / "m" / "model.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch):
        EdgeModel.load(tmp_path / "m")


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], "non-empty"),
        ([{"key": "a", "x": [0.0] * 64}, {"key": "a", "x": [0.0] * 64}], "repeats"),
        ([{"key": "a", "x": [0.0] * 63}], "64 finite numbers"),
        ([{"key": "a", "x": [float("nan")] * 64}], "64 finite numbers"),
        ([{"key": True, "x": [0.0] * 64}], "key must be"),
        ([{"x": [0.0] * 64}], "expected an object"),
    ],
)
def test_bad_instances_are_refused_before_any_work(make_client, cloud, bad, message):
    client = make_client(threshold=1.0)
    with pytest.raises(ValueError, match=message):
        client.predict(bad)
    assert cloud.requests == [] and client.queue_depth == 0


def test_int_and_str_keys_stay_distinct(make_client, cloud, digits):
    cloud.stop()
    client = make_client(threshold=1.0, retries=0)
    row = digits[0][0].tolist()
    client.predict([{"key": 7, "x": row}, {"key": "7", "x": row}])
    assert sorted(map(repr, (p.key for p in client.store.pending()))) == ["'7'", "7"]


# ---------------------------------------------------------------- exactly once under a race


def test_a_replayed_outcome_is_recorded_only_if_still_queued(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.enqueue([("k", [0.0] * 64, 1, 0.5)], "edge@1")
    outcome = Outcome("k", "refined", "replay", "edge@1", 1, 0.5, "cloud", 2, 0.9, None, time.time())
    assert store.record([outcome]) == [outcome]
    assert store.record([outcome]) == []  # a second flusher got the same answer: not reported twice
    assert len(store.outcomes()) == 1
    store.close()


# ---------------------------------------------------------------- threshold choice


CURVE = [
    {"threshold": 0.5, "accepted": 100, "accepted_accuracy": 0.90, "escalation_rate": 0.0},
    {"threshold": 0.7, "accepted": 90, "accepted_accuracy": 0.95, "escalation_rate": 0.10},
    {"threshold": 0.9, "accepted": 70, "accepted_accuracy": 0.99, "escalation_rate": 0.30},
    {"threshold": 0.999, "accepted": 0, "accepted_accuracy": None, "escalation_rate": 1.0},
]


def test_choose_threshold_for_an_accuracy_gap():
    # estimates at cloud 0.97: 0.90, 0.9*0.95+0.1*0.97 = 0.952, 0.7*0.99+0.3*0.97 = 0.984
    choice = choose_threshold(CURVE, cloud_accuracy=0.97, target_accuracy_gap=2.0)
    assert (choice.threshold, choice.target_met) == (0.7, True)
    assert choice.estimated_accuracy == pytest.approx(0.952)
    capped = choose_threshold(CURVE, cloud_accuracy=0.97, target_accuracy_gap=0.5, max_escalation=0.2)
    assert (capped.threshold, capped.target_met) == (0.7, False)  # 0.9 would do, but escalates 30 %


def test_choose_threshold_for_max_escalation_and_the_int8_ceiling():
    assert choose_threshold(CURVE, cloud_accuracy=0.97, max_escalation=0.35).threshold == 0.9
    assert choose_threshold(CURVE, max_escalation=0.2).threshold == 0.7
    table = trade_off_table(CURVE, 0.97)
    assert table[-1]["escalates_everything"] and table[-1]["estimated_accuracy"] == 0.97


def test_threshold_cli_on_the_committed_manifests(capsys):
    assert cli_main(["threshold", "--target-accuracy-gap", "0.5", "--models-dir", str(MODEL_ROOT), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    edge_manifest = json.loads((EDGE_DIR / "manifest.json").read_text())
    cloud_acc = json.loads((MODEL_ROOT / "digits-cloud" / "manifest.json").read_text())["metrics"]["int8"]["accuracy"]
    row = next(r for r in edge_manifest["calibration"] if r["threshold"] == doc["choice"]["threshold"])
    assert doc["choice"]["escalation_rate"] == row["escalation_rate"]
    assert doc["choice"]["estimated_accuracy"] >= cloud_acc - 0.005
    assert len(doc["table"]) == len(edge_manifest["calibration"])
    assert cli_main(["threshold", "--max-escalation", "0.0", "--target-accuracy-gap", "0.0",
                     "--models-dir", str(MODEL_ROOT)]) == 3  # fmt: skip


def test_agreement_summary_buckets(make_client, digits):
    client = make_client(send_agreement=False)  # records kept for manual delivery (the CLI), not sent
    client.predict(instances(digits[0]))
    summary = client.agreement_summary(bucket_seconds=3600)
    records = client.agreement_records()
    assert summary["escalations_answered"] == len(records) > 0
    assert summary["agreement"] == pytest.approx(sum(r["agree"] for r in records) / len(records))
    assert sum(b["n"] for b in summary["buckets"]) == len(records)
    client.mark_reported([r["key"] for r in records[:2]])
    assert len(client.agreement_records(unreported=True)) == len(records) - 2


def test_agreement_cli_prints_each_record_once_when_marking(make_client, tmp_path, digits, capsys):
    client = make_client(send_agreement=False)  # records kept for manual delivery (the CLI), not sent
    client.predict(instances(digits[0]))
    n = len(client.agreement_records())
    client.close()
    queue = str(tmp_path / "edge.sqlite3")
    assert cli_main(["agreement", "--queue", queue, "--unreported", "--mark-reported"]) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(first) == n > 0 and all({"key", "edge_class_id", "cloud_class_id", "agree"} <= r.keys() for r in first)
    assert cli_main(["agreement", "--queue", queue, "--unreported"]) == 0
    assert capsys.readouterr().out == ""


def test_edge_model_matches_its_manifest_accuracy(edge, digits):
    x, y = digits
    classes, conf = edge.predict(x)
    manifest = json.loads((EDGE_DIR / "manifest.json").read_text())
    assert np.mean(classes == y) == pytest.approx(manifest["metrics"]["int8"]["accuracy"])
    assert conf.max() <= 255 / 256 + 1e-6
    assert Path(EDGE_DIR / "model.tflite").stat().st_size < 16 * 1024


def test_demo_story_goes_offline_queues_and_refines(cloud, tmp_path, digits, edge):
    from liteserve_edge.demo import run_stream

    x, y = digits
    insts = instances(x)
    lines: list[str] = []
    summary = run_stream(
        cloud.url,
        EDGE_DIR,
        insts,
        go_offline=cloud.stop,
        go_online=cloud.start,
        queue_path=tmp_path / "demo.sqlite3",
        labels={i["key"]: int(label) for i, label in zip(insts, y, strict=True)},
        cloud_manifest=json.loads((MODEL_ROOT / "digits-cloud" / "manifest.json").read_text()),
        emit=lines.append,
        retries=0,
    )
    second_half_low = low_keys(edge, insts[len(insts) // 2 :], summary["threshold"])
    assert summary["provisional"] == summary["refined_after_flush"] == len(second_half_low) > 0
    assert summary["queue_left"] == 0
    assert summary["accuracy_after_flush"] >= summary["accuracy_before_flush"]
    assert any("OFFLINE" in line for line in lines) and sum(line.startswith("refined") for line in lines) == len(
        second_half_low
    )


def test_agreement_records_wait_for_the_cloud_and_go_once(make_client, cloud, digits):
    """Sent after answered escalations; a failed delivery keeps them for the next escalation or flush()."""
    client = make_client(retries=0)
    insts = instances(digits[0])
    cloud.fail = [None, 503]  # the :predict answers, the agreement POST meets an outage
    client.predict(insts[: len(insts) // 2])
    pending = client.agreement_records(unreported=True)
    assert pending and cloud.agreements == []
    client.predict(insts[len(insts) // 2 :])  # the next answered escalation delivers everything not sent yet
    assert client.agreement_records(unreported=True) == []
    keys = [r["key"] for r in cloud.agreements]
    assert len(keys) == len(set(keys)) and {r["key"] for r in pending} <= set(keys)
