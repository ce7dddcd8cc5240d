"""A user's regression model evaluated by its task on the local cloud: the diabetes MLP (tests/packaging_models.py)
packaged by `liteserve-model package` (retraining declared: `--retrain examples.diabetes.train:retrain`), served
online and through a batch drop, labelled with numbers by key (one label is not a number), then the scheduled
evaluation writes a report with MAE / RMSE / R², a residual histogram and drift per named feature; shifted traffic
makes it request a retraining for its errors and the drifted feature; shifted targets make it retrain through the
entry point, the holdout gate compares RMSEs and starts a canary, and the next evaluation promotes it by RMSE."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from localcloud import LocalCloud
from tests.integration.conftest import Events, infer_served, post, project_cloud, wait_for
from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared' / 'python'}", "TF_CPP_MIN_LOG_LEVEL": "3"}
POLICY = {"min_labelled": 200, "cooldown_hours": 24}
# Retraining is started by hand here (`localcloud start-build RetrainProject`, as AutoRetrain=false documents) with
# the request the RetrainRequested rule would pass, so that no other test's event starts a build.
PARAMETERS = {
    "RetrainPolicy": json.dumps(POLICY),
    "AutoRetrain": "false",
    "CanaryWeight": "0.5",
    "CanaryMinLabelled": "100",
    "PromotionMargin": "0.01",
}
ONLINE = 300  # of the 442 rows; the rest go through a batch drop
ENTRY_POINT = "examples.diabetes.train:retrain"
SHIFT = 100.0  # concept drift: the targets run this much above the training data's

if not TRAIN_PYTHON.exists():
    pytest.skip("packaging with TensorFlow runs in .venv-train: run `make train-venv`", allow_module_level=True)


def project_with_models(dest: Path, extra: dict[str, Path]) -> Path:
    """A copy of the project's template whose model layer holds the bundled models and `extra` ones (name -> dir),
    everything else linked to the repository: the local cloud serves them all as deployed layers would."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "template.yaml", dest / "template.yaml")
    for entry in ROOT.iterdir():
        if entry.name not in ("template.yaml", "layers") and not (dest / entry.name).exists():
            (dest / entry.name).symlink_to(entry)
    for entry in (ROOT / "layers").iterdir():
        if entry.name != "model":
            (dest / "layers" / entry.name).parent.mkdir(exist_ok=True)
            (dest / "layers" / entry.name).symlink_to(entry)
    models = dest / "layers" / "model" / "models"
    models.mkdir(parents=True)
    for entry in (ROOT / "layers" / "model" / "models").iterdir():
        (models / entry.name).symlink_to(entry)
    for name, folder in extra.items():
        (models / name).symlink_to(folder)
    return dest / "template.yaml"


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The packaged model's folder and the data it was made from (features [442, 10], targets)."""
    made, out = tmp_path_factory.mktemp("made"), tmp_path_factory.mktemp("packaged")
    make = f"from pathlib import Path; from tests.packaging_models import diabetes; diabetes(Path({str(made)!r}))"
    subprocess.run([str(TRAIN_PYTHON), "-c", make], cwd=ROOT, env=ENV, check=True, timeout=600)
    cmd = [str(TRAIN_PYTHON), "-m", "liteserve_dev", "package", str(made / "saved_model"), "--data",
           str(made / "data.csv"), "--label-field", "target", "--name", "diabetes", "--out", str(out),
           "--retrain", ENTRY_POINT]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = np.loadtxt(made / "data.csv", delimiter=",", skiprows=1)
    return out / "diabetes", table[:, :10], table[:, 10]


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory, diabetes) -> Iterator[LocalCloud]:
    template = project_with_models(tmp_path_factory.mktemp("project"), {"diabetes": diabetes[0]})
    with project_cloud(
        tmp_path_factory, "lc-regression", PARAMETERS, template, log_subscriptions=True, log_ship_interval=3600
    ) as cloud:
        yield cloud


@pytest.fixture
def cloud(lc: LocalCloud) -> Iterator[LocalCloud]:
    lc.reset()
    yield lc
    lc.wait_idle(timeout=60)


def _score(value: object) -> float:
    return float(np.ravel(np.asarray(value, dtype=np.float64))[0])


def traffic(cloud: LocalCloud, prefix: str, x: np.ndarray) -> dict[str, float]:
    """ONLINE rows over TF Serving (keyed), the rest as a batch drop; every served score by key."""
    keys = [f"{prefix}-{i:03d}" for i in range(len(x))]
    answers: dict[str, float] = {}
    for start in range(0, ONLINE, 100):
        rows = [
            {"key": k, "features": r} for k, r in zip(keys[start : start + 100], x[start : start + 100], strict=True)
        ]
        status, doc = post(cloud, "/v1/models/diabetes:predict", {"instances": rows})
        assert status == 200, doc
        answers.update({p["key"]: _score(p["output_0"]) for p in doc["predictions"]})
    cloud.flush_logs()
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    body = b"".join(
        orjson.dumps({"key": k, "features": r}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        for k, r in zip(keys[ONLINE:], x[ONLINE:], strict=True)
    )
    job = f"{prefix}-batch.jsonl"
    s3.put_object(Bucket=bucket, Key=f"incoming/{job}", Body=body,
                  Metadata={"model": "diabetes", "input-field": "features"})  # fmt: skip

    def done() -> dict | None:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=f"results/{job}/_SUCCESS")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    manifest = wait_for(done, timeout=90, interval=0.3)
    for uri in manifest["output"]["parts"]:
        part = s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].read()
        answers.update({p["key"]: _score(p["output_0"]) for p in map(orjson.loads, part.splitlines())})
    assert len(answers) == len(x)
    return answers


def label_and_evaluate(
    cloud: LocalCloud, answers: dict[str, float], y: np.ndarray, bad_first: bool = True
) -> tuple[dict, dict, str]:
    """POST the targets as numbers (with `bad_first`, the first key's as text that is not one); fire the
    evaluation; the model's run summary, its report.json and report.html."""
    keys = sorted(answers)
    items = [{"key": k, "label": float(v)} for k, v in zip(keys, y, strict=True)]
    if bad_first:
        items[0]["label"] = "n/a"
    status, doc = post(cloud, "/v1/labels", items)
    assert (status, doc["stored"]) == (200, len(items)), doc
    cloud.wait_idle(timeout=30)
    [summary] = cloud.fire_schedule("EvaluateFunction")
    result = summary["models"]["diabetes"]
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    key = result["report"].removeprefix(f"s3://{bucket}/")
    report = json.loads(s3.get_object(Bucket=bucket, Key=key.replace(".html", ".json"))["Body"].read())
    html = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return result, report, html


def expected_errors(answers: dict[str, float], y: np.ndarray) -> tuple[float, float]:
    keys = sorted(answers)[1:]  # the first key's label is not a number
    err = np.array([answers[k] for k in keys]) - y[1:]
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))


def test_served_and_labelled_regression_gets_its_errors_and_feature_drift_reported(cloud, diabetes):
    folder, x, y = diabetes
    answers = traffic(cloud, "clean", x)
    result, report, html = label_and_evaluate(cloud, answers, y)
    assert report["task"]["kind"] == "regression" and report["task"]["score"] == "output_0"
    version = report["versions"]["1"]
    assert version["task"] == "regression" and version["predictions"] == len(x)
    assert version["sources"] == {"online": ONLINE, "batch": len(x) - ONLINE}
    assert version["labelled"] == len(x) - 1 and version["bad_labels"] == 1
    assert version["bad_label_examples"][0]["label"] == "n/a" and report["counts"]["bad_labels"] == 1
    mae, rmse = expected_errors(answers, y)
    m = version["metrics"]
    assert m["mae"] == pytest.approx(mae) and m["rmse"] == pytest.approx(rmse) and 0 < m["r2"] < 1
    packaged = json.loads((folder / "manifest.json").read_text())["metrics"]["int8"]
    assert m["rmse"] == pytest.approx(packaged["rmse"], rel=0.05)  # the same rows the packager measured
    assert sum(m["residuals"]["counts"]) == len(x) - 1
    names = [f["name"] for f in version["drift"]["features"]]
    assert names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert version["drift"]["judged"] is True and version["drift"]["drifted_features"] == []
    assert version["prediction_drift"]["output"] == "output_0" and version["prediction_drift"]["drifted"] is False
    assert result["retrain"] is False and report["decision"]["checks"]["baseline_rmse"] == packaged["rmse"]
    assert "<th>RMSE</th>" in html and "residual histogram" in html and "confusion matrix" not in html


def test_shifted_traffic_requests_a_retraining_for_its_errors_and_the_drifted_feature(cloud, diabetes):
    events = Events(cloud)
    _, x, y = diabetes
    shifted = x.copy()
    shifted[:, 2] += 0.15  # bmi: about three standard deviations
    answers = traffic(cloud, "shift", shifted)
    result, report, _ = label_and_evaluate(cloud, answers, y)
    version = report["versions"]["1"]
    assert version["drift"]["drifted_features"] == ["bmi"] and version["drift"]["dataset_drift"] is False
    assert version["metrics"]["rmse"] == pytest.approx(expected_errors(answers, y)[1])
    assert result["retrain"] is True and result["trigger"] == "claimed"
    assert any("above the packaged model's" in r for r in result["reasons"]), result["reasons"]
    [event] = wait_for(events.drain, timeout=10)
    detail = event["detail"]
    assert detail["task"] == "regression" and detail["metrics"]["rmse"] == version["metrics"]["rmse"]
    assert detail["metrics"]["labelled"] == len(x) - 1 and detail["metrics"]["baseline"]["rmse"] > 0


def online(cloud: LocalCloud, prefix: str, x: np.ndarray, y: np.ndarray, chunk: int = 10) -> Counter:
    """Every row by V2 infer in keyed requests of `chunk` rows (the `live` alias picks a version per request), then
    the labels; returns how many rows each model version served."""
    keys = [f"{prefix}-{i:03d}" for i in range(len(x))]
    served = infer_served(cloud, "diabetes", "features", keys, x, chunk)
    status, doc = post(cloud, "/v1/labels", [{"key": k, "label": float(v)} for k, v in zip(keys, y, strict=True)])
    assert (status, doc["stored"]) == (200, len(keys)), doc
    cloud.flush_logs()
    cloud.wait_idle(timeout=30)
    return served


def read_json(cloud: LocalCloud, key: str) -> dict:
    return json.loads(cloud.client("s3").get_object(Bucket=cloud.name("DataBucket"), Key=key)["Body"].read())


def test_shifted_targets_retrain_through_the_entry_point_and_the_better_candidate_is_gated_and_promoted(
    cloud, diabetes
):
    """drop -> batch results -> labels -> evaluation (RMSE) -> retraining through the user's entry point (the
    template's build: `training.retrain`, then `python -m liteserve.promotion gate`) -> canary -> promotion."""
    events = Events(cloud)
    _, x, y = diabetes
    answers = traffic(cloud, "concept", x)  # 300 online, 142 through a batch drop
    result, report, _ = label_and_evaluate(cloud, answers, y + SHIFT, bad_first=False)
    v1_rmse = report["versions"]["1"]["metrics"]["rmse"]
    assert result["retrain"] is True and result["trigger"] == "claimed", result
    [event] = wait_for(events.drain, timeout=10)
    d = event["detail"]
    request = {"model": d["model"], "version": d["version"], "window": d["window"], "report": d["report"]}
    # The RetrainRequested rule's override, plus fewer labelled rows than the default 500: the dataset has 442.
    build = cloud.start_build(
        "RetrainProject", {"RETRAIN_REQUEST": json.dumps(request), "LITESERVE_RETRAIN_MIN_LABELLED": "200"}
    )
    assert build["status"] == "SUCCEEDED", Path(build["log"]).read_text()[-4000:]

    # The gate scored both versions on the candidate's holdout by RMSE and started a canary.
    manifest = read_json(cloud, "models/diabetes/2/manifest.json")
    assert manifest["lineage"]["entry_point"] == ENTRY_POINT and manifest["task"]["kind"] == "regression"
    [gate] = [e for e in read_json(cloud, "models/diabetes/2/promotion.json")["events"] if e["step"] == "gate"]
    n = gate["numbers"]
    print(json.dumps({"gate": {k: n[k] for k in ("live_rmse", "candidate_rmse", "gain")}, "v1_rmse": v1_rmse}))
    assert gate["action"] == "canary", gate
    assert (n["task"], n["metric"], n["live_model_version"]) == ("regression", "rmse", "1")
    assert n["holdout_rows"] == manifest["lineage"]["rows"]["holdout"] > 0
    assert n["candidate_rmse"] < 0.85 * n["live_rmse"] and n["gain"] >= n["margin"] == 0.01
    assert n["holdout"]["live"]["rmse"] == n["live_rmse"] and n["holdout"]["candidate"]["n"] == n["holdout_rows"]
    # The holdout is the window's own rows: v1's RMSE there is of the size the evaluation measured on all of them.
    assert n["live_rmse"] == pytest.approx(v1_rmse, rel=0.25)
    live = read_json(cloud, "models/diabetes/live.json")
    assert live["canary"]["model_version"] == "2" and live["primary"]["model_version"] == "1", live

    # The canary serves about half of the traffic; the next evaluation compares RMSEs since it started: promote.
    served = online(cloud, "canary", x, y + SHIFT)
    assert set(served) == {"1", "2"} and served["2"] >= 100, served
    [summary] = cloud.fire_schedule("EvaluateFunction")
    canary = summary["models"]["diabetes"]["canary"]
    assert (canary["task"], canary["metric"]) == ("regression", "rmse")
    verdict = canary["verdict"]
    print(json.dumps({"served": served, "canary_review": verdict["numbers"], "int8_vs_float": manifest["metrics"]}))
    assert verdict["action"] == "promote", canary
    since = canary["since_canary"]
    assert verdict["numbers"]["canary_rmse"] == since["2"]["rmse"] < since["1"]["rmse"]
    assert verdict["numbers"]["canary_labelled"] == served["2"]
    live = read_json(cloud, "models/diabetes/live.json")
    assert live["primary"]["model_version"] == "2" and live["canary"] is None, live
    assert online(cloud, "after", x[:50], y[:50] + SHIFT) == {"2": 50}
