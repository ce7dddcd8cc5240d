"""Batch files of the examples whose rows name their inputs, on the local cloud serving the packaged examples (a copy
of the checkout whose model layer holds them): the two-input model's JSONL (one field per input) and the diabetes
CSV with its named columns in another order; the two-input model's answers labelled and evaluated by its task."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from localcloud import LocalCloud
from localcloud.checkout import copy_checkout
from tests.integration.conftest import post
from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared' / 'python'}", "TF_CPP_MIN_LOG_LEVEL": "3"}

if not TRAIN_PYTHON.exists():
    pytest.skip("the examples train in .venv-train: run `make train-venv`", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCloud, Path, Path]]:
    """Both examples made and packaged as a user does, served by a local cloud on a copy of the checkout."""
    work = tmp_path_factory.mktemp("examples")
    repo = copy_checkout(ROOT, work / "checkout", ["template.yaml", "layers/model"])
    models = repo / "layers" / "model" / "models"
    for name, source, data in (("diabetes", "saved_model", "data.csv"), ("two_input", "model.keras", "data.npz")):
        subprocess.run([str(TRAIN_PYTHON), str(ROOT / "examples" / name / "train.py"), str(work / name)], env=ENV,
                       check=True, capture_output=True)  # fmt: skip
        extra = ["--label-field", "target"] if name == "diabetes" else []
        cmd = [str(TRAIN_PYTHON), "-m", "liteserve_dev", "package", str(work / name / source), "--data",
               str(work / name / data), *extra, "--name", name.replace("_", "-"), "--out", str(models)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    with LocalCloud(
        repo / "template.yaml", state_dir=work / "localcloud", moto_port=0, api_port=0, schedules=False, concurrency=2
    ) as lc:
        yield lc, work, models


def run_batch(lc: LocalCloud, key: str, body: bytes, model: str) -> tuple[list[dict], list[dict]]:
    """Drop `incoming/<key>`, wait for its run to end; the output rows and the error rows its manifest lists."""
    s3, bucket = lc.client("s3"), lc.name("DataBucket")
    s3.put_object(Bucket=bucket, Key=f"incoming/{key}", Body=body, Metadata={"model": model})
    # The run's manifest marks its end (the status API says SUCCEEDED a moment before the manifest is written).
    deadline, markers = time.monotonic() + 180, []
    while not markers and time.monotonic() < deadline:
        time.sleep(0.5)
        found = s3.list_objects_v2(Bucket=bucket, Prefix=f"results/{key}/_").get("Contents", [])
        markers = [o["Key"].rsplit("/", 1)[1] for o in found]
    assert markers == ["_SUCCESS"], markers

    def lines(kind: str) -> list[dict]:
        done = json.loads(s3.get_object(Bucket=bucket, Key=f"results/{key}/_SUCCESS")["Body"].read())
        uris = done["output"][kind]
        objs = (s3.get_object(Bucket=bucket, Key=u.removeprefix(f"s3://{bucket}/"))["Body"].read() for u in uris)
        return [json.loads(line) for body in objs for line in body.splitlines()]

    return lines("parts"), lines("errors")


def fidelity(models: Path, name: str) -> dict:
    return json.loads((models / name / "manifest.json").read_text())["fidelity"]


def test_two_input_jsonl_one_field_per_input(served) -> None:
    lc, work, models = served
    src = work / "two_input"
    rows, errors = run_batch(lc, "two-input.jsonl", (src / "batch.jsonl").read_bytes(), "two-input")
    assert errors == [] and len(rows) == 600
    ref = np.load(src / "reference.npz")["probabilities"]
    got = np.array([r["probabilities"] for r in sorted(rows, key=lambda r: r["key"])])
    bound = fidelity(models, "two-input")["classification"]["max_abs_prob_delta"] + 1e-6
    assert np.abs(got - ref).max() <= bound


def test_diabetes_csv_columns_in_another_order_map_by_feature_name(served) -> None:
    lc, work, models = served
    src = work / "diabetes"
    header, *lines = (src / "batch.csv").read_text().splitlines()
    order = [0, *range(len(header.split(",")) - 1, 0, -1)]  # key first, then the features reversed

    def reorder(line: str) -> str:
        cells = line.split(",")
        return ",".join(cells[i] for i in order)

    body = "\n".join(reorder(line) for line in [header, *lines]) + "\n"
    rows, errors = run_batch(lc, "diabetes-reversed.csv", body.encode(), "diabetes")
    ref = {k: float(v) for k, v in (line.split(",") for line in (src / "reference.csv").read_text().splitlines()[1:])}
    assert errors == [] and sorted(r["key"] for r in rows) == sorted(ref)
    bound = fidelity(models, "diabetes")["regression"]["max_abs_error"] + 1e-3
    assert max(abs(r["output_0"][0] - ref[r["key"]]) for r in rows) <= bound


def test_two_input_batch_labelled_is_evaluated_as_a_classifier_with_drift_per_input(served) -> None:
    """The two-input example's batch answers, labelled by key, evaluated by its task: accuracy from its own answers
    and a drift verdict for each of its two inputs (image per channel, meta per feature), neither drifted."""
    lc, work, models = served
    src = work / "two_input"
    body = (src / "batch.jsonl").read_bytes().replace(b'"key": "item-', b'"key": "eval-')
    rows, errors = run_batch(lc, "two-input-eval.jsonl", body, "two-input")
    assert errors == [] and len(rows) == 600
    names = json.loads((models / "two-input" / "manifest.json").read_text())["labels"]
    truth = np.load(src / "data.npz")["label"]
    items = [{"key": f"eval-{i:03d}", "label": names[int(c)]} for i, c in enumerate(truth)]
    status, doc = post(lc, "/v1/labels", items)
    assert (status, doc["stored"]) == (200, len(items)), doc
    lc.wait_idle(timeout=30)
    [summary] = lc.fire_schedule("EvaluateFunction")
    result = summary["models"]["two-input"]
    s3, bucket = lc.client("s3"), lc.name("DataBucket")
    key = result["report"].removeprefix(f"s3://{bucket}/").replace(".html", ".json")
    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    version = report["versions"]["1"]
    assert report["task"]["kind"] == "classification" and version["labelled"] == len(items)
    served_ids = {r["key"]: int(np.argmax(r["probabilities"])) for r in rows}
    expected = float(np.mean([served_ids[it["key"]] == names.index(it["label"]) for it in items]))
    assert abs(version["metrics"]["accuracy"] - expected) < 1e-9
    drift = version["drift"]
    assert set(drift["inputs"]) == {"image", "meta"}
    assert drift["drifted_inputs"] == [] and not drift["inputs"]["image"]["dataset_drift"]
    assert result["retrain"] is False
