"""The retraining job end to end: `python -m training.retrain` as a subprocess of the TensorFlow venv against a moto
server over HTTP, on drift-scenario traffic seeded in the shapes the pipeline writes (prediction-log lines shipped
as Firehose objects under predictions/online/, batch records under predictions/batch/, labels in the labels table
through LabelStore). Checks the candidate in the registry, its holdout, its recovery on drifted data, idempotency
per window and the loud failure on too few labelled rows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import orjson
import pytest
from liteserve.evaluation.labels import Label, LabelStore
from liteserve.http import Request, response
from liteserve.predlog import PredictionLog
from liteserve.records import batch_object
from liteserve.runtime import Model, ModelRepository
from liteserve.service import PredictService, ServingConfig

from liteserve_dev.logship import object_key, ship
from liteserve_dev.scenario import Scenario, generate
from tests.support import MODEL_ROOT, ROOT, create_labels_table, http_event
from training.recent import is_holdout
from training.registry import CandidateRegistry, Entry, Plan, plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
BUCKET = "liteserve-data-test"
TABLE = "liteserve-labels-test"
# 10 clean days, then covariate drift (noise, contrast, stroke) growing 0.2 per day: the evaluation asks for a
# retraining on the first drifted days; the job's 168 h window ending with day 11 holds days 5..11.
SCENARIO = Scenario(days=12, drift_start=10, per_day=600)
SEED_FROM_DAY = 4  # day 4 is seeded too: it lies outside the window and must not be used
WINDOW_END = SCENARIO.day_start(12)
WINDOW_ID = "2026-11-13T00:00:00Z"
RECOVERY = 0.95  # the candidate on drifted data vs the current model before the drift


@pytest.fixture(scope="module")
def scenario_days() -> list[dict[str, Any]]:
    from training.data import split

    s = split()
    return generate(s.x_test, s.y_test, SCENARIO)


def serve(service: PredictService, body: dict[str, Any]) -> tuple[Any, str, str]:
    event = http_event("POST", "/v1/models/digits:predict", body)
    result = service.handle(Request.from_event(event))
    return result.served, event["body"], response(result.status, result.document)["body"]


def seed(days: list[dict[str, Any]]) -> dict[str, int]:
    """Write the scenario's predictions (served by the committed model) and labels as the pipeline does."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    create_labels_table(boto3.client("dynamodb"), TABLE)
    models = ModelRepository(MODEL_ROOT)
    service = PredictService(models, ServingConfig(max_instances=1000))
    model = models.get("digits")
    store = LabelStore(TABLE)
    counts = {"online": 0, "batch": 0, "labels": 0, "objects": 0}
    labels_by_hour: dict[float, list[Label]] = {}
    for d in days[SEED_FROM_DAY:]:
        online = np.flatnonzero(~d["batch"])
        hours = (d["times"][online] // 3600) * 3600
        for hour in np.unique(hours):
            lines: list[str] = []
            idx = online[hours == hour]
            for start in range(0, len(idx), 100):
                chunk = idx[start : start + 100]
                body = {"instances": [{"key": d["keys"][i], "x": d["x"][i].tolist()} for i in chunk]}
                served, raw, answer = serve(service, body)
                log = PredictionLog(write=lines.append, clock=lambda t=float(d["times"][chunk[0]]): t)
                log.record(served, "tfserving", raw, answer, f"req-{d['keys'][chunk[0]]}")
                counts["online"] += len(chunk)
            s3.put_object(Bucket=BUCKET, Key=object_key("liteserve-predictions", hour + 600), Body=ship(lines))
            counts["objects"] += 1
        rows = np.flatnonzero(d["batch"])
        created = float(d["times"][rows].max())
        outputs = model.predict("serving_default", {"x": d["x"][rows]})
        key, data = batch_object(
            f"scenario-{d['date']}", 0, created, "digits", model.version, "serving_default",
            [d["keys"][i] for i in rows], {"x": d["x"][rows]}, outputs,
        )  # fmt: skip
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        counts["batch"] += len(rows)
        for i, k in enumerate(d["keys"]):
            arrival = float(d["times"][i]) + SCENARIO.label_delay_hours * 3600
            labels_by_hour.setdefault(arrival // 3600 * 3600 + 1800, []).append(Label(k, str(int(d["y"][i]))))
    for arrival, labels in sorted(labels_by_hour.items()):
        counts["labels"] += store.put_many(labels, source="s3://test/labels/", now=arrival)
    return counts


def run_job(
    env: dict[str, str],
    tmp: Path,
    *flags: str,
    request: dict[str, Any] | None = None,
    model_root: Path = MODEL_ROOT,
) -> tuple[int, str, str]:
    """`python -m training.retrain` in the TensorFlow venv from the repository root, as the build runs it."""
    emit = tmp / "candidate.json"
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **env,
        "PYTHONPATH": f"{ROOT / 'layers' / 'shared' / 'python'}:{ROOT}",
        "LITESERVE_BUCKET": BUCKET,
        "LITESERVE_LABELS_TABLE": TABLE,
        "LITESERVE_MODEL_ROOT": str(model_root),
    }
    if request is not None:
        full["RETRAIN_REQUEST"] = json.dumps(request)
    proc = subprocess.run(
        [str(TRAIN_PYTHON), "-m", "training.retrain", "--emit", str(emit), *flags],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc.returncode, proc.stdout, proc.stderr


def registry_keys() -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="models/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def accuracy(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict("serving_default", {"x": x})["class_id"].reshape(-1) == y))


def test_retraining_job_end_to_end(
    aws_env: dict[str, str], scenario_days: list[dict[str, Any]], tmp_path: Path
) -> None:
    if not TRAIN_PYTHON.exists():
        pytest.skip(f"{TRAIN_PYTHON} is missing (TensorFlow venv): run `make train-venv`")
    seeded = seed(scenario_days)
    request = {
        "model": "digits",
        "version": "1",
        "window": {"id": WINDOW_ID, "start": WINDOW_END - 86400, "end": WINDOW_END},
        "reasons": ["dataset drift: 40 % of features drifted"],
        "metrics": {"accuracy": 0.9},
        "report": f"s3://{BUCKET}/reports/digits/{WINDOW_ID}/report.json",
    }

    rc, out, err = run_job(aws_env, tmp_path, request=request)
    assert rc == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert len(out.strip().splitlines()) == 1
    prefix = "models/digits/2/"
    assert result == {
        "model": "digits",
        "version": "2",
        "prefix": f"s3://{BUCKET}/{prefix}",
        "status": "created",
        "window_id": WINDOW_ID,
    }
    assert json.loads((tmp_path / "candidate.json").read_text()) == result
    assert registry_keys() == [
        prefix + name
        for name in ("claim.json", "float.tflite", "holdout.jsonl", "manifest.json", "metrics.json", "model.tflite")
    ]

    # The candidate: build_model's manifest (same signatures, int8 everywhere) + lineage.
    manifest = json.loads(read(prefix + "manifest.json"))
    current = json.loads((MODEL_ROOT / "digits" / "manifest.json").read_text())
    assert manifest["version"] == "2" and manifest["parent"] == "1"
    assert manifest["signatures"] == current["signatures"]
    assert manifest["quantization"]["all_signatures_int8"] is True
    lineage = manifest["lineage"]
    assert lineage["parent_version"] == "1" and lineage["report"] == request["report"] and lineage["request"] == request
    assert (lineage["window"]["start"], lineage["window"]["end"]) == (WINDOW_END - 168 * 3600, WINDOW_END)
    rows = lineage["rows"]
    window_keys = [k for d in scenario_days[5:12] for k in d["keys"]]  # days 5..11: the 168 h window
    assert rows["recent_labelled"] == len(window_keys)  # every prediction in the window has its label
    assert rows["prediction_log"]["outside_window"] > 0  # day 4's last hour folder is read, its records left out
    assert rows["holdout"] == sum(is_holdout(k) for k in window_keys)
    assert rows["recent_train"] == len(window_keys) - rows["holdout"]
    assert rows["train_total"] == rows["original_train"] + rows["oversample_factor"] * rows["recent_train"]
    assert manifest["training_stats"]["n"] == rows["train_total"]  # the drift baseline is what it trained on

    # The holdout: exactly the window's keys with sha256(key) % 5 == 0, with their true labels and served inputs.
    truth = {k: (d["x"][i], int(d["y"][i]), d["severity"]) for d in scenario_days for i, k in enumerate(d["keys"])}
    holdout = [orjson.loads(line) for line in read(prefix + "holdout.jsonl").splitlines()]
    assert sorted(h["key"] for h in holdout) == sorted(k for k in window_keys if is_holdout(k))
    assert all(h["label"] == str(truth[h["key"]][1]) for h in holdout)
    assert all(np.allclose(h["x"], truth[h["key"]][0]) for h in holdout)

    # Recovery on drifted data, measured here with the serving runtime (not taken from the job's own numbers).
    cand_dir = tmp_path / "candidate" / "digits"
    cand_dir.mkdir(parents=True)
    for name in ("manifest.json", "model.tflite"):
        (cand_dir / name).write_bytes(read(prefix + name))
    candidate, before = Model(cand_dir), Model(MODEL_ROOT / "digits")
    clean = [d for d in scenario_days if d["severity"] == 0]
    pre_drift = accuracy(before, np.concatenate([d["x"] for d in clean]), np.concatenate([d["y"] for d in clean]))
    drifted = [h for h in holdout if truth[h["key"]][2] > 0]
    hx = np.asarray([h["x"] for h in drifted], dtype=np.float32)
    hy = np.asarray([int(h["label"]) for h in drifted])
    numbers = {
        "pre_drift_accuracy_current": pre_drift,
        "drifted_holdout_rows": len(drifted),
        "current_on_drifted_holdout": accuracy(before, hx, hy),
        "candidate_on_drifted_holdout": accuracy(candidate, hx, hy),
        "seeded": seeded,
        "rows": rows,
    }
    numbers["recovery"] = numbers["candidate_on_drifted_holdout"] / pre_drift
    print(json.dumps(numbers))
    assert len(drifted) >= 150
    assert numbers["candidate_on_drifted_holdout"] >= RECOVERY * pre_drift, numbers
    assert numbers["candidate_on_drifted_holdout"] > numbers["current_on_drifted_holdout"], numbers
    metrics = json.loads(read(prefix + "metrics.json"))
    assert metrics["candidate"]["holdout"]["n"] == len(holdout)
    assert metrics["parent"]["version"] == "1" and metrics["parent"]["holdout"]["n"] == len(holdout)
    assert metrics["candidate"]["holdout"]["accuracy"] > metrics["parent"]["holdout"]["accuracy"]

    # The same request again (a duplicate delivery, a retried build): the candidate is found, nothing new written.
    before_keys = {k: boto3.client("s3").head_object(Bucket=BUCKET, Key=k)["ETag"] for k in registry_keys()}
    rc, out, err = run_job(aws_env, tmp_path, request=request)
    assert rc == 0, err[-3000:]
    assert json.loads(out) == {**result, "status": "exists"}
    assert {k: boto3.client("s3").head_object(Bucket=BUCKET, Key=k)["ETag"] for k in registry_keys()} == before_keys

    # A window with too few labelled predictions fails loudly and claims no version.
    early = str(SCENARIO.day_start(SEED_FROM_DAY))
    rc, out, err = run_job(aws_env, tmp_path, "--model", "digits", "--parent", "2", "--window-end", early)
    assert rc == 1 and out == ""
    assert "only 0 labelled predictions of digits" in err and "at least 500 are needed" in err
    assert all(k.startswith(prefix) for k in registry_keys())


def test_version_claims_are_exclusive_and_the_manifest_completes_a_candidate(aws_env: dict[str, str]) -> None:
    """Two builds racing for a number: S3's conditional put (If-None-Match: *) lets exactly one claim it."""
    bucket = "liteserve-registry-claims"
    boto3.client("s3").create_bucket(Bucket=bucket)
    registry = CandidateRegistry(bucket, "digits")
    assert registry.claim("2", {"window_id": "w1"}) is True
    assert registry.claim("2", {"window_id": "w2"}) is False  # the loser must plan again
    assert registry.read_json("2", "claim.json") == {"window_id": "w1"}
    assert registry.entries() == [Entry("2", "w1", False)]
    registry.write("2", {"manifest.json": b"{}", "model.tflite": b"m", "holdout.jsonl": b""})
    assert registry.entries() == [Entry("2", "w1", True)]
    assert plan(registry.entries(), "w1", "1") == Plan("exists", "2")
    assert plan(registry.entries(), "w2", "1") == Plan("create", "3")
