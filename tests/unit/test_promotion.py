"""Promotion: the pure gate and canary review, layer-zip surgery, and the Promoter's steps on an in-process S3
registry with an in-memory Lambda control plane (the real LambdaDeployer runs against the local cloud in
tests/integration/test_retraining.py)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
from liteserve.adapters import ObjectStore
from liteserve.promotion.decide import PromotionPolicy, gate, int8_fidelity, review_canary
from liteserve.promotion.deploy import Routing, extract_model, layer_name_of, replace_model
from liteserve.promotion.service import Promoter, PromotionConfig
from liteserve.registry import Registry
from moto import mock_aws

from tests.support import MODEL_ROOT

GOOD_METRICS = {"float": {"accuracy": 0.98}, "int8": {"accuracy": 0.978, "argmax_agreement": 0.995}}
POLICY = PromotionPolicy(margin=0.01, canary_weight=0.25, canary_min_labelled=50, canary_tolerance=0.0)


def test_gate_needs_the_margin_and_int8_fidelity() -> None:
    assert gate(0.90, 0.95, 400, GOOD_METRICS, True, POLICY).action == "canary"
    small = gate(0.90, 0.905, 400, GOOD_METRICS, True, POLICY)
    assert small.action == "reject" and "margin" in small.reasons[0]
    worse = gate(0.90, 0.80, 400, GOOD_METRICS, True, POLICY)
    assert worse.action == "reject" and worse.numbers["gain"] == pytest.approx(-0.10)
    lossy = {"float": {"accuracy": 0.98}, "int8": {"accuracy": 0.96, "argmax_agreement": 0.995}}
    assert gate(0.90, 0.95, 400, lossy, True, POLICY).action == "reject"
    assert gate(0.90, 0.95, 400, GOOD_METRICS, False, POLICY).action == "reject"
    assert int8_fidelity({})[0] is False


def test_canary_review_waits_then_promotes_or_rolls_back() -> None:
    assert review_canary({"labelled": 500, "accuracy": 0.9}, {"labelled": 10, "accuracy": 1.0}, POLICY).action == "wait"
    assert review_canary(None, None, POLICY).action == "wait"
    good = review_canary({"labelled": 500, "accuracy": 0.80}, {"labelled": 60, "accuracy": 0.95}, POLICY)
    assert good.action == "promote" and good.numbers["canary_accuracy"] == 0.95
    bad = review_canary({"labelled": 500, "accuracy": 0.95}, {"labelled": 60, "accuracy": 0.80}, POLICY)
    assert bad.action == "rollback"
    alone = review_canary({"labelled": 0, "accuracy": None}, {"labelled": 60, "accuracy": 0.5}, POLICY)
    assert alone.action == "promote"


def test_policy_from_env_refuses_a_weight_outside_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITESERVE_CANARY_WEIGHT", "1")
    with pytest.raises(ValueError, match="canary weight"):
        PromotionPolicy.from_env()
    monkeypatch.setenv("LITESERVE_CANARY_WEIGHT", "0.3")
    assert PromotionPolicy.from_env().canary_weight == 0.3


def layer_zip(root: Path = MODEL_ROOT) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, "models/" + f.relative_to(root).as_posix())
    return out.getvalue()


def test_replace_model_swaps_one_folder_and_keeps_the_rest() -> None:
    base = layer_zip()
    new = replace_model(base, "digits", {"model.tflite": b"new", "manifest.json": b"{}"})
    assert extract_model(new, "digits") == {"model.tflite": b"new", "manifest.json": b"{}"}
    assert extract_model(new, "digits-edge") == extract_model(base, "digits-edge")
    with zipfile.ZipFile(io.BytesIO(new)) as z:
        assert sorted(z.namelist()) == sorted(zipfile.ZipFile(io.BytesIO(base)).namelist())
    with pytest.raises(KeyError):
        extract_model(new, "nope")
    assert layer_name_of("arn:aws:lambda:us-east-1:123456789012:layer:liteserve-model:7") == "liteserve-model"


class FakeDeployer:
    """The Lambda control plane in memory: function versions -> layer zips, and the alias."""

    def __init__(self, base: bytes) -> None:
        self.zips = {"1": base}
        self.alias = Routing("1", {})
        self.published: list[str] = []

    def routing(self) -> Routing:
        return Routing(self.alias.primary, dict(self.alias.weights))

    def model_layer_zip(self, version: str) -> tuple[str, bytes]:
        return f"arn:aws:lambda:us-east-1:123456789012:layer:m:{version}", self.zips[version]

    def publish_layer(self, layer_zip: bytes, bucket: str, key: str, description: str) -> str:
        self.published.append(key)
        self._pending = layer_zip
        return f"arn:aws:lambda:us-east-1:123456789012:layer:m:{len(self.published) + 1}"

    def publish_function(self, base_version: str, layer_arn: str, description: str) -> str:
        fv = str(len(self.zips) + 1)
        self.zips[fv] = self._pending
        return fv

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> Routing:
        self.alias = Routing(primary, {canary: weight} if canary and weight else {})
        return self.alias

    def served_model_version(self, fv: str) -> str:
        return json.loads(extract_model(self.zips[fv], "digits")["manifest.json"])["version"]


@pytest.fixture
def world(digits: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[Promoter, FakeDeployer, Registry]]:
    """A registry holding candidate digits/2 (the digits-cloud network, relabelled) with the test split as holdout."""
    x, y = digits
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="data")
        store = ObjectStore("data")
        manifest = json.loads((MODEL_ROOT / "digits-cloud" / "manifest.json").read_text())
        manifest.update(name="digits", version="2")
        store.put("models/digits/2/manifest.json", json.dumps(manifest).encode())
        store.put("models/digits/2/model.tflite", (MODEL_ROOT / "digits-cloud" / "model.tflite").read_bytes())
        rows = [json.dumps({"key": f"k{i}", "x": x[i].tolist(), "label": str(int(y[i]))}) for i in range(len(y))]
        store.put("models/digits/2/holdout.jsonl", "\n".join(rows).encode())
        deployer = FakeDeployer(layer_zip())
        config = PromotionConfig(bucket="data", function_name="f", model_layer="m")
        yield Promoter(config, POLICY, deployer=deployer), deployer, Registry(store)  # type: ignore[arg-type]


def test_gate_starts_a_canary_records_it_and_promotion_moves_the_alias(world) -> None:
    promoter, deployer, registry = world
    promoter.policy = PromotionPolicy(margin=0.005, canary_weight=0.25)
    verdict = promoter.gate("digits", "2")
    assert verdict.action == "canary", verdict.reasons
    assert verdict.numbers["candidate_accuracy"] > verdict.numbers["live_accuracy"]
    assert deployer.alias.primary == "1" and deployer.alias.weights == {"2": 0.25}
    assert deployer.served_model_version("2") == "2"  # the new function version serves the candidate's files
    live = registry.live("digits")
    assert live["canary"]["model_version"] == "2" and live["primary"]["model_version"] == "1"
    again = promoter.gate("digits", "2")  # the same request delivered twice: nothing is published again
    assert (again.action, again.reasons[0], len(deployer.published)) == ("canary", "already decided", 1)
    for name in ("manifest.json", "model.tflite", "holdout.jsonl"):
        registry.store.put(f"models/digits/3/{name}", registry.store.read(f"models/digits/2/{name}"))
    assert promoter.gate("digits", "3").action == "defer"  # one canary at a time

    verdict = promoter.review(
        "digits", {"1": {"labelled": 300, "accuracy": 0.7}, "2": {"labelled": 100, "accuracy": 0.9}}
    )
    assert verdict.action == "promote"
    assert deployer.alias.primary == "2" and deployer.alias.weights == {}
    steps = [e["step"] for e in json.loads(registry.store.read("models/digits/2/promotion.json"))["events"]]
    assert steps == ["canary", "gate", "promote"]
    assert promoter.review("digits", {}) is None  # nothing running any more

    promoter.rollback("digits")  # manual: back to the previous primary
    assert deployer.alias.primary == "1" and registry.live("digits")["primary"]["model_version"] == "1"
    with pytest.raises(LookupError):
        promoter.rollback("digits")


def test_gate_rejects_a_candidate_short_of_the_margin_and_deploys_nothing(world) -> None:
    promoter, deployer, registry = world
    promoter.policy = PromotionPolicy(margin=0.05)
    verdict = promoter.gate("digits", "2")
    assert verdict.action == "reject" and "margin" in verdict.reasons[0]
    assert deployer.published == [] and deployer.alias == Routing("1", {})
    assert registry.live("digits") is None
    events = json.loads(registry.store.read("models/digits/2/promotion.json"))["events"]
    assert events[0]["action"] == "reject" and events[0]["numbers"]["holdout_rows"] == 360
    # A repeated retraining request reaches the gate again: the decision stands, even under a laxer policy.
    promoter.policy = PromotionPolicy(margin=0.0)
    again = promoter.gate("digits", "2")
    assert again.action == "reject" and again.reasons[0] == "already decided" and deployer.published == []


def test_an_underperforming_canary_is_rolled_back(world) -> None:
    promoter, deployer, registry = world
    promoter.canary_manual("digits", "2", weight=0.5)
    assert deployer.alias.weights == {"2": 0.5}
    scores = {"1": {"labelled": 200, "accuracy": 0.95}, "2": {"labelled": 120, "accuracy": 0.60}}
    assert promoter.review("digits", scores).action == "rollback"
    assert deployer.alias == Routing("1", {})
    assert registry.live("digits")["canary"] is None
    with pytest.raises(LookupError, match="never deployed"):
        promoter.promote("digits", "9")
    assert promoter.gate("digits", "2").reasons[0] == "already decided"  # rolled back: never a canary again


def test_a_routing_record_the_alias_no_longer_matches_is_not_acted_on(world) -> None:
    promoter, deployer, registry = world
    promoter.canary_manual("digits", "2", weight=0.5)
    deployer.alias = Routing("7", {})  # e.g. a sam deploy published version 7 and moved the alias
    scores = {"1": {"labelled": 200, "accuracy": 0.5}, "2": {"labelled": 120, "accuracy": 0.9}}
    with pytest.raises(RuntimeError, match=r"live\.json says"):
        promoter.review("digits", scores)
    assert deployer.alias == Routing("7", {}) and registry.live("digits")["canary"]["model_version"] == "2"


def test_a_candidate_whose_file_does_not_match_its_manifest_is_refused(world) -> None:
    promoter, deployer, registry = world
    registry.store.put("models/digits/2/model.tflite", b"tampered")
    with pytest.raises(Exception, match="sha256"):
        promoter.gate("digits", "2")
    assert deployer.published == []


def test_cli_pull_writes_a_checked_model_folder_and_refuses_a_tampered_one(world, tmp_path, monkeypatch, capsys):
    from liteserve.promotion.__main__ import main

    _, _, registry = world
    for var, value in (("LITESERVE_BUCKET", "data"), ("LITESERVE_PREDICT_FUNCTION", "f")):
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("LITESERVE_MODEL_LAYER_NAME", "m")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert main(["pull", "--model", "digits", "--version", "2", "--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "digits" / "manifest.json").read_text())["version"] == "2"
    good = (tmp_path / "ok" / "digits" / "model.tflite").read_bytes()
    registry.store.put("models/digits/2/model.tflite", b"tampered")
    assert main(["pull", "--model", "digits", "--version", "2", "--out", str(tmp_path / "ok")]) == 2
    assert "sha256" in capsys.readouterr().err
    assert (tmp_path / "ok" / "digits" / "model.tflite").read_bytes() == good  # the good copy was not touched
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["digits"]  # no temporary folder left behind
    assert main(["promote", "--model", "digits", "--version", "7"]) == 1  # no such function: AWS's error, no traceback
    assert "ResourceNotFound" in capsys.readouterr().err


# ---------------------------------------------------------------- by task: regression (RMSE), embedding (not judged)
REG_METRICS = {"float": {"mae": 40.0, "rmse": 50.0, "r2": 0.5}, "int8": {"mae": 40.5, "rmse": 50.5, "r2": 0.49}}
REG_FIDELITY = {"regression": {"max_rel_error": 0.02, "mean_rel_error": 0.005}, "bounds": {"max_rel_error": 0.05}}


def reg_gate(live: float, cand: float, metrics=REG_METRICS, fidelity=REG_FIDELITY, policy=POLICY, **kw):
    return gate(live, cand, 88, metrics, True, policy, task="regression", fidelity=fidelity, **kw)


def test_regression_gate_needs_a_relative_rmse_improvement_of_the_margin() -> None:
    better = reg_gate(60.0, 50.0)
    assert better.action == "canary", better.reasons
    assert better.numbers["task"] == "regression" and better.numbers["metric"] == "rmse"
    assert (better.numbers["live_rmse"], better.numbers["candidate_rmse"]) == (60.0, 50.0)
    assert better.numbers["gain"] == pytest.approx(1 / 6) and "below live" in better.reasons[0]
    # margin 0.01: 0.5 % lower is not enough, 1.5 % lower is (the margin is a share of the live RMSE, not points)
    small = reg_gate(100.0, 99.5)
    assert small.action == "reject" and small.numbers["gain"] == pytest.approx(0.005)
    assert "margin 1.00%" in small.reasons[0] and "+0.50%" in small.reasons[0]
    assert reg_gate(100.0, 98.5).action == "canary"
    worse = reg_gate(50.0, 60.0)
    assert worse.action == "reject" and worse.numbers["gain"] == pytest.approx(-0.2)
    assert reg_gate(0.0, 0.0).action == "reject"  # a perfect live model cannot be beaten


def test_regression_gate_rechecks_the_packaged_int8_fidelity() -> None:
    loose = {**REG_FIDELITY, "regression": {"max_rel_error": 0.08}}
    far = reg_gate(60.0, 50.0, fidelity=loose)
    assert far.action == "reject" and far.reasons == ["int8/float max relative score error 0.0800 > 0.05"]
    assert reg_gate(60.0, 50.0, fidelity=loose, max_rel_error=0.1).action == "canary"  # the live model's bound
    lossy = {"float": {"rmse": 50.0}, "int8": {"rmse": 53.0}}
    assert "int8 rmse 53.0000 is more than 5% above float 50.0000" in reg_gate(60.0, 50.0, metrics=lossy).reasons
    bare = reg_gate(60.0, 50.0, metrics=GOOD_METRICS, fidelity={})  # a classifier's numbers do not pass
    assert bare.action == "reject" and len(bare.reasons) == 2
    assert int8_fidelity(REG_METRICS, "regression", REG_FIDELITY) == (True, [])
    assert int8_fidelity(REG_METRICS, "regression", {"regression": {"max_rel_error": float("nan")}})[0] is False
    not_int8 = gate(60.0, 50.0, 88, REG_METRICS, False, POLICY, task="regression", fidelity=REG_FIDELITY)
    assert not_int8.reasons == ["not every signature of the candidate is int8"]


def test_an_embedding_candidate_is_rejected_and_its_canary_left_to_a_person() -> None:
    verdict = gate(0.0, 0.0, 0, {}, True, POLICY, task="embedding")
    assert verdict.action == "reject" and "no labelled metric" in verdict.reasons[0]
    review = review_canary({"labelled": 500}, {"labelled": 500}, POLICY, task="embedding")
    assert review.action == "wait" and "no labelled metric" in review.reasons[0]
    assert review.numbers["task"] == "embedding" and review.numbers["metric"] is None


def test_regression_canary_review_by_rmse_with_a_relative_tolerance() -> None:
    policy = PromotionPolicy(canary_min_labelled=50, canary_tolerance=0.05)

    def review(primary_rmse: float | None, canary_rmse: float | None, canary_n: int = 60):
        primary = {"labelled": 300, "rmse": primary_rmse, "accuracy": None}
        return review_canary(primary, {"labelled": canary_n, "rmse": canary_rmse}, policy, task="regression")

    assert review(50.0, 40.0, canary_n=10).action == "wait"
    good = review(50.0, 40.0)
    assert good.action == "promote" and good.numbers["canary_rmse"] == 40.0 and good.numbers["primary_rmse"] == 50.0
    assert good.numbers["metric"] == "rmse" and good.numbers["gain"] == pytest.approx(0.2)
    assert review(50.0, 52.0).action == "promote"  # 4 % worse: within the 5 % tolerance
    bad = review(50.0, 53.0)  # 6 % worse
    assert bad.action == "rollback" and "rmse 53.0000 trails primary 50.0000 (-6.00%)" in bad.reasons[0]
    assert review(None, 53.0).action == "promote"  # no primary numbers since the canary started: judged alone
    assert review(50.0, None).action == "wait"
    # a classifier's numbers are still read as accuracy, and a regression's accuracy (None) is never used
    assert review_canary({"labelled": 300, "accuracy": 0.9}, {"labelled": 60, "accuracy": 0.8}, policy).action == (
        "rollback"
    )


def test_an_embedding_candidate_is_rejected_by_the_gate_without_deploying(world) -> None:
    promoter, deployer, registry = world
    manifest = json.loads(registry.store.read("models/digits/2/manifest.json"))
    manifest["task"] = {"kind": "embedding", "signature": "embedding", "embedding": "embedding"}
    registry.store.put("models/digits/2/manifest.json", json.dumps(manifest).encode())
    verdict = promoter.gate("digits", "2")
    assert verdict.action == "reject" and "task 'embedding' has no labelled metric" in verdict.reasons[0]
    assert deployer.published == [] and registry.live("digits") is None
    assert registry.events("digits", "2")[0]["numbers"] == {"task": "embedding"}


def test_a_running_canary_registered_as_a_regression_is_reviewed_by_rmse(world) -> None:
    promoter, deployer, registry = world
    promoter.canary_manual("digits", "2", weight=0.5)
    manifest = json.loads(registry.store.read("models/digits/2/manifest.json"))
    manifest["task"] = {"kind": "regression", "signature": "serving_default", "score": "class_id"}
    registry.store.put("models/digits/2/manifest.json", json.dumps(manifest).encode())
    worse = {"1": {"labelled": 200, "rmse": 1.0}, "2": {"labelled": 120, "rmse": 1.5}}
    verdict = promoter.review("digits", worse)
    assert verdict.action == "rollback" and verdict.numbers["metric"] == "rmse"
    assert deployer.alias == Routing("1", {})
    assert registry.events("digits", "2")[-1]["numbers"]["canary_rmse"] == 1.5
