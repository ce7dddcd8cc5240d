"""The evaluator's decisions on in-memory fakes (tests/fakes.py): no moto. A window's labels below or above the
policy's thresholds, drift -> one RetrainRequested per window, the cooldown, a running canary, and the pure decide
step on its own. The same evaluator against moto is tests/unit/test_evaluation_core.py."""

from __future__ import annotations

import orjson
import pytest
from liteserve.evaluation.evaluate import Measured, Window, decide_window, evaluate_group
from liteserve.evaluation.policy import RetrainPolicy
from liteserve.manifest import Manifest
from liteserve.records import Signatures, batch_object, read_object

from liteserve_dev.scenario import Scenario, generate
from tests.fakes import FakeEvaluation, fake_evaluator
from tests.support import MODEL_ROOT

T0 = 1795835400.0  # 2026-11-28T03:10:00Z
HOUR = 3600


@pytest.fixture(scope="module")
def days(digits):
    x, y = digits
    return generate(x, y, Scenario(start="2026-11-28", days=2, per_day=300, drift_start=1, ramp_days=1))


def drop(ev: FakeEvaluation, models, day: dict, t: float, prefix: str, labels: str = "true") -> list[str]:
    """One batch job's prediction-log object made at `t`, and its labels: the true ones, `wrong` ones (every
    label shifted by one class) or none."""
    model = models.get("digits")
    out = model.predict("serving_default", {"x": day["x"]})
    keys = [f"{prefix}-{k}" for k in day["keys"]]
    name, body = batch_object(prefix, 0, t, "digits", model.version, "serving_default", keys, {"x": day["x"]}, out)
    ev.store.put(name, body, "application/gzip")
    if labels != "none":
        shift = 1 if labels == "wrong" else 0
        ev.labels.put({k: (int(v) + shift) % 10 for k, v in zip(keys, day["y"], strict=True)}, now=t + 60)
    return keys


def report(ev: FakeEvaluation, summary: dict) -> dict:
    return orjson.loads(ev.store.read(summary["report"].removeprefix("s3://data/").replace(".html", ".json")))


@pytest.mark.parametrize(
    ("labels", "min_labelled", "retrain", "reason"),
    [
        ("true", 200, False, None),  # accurate, enough labels: nothing to do
        ("wrong", 200, True, "accuracy"),  # enough labels, accuracy under the floor: retrain
        ("wrong", 1000, False, None),  # the same accuracy on too few labels: no verdict from labels
    ],
)
def test_a_windows_labels_below_or_above_the_thresholds(models, days, labels, min_labelled, retrain, reason):
    ev = fake_evaluator(MODEL_ROOT, RetrainPolicy(min_labelled=min_labelled))
    drop(ev, models, days[0], T0, "j", labels)
    summary = ev.evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    assert summary["retrain"] is retrain
    assert summary["versions"]["1"]["labelled"] == 300
    assert len(ev.bus.of("RetrainRequested")) == (1 if retrain else 0)
    if reason:
        assert any(reason in r for r in summary["reasons"]), summary["reasons"]
        assert summary["trigger"] == "claimed"
    doc = report(ev, summary)
    assert doc["counts"]["labelled"] == 300 and doc["decided_on_version"] == "1"
    assert ("trigger" in doc) is retrain


def test_drift_requests_one_retraining_per_window_then_the_cooldown_holds(models, days):
    ev = fake_evaluator(MODEL_ROOT, RetrainPolicy(min_labelled=200, cooldown_hours=24))
    drop(ev, models, days[1], T0, "a")
    first = ev.evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    again = ev.evaluator.run(T0 + 180, now=T0 + 180)["models"]["digits"]  # a repeated schedule delivery
    assert (first["retrain"], first["trigger"], again["trigger"]) == (True, "claimed", "duplicate")
    [event] = ev.bus.of("RetrainRequested")
    assert event["window"]["id"] == "2026-11-28T03:00:00Z" and event["version"] == "1"
    assert event["metrics"]["labelled"] == 300 and event["report"].endswith("/report.json")
    assert ev.claims.windows["digits#window#2026-11-28T03:00:00Z"]["sent_at"] == int(T0 + 120)

    drop(ev, models, days[1], T0 + 2 * HOUR, "b")  # drifted again two hours later: inside the cooldown
    later = ev.evaluator.run(T0 + 2 * HOUR + 120, now=T0 + 2 * HOUR + 120)["models"]["digits"]
    assert (later["retrain"], later["trigger"]) == (True, "cooldown")
    assert report(ev, later)["trigger"] == {"outcome": "cooldown"}
    assert len(ev.bus.of("RetrainRequested")) == 1

    drop(ev, models, days[1], T0 + 26 * HOUR, "c")  # after the cooldown
    after = ev.evaluator.run(T0 + 26 * HOUR + 120, now=T0 + 26 * HOUR + 120)["models"]["digits"]
    assert after["trigger"] == "claimed" and len(ev.bus.of("RetrainRequested")) == 2


def test_an_unsent_claim_is_resent_by_a_later_run(models, days, monkeypatch):
    ev = fake_evaluator(MODEL_ROOT, RetrainPolicy(min_labelled=200))
    drop(ev, models, days[1], T0, "a")

    def down(detail_type, detail):
        raise RuntimeError("EventBridge unavailable")

    monkeypatch.setattr(ev.bus, "put", down)
    with pytest.raises(RuntimeError):
        ev.evaluator.run(T0 + 120, now=T0 + 120)
    monkeypatch.undo()
    soon = ev.evaluator.run(T0 + 180, now=T0 + 180)["models"]["digits"]
    assert soon["trigger"] == "duplicate" and ev.bus.events == []  # claimed moments ago: maybe still in flight
    late = ev.evaluator.run(T0 + 1200, now=T0 + 1200)["models"]["digits"]
    assert late["trigger"] == "resend" and len(ev.bus.of("RetrainRequested")) == 1


def test_label_free_drift_alerts_once_and_requests_no_retraining(models, days):
    ev = fake_evaluator(MODEL_ROOT, RetrainPolicy())
    drop(ev, models, days[1], T0, "a", labels="none")
    first = ev.evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    again = ev.evaluator.run(T0 + 180, now=T0 + 180)["models"]["digits"]
    assert (first["retrain"], first["alert"], again["alert"]) == (False, "claimed", "duplicate")
    [alert] = ev.bus.of("DriftDetected")
    assert alert["violations"].endswith("/violations.json") and alert["findings"] == first["findings"]
    assert ev.bus.of("RetrainRequested") == []
    key = "reports/digits/2026-11-28T03:00:00Z/violations.json"
    assert orjson.loads(ev.store.read(key))["alert"] == {"outcome": "duplicate", "findings": first["findings"]}


def test_a_running_canary_holds_the_retraining_and_the_decision_follows_the_live_primary(models, days):
    ev = fake_evaluator(MODEL_ROOT, RetrainPolicy(min_labelled=100))
    drop(ev, models, days[1], T0, "a")
    ev.registry.routes["digits"] = {
        "primary": {"model_version": "1", "function_version": "1"},
        "canary": {"model_version": "2", "function_version": "2", "weight": 0.1, "since": T0 + 30},
    }
    summary = ev.evaluator.run(T0 + 120, now=T0 + 120)["models"]["digits"]
    assert summary["retrain"] is True and summary["trigger"] is None
    assert summary["canary"]["verdict"]["action"] == "wait"  # no promoter configured
    assert report(ev, summary)["trigger"] == {"outcome": "canary running"}
    assert ev.bus.events == [] and ev.claims.windows == {}


def measured(models, day: dict, policy: RetrainPolicy, live: dict | None = None) -> Measured:
    """The compute step's answer for one window of digits predictions, labelled."""
    manifest = Manifest.load(MODEL_ROOT / "digits" / "manifest.json")
    model = models.get("digits")
    out = model.predict("serving_default", {"x": day["x"]})
    _, body = batch_object("j", 0, T0, "digits", "1", "serving_default", day["keys"], {"x": day["x"]}, out)
    records, _ = read_object(body, Signatures(MODEL_ROOT), "key")
    labels = {k: str(int(v)) for k, v in zip(day["keys"], day["y"], strict=True)}
    window = Window.at(T0 + 120, 24, 3600)
    results = {"1": evaluate_group(records, labels, manifest, policy)}
    return Measured("digits", manifest, window, results, {"1": [("2026-11-27T03:00:00Z", 0.97)]}, "accuracy", live)


def test_the_decide_step_is_pure_and_says_what_to_claim(models, days):
    policy = RetrainPolicy(min_labelled=100)
    drifted = measured(models, days[1], policy)
    planned = decide_window(drifted, policy, T0 + 120, orphans=2, bad=1)
    assert planned.decision.retrain and planned.claim_retrain and not planned.claim_alert
    assert planned.prefix == "reports/digits/2026-11-28T03:00:00Z/"
    assert planned.report["counts"]["labels_without_prediction"] == 2
    assert planned.report["counts"]["unreadable_log_lines"] == 1
    assert "trigger" not in planned.report and planned.violations["alert"] is None
    accuracy = planned.report["versions"]["1"]["metrics"]["accuracy"]
    assert planned.history == {"1": [("2026-11-27T03:00:00Z", 0.97), ("2026-11-28T03:00:00Z", accuracy)]}

    held = decide_window(drifted, policy, T0 + 120, orphans=0, bad=0, canary={"running": {}})
    assert held.decision.retrain and not held.claim_retrain
    assert held.report["trigger"] == {"outcome": "canary running"}

    clean = decide_window(measured(models, days[0], policy), policy, T0 + 120, orphans=0, bad=0)
    assert not (clean.claim_retrain or clean.claim_alert) and clean.decision.reasons == []
