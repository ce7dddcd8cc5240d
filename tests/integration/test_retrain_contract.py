"""The retraining contract on a model made outside the digits code: the diabetes regression MLP of
tests/packaging_models.py is packaged with `liteserve-model package ... --retrain
examples.diabetes.train:retrain --retrain-data s3://...`, its batch predictions are labelled with shifted
targets (concept drift), and `python -m training.retrain` (a subprocess of the TensorFlow venv against a moto server
over HTTP, as the build runs it) retrains it through its entry point into a registry candidate packaged like the
original."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import numpy as np
import orjson
import pytest
from liteserve.evaluation.labels import Label, LabelStore
from liteserve.manifest_schema import check
from liteserve.records import batch_object
from liteserve.runtime import Model

from tests.integration.test_retrain import TRAIN_PYTHON, run_job
from tests.support import ROOT, create_labels_table
from training.recent import is_holdout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET, TABLE = "liteserve-contract-data", "liteserve-contract-labels"
TWO_INPUT_TABLE = "liteserve-contract-two-input-labels"  # moto is shared by the module: one table per test
DATA_KEY = "training/diabetes/data.csv"
ENTRY_POINT = "examples.diabetes.train:retrain"
SHIFT = 100.0  # recent targets run this much above the training data's
WINDOW_END = 1_794_441_600.0  # 2026-11-17T00:00:00Z
ENV = {"PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared' / 'python'}", "TF_CPP_MIN_LOG_LEVEL": "3"}

if not TRAIN_PYTHON.exists():
    pytest.skip("the retraining job runs in .venv-train: run `make train-venv`", allow_module_level=True)


def train_python(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **ENV}
    return subprocess.run(
        [str(TRAIN_PYTHON), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def read(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_a_packaged_regression_model_is_retrained_through_its_entry_point(aws_env, tmp_path: Path) -> None:
    made, models = tmp_path / "made", tmp_path / "models"
    proc = train_python(
        "-c", f"from tests.packaging_models import diabetes; diabetes(__import__('pathlib').Path({str(made)!r}))"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(made / "data.csv"), BUCKET, DATA_KEY)  # the declared training data lives in S3
    proc = train_python(
        "-m", "liteserve_dev", "package", str(made / "saved_model"), "--data", str(made / "data.csv"),
        "--label-field", "target", "--name", "diabetes", "--out", str(models),
        "--retrain", ENTRY_POINT, "--retrain-data", f"s3://{BUCKET}/{DATA_KEY}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = json.loads((models / "diabetes" / "manifest.json").read_text())
    assert parent["retrain"] == {
        "entry_point": ENTRY_POINT,
        "data": f"s3://{BUCKET}/{DATA_KEY}",
        "label_field": "target",
    }
    assert parent["task"]["kind"] == "regression"

    # The window: every diabetes row predicted in batch by version 1 a day before the window's end, labelled later
    # with targets shifted by SHIFT.
    table = np.loadtxt(made / "data.csv", delimiter=",", skiprows=1, dtype=np.float32)
    x, target = table[:, :-1], table[:, -1]
    keys = [f"patient-{i:04d}" for i in range(len(x))]
    served = Model(models / "diabetes")
    key, body = batch_object(
        "diabetes-drop", 0, WINDOW_END - 86400, "diabetes", "1", "serving_default", keys, {"features": x},
        served.predict("serving_default", {"features": x}),
    )  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    create_labels_table(boto3.client("dynamodb"), TABLE)
    labels = [Label(k, f"{t + SHIFT:g}") for k, t in zip(keys, target, strict=True)]
    LabelStore(TABLE).put_many(labels, source="s3://test/labels/", now=WINDOW_END - 3600)

    request = {"model": "diabetes", "version": "1", "window": {"id": "diabetes-w1", "end": WINDOW_END}}
    flags = ("--bucket", BUCKET, "--labels-table", TABLE, "--min-labelled", "200")
    rc, out, err = run_job(aws_env, tmp_path, *flags, request=request, model_root=models)
    assert rc == 0, err[-3000:]
    assert json.loads(out) == {
        "model": "diabetes",
        "version": "2",
        "prefix": f"s3://{BUCKET}/models/diabetes/2/",
        "status": "created",
        "window_id": "diabetes-w1",
    }
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="models/diabetes/2/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == sorted(
        ["claim.json", "float.tflite", "holdout.jsonl", "manifest.json", "metrics.json", "model.tflite"]
    )

    # Packaged as `liteserve-model package` packages: same signatures, task, quantization, a valid manifest that
    # carries the declaration on to the next retraining.
    manifest = json.loads(read("models/diabetes/2/manifest.json"))
    check(manifest)
    assert (manifest["name"], manifest["version"], manifest["parent"]) == ("diabetes", "2", "1")
    for field in ("signatures", "task", "feature_names", "retrain"):
        assert manifest[field] == parent[field], field
    assert manifest["quantization"]["type"] == parent["quantization"]["type"] == "int8 full-integer"
    assert manifest["fidelity"]["regression"]["max_rel_error"] <= manifest["fidelity"]["bounds"]["max_rel_error"]
    holdout_keys = [k for k in keys if is_holdout(k)]
    rows = manifest["lineage"]["rows"]
    assert manifest["lineage"]["entry_point"] == ENTRY_POINT
    assert (rows["original_train"], rows["recent_labelled"], rows["holdout"]) == (len(x), len(x), len(holdout_keys))
    assert manifest["training_stats"]["n"] == rows["train_total"] == len(x) + len(x) - len(holdout_keys)

    # The holdout: the window's keys with sha256(key) % 5 == 0, their served inputs and the labels as received.
    holdout = [orjson.loads(line) for line in read("models/diabetes/2/holdout.jsonl").splitlines()]
    index = {k: i for i, k in enumerate(keys)}
    assert sorted(h["key"] for h in holdout) == sorted(holdout_keys)
    assert all(np.allclose(h["x"], x[index[h["key"]]]) for h in holdout)
    assert all(abs(float(h["label"]) - (target[index[h["key"]]] + SHIFT)) < 1e-3 for h in holdout)

    # The candidate, served by the runtime, follows the shifted targets better than version 1 on the holdout.
    cand = tmp_path / "candidate" / "diabetes"
    cand.mkdir(parents=True)
    for name in ("manifest.json", "model.tflite"):
        (cand / name).write_bytes(read(f"models/diabetes/2/{name}"))
    hx = np.asarray([h["x"] for h in holdout], dtype=np.float32)
    hy = np.asarray([float(h["label"]) for h in holdout])
    mae = {
        name: float(np.mean(np.abs(m.predict("serving_default", {"features": hx})["output_0"].reshape(-1) - hy)))
        for name, m in (("parent", served), ("candidate", Model(cand)))
    }
    metrics = json.loads(read("models/diabetes/2/metrics.json"))
    print(json.dumps({"holdout_mae": mae, "job": metrics["candidate"]["holdout"]}))
    assert mae["candidate"] < 0.85 * mae["parent"], mae
    assert metrics["candidate"]["holdout"]["n"] == len(holdout)
    assert abs(metrics["candidate"]["holdout"]["mae"] - mae["candidate"]) < 1e-3
    assert abs(metrics["parent"]["holdout"]["mae"] - mae["parent"]) < 1e-3


def test_a_two_input_classifier_is_retrained_through_its_entry_point(aws_env, tmp_path: Path) -> None:
    """The rank-4 + flat two-input example: its window rows are joined by key with both inputs, the entry point
    gets them by input name, and the candidate keeps the parent's signatures and answers as well on the holdout."""
    made, models = tmp_path / "made", tmp_path / "models"
    proc = train_python("examples/two_input/train.py", str(made))
    assert proc.returncode == 0, proc.stderr[-3000:]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    data_key = "training/two_input/data.npz"
    s3.upload_file(str(made / "data.npz"), BUCKET, data_key)
    entry = "examples.two_input.train:retrain"
    proc = train_python(
        "-m", "liteserve_dev", "package", str(made / "model.keras"), "--data", str(made / "data.npz"),
        "--label-field", "label", "--name", "two_input", "--out", str(models),
        "--retrain", entry, "--retrain-data", f"s3://{BUCKET}/{data_key}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = json.loads((models / "two_input" / "manifest.json").read_text())
    assert parent["task"]["kind"] == "classification" and parent["retrain"]["entry_point"] == entry

    data = np.load(made / "data.npz")
    inputs = {"image": data["image"], "meta": data["meta"]}
    keys = [f"item-{i:03d}" for i in range(len(data["label"]))]
    served = Model(models / "two_input")
    key, body = batch_object(
        "two-input-drop", 0, WINDOW_END - 86400, "two_input", "1", "serving_default", keys, inputs,
        served.predict("serving_default", inputs),
    )  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    create_labels_table(boto3.client("dynamodb"), TWO_INPUT_TABLE)
    names = parent["labels"]
    LabelStore(TWO_INPUT_TABLE).put_many(
        [Label(k, names[int(c)]) for k, c in zip(keys, data["label"], strict=True)],
        source="s3://test/labels/",
        now=WINDOW_END - 3600,
    )
    request = {"model": "two_input", "version": "1", "window": {"id": "two-input-w1", "end": WINDOW_END}}
    flags = ("--bucket", BUCKET, "--labels-table", TWO_INPUT_TABLE, "--min-labelled", "200")
    rc, out, err = run_job(aws_env, tmp_path, *flags, request=request, model_root=models)
    assert rc == 0, err[-3000:]
    assert json.loads(out)["version"] == "2"
    manifest = json.loads(read("models/two_input/2/manifest.json"))
    check(manifest)
    assert manifest["signatures"] == parent["signatures"] and manifest["lineage"]["entry_point"] == entry
    holdout = [orjson.loads(line) for line in read("models/two_input/2/holdout.jsonl").splitlines()]
    index = {k: i for i, k in enumerate(keys)}
    assert sorted(h["key"] for h in holdout) == sorted(k for k in keys if is_holdout(k))
    for h in holdout:  # both inputs, joined by key, exactly as served
        i = index[h["key"]]
        assert np.allclose(h["inputs"]["image"], data["image"][i]) and np.allclose(h["inputs"]["meta"], data["meta"][i])
    cand = tmp_path / "candidate" / "two_input"
    cand.mkdir(parents=True)
    for name in ("manifest.json", "model.tflite"):
        (cand / name).write_bytes(read(f"models/two_input/2/{name}"))
    hx = {n: np.asarray([h["inputs"][n] for h in holdout], dtype=np.float32) for n in ("image", "meta")}
    hy = np.asarray([names.index(h["label"]) for h in holdout])
    acc = {
        name: float(np.mean(m.predict("serving_default", hx)["probabilities"].argmax(axis=1) == hy))
        for name, m in (("parent", served), ("candidate", Model(cand)))
    }
    print(json.dumps({"holdout_accuracy": acc}))
    assert acc["candidate"] >= acc["parent"] - 0.05, acc
