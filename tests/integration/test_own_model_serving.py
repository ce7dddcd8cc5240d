"""Models packaged by `liteserve-model package` (tests/packaging_models.py: made with TensorFlow outside liteserve's
code) served by the local cloud's HTTP API and batch pipeline, next to the bundled models: the two-input model (an
image [n, 8, 8, 1] and `meta` [n, 3]) keyed in TF Serving row and columnar format and V2 infer within the fidelity
the packager reported; the rank-1 float model as TF Serving answers `instances`, `inputs`, status and metadata; batch
files with several named inputs (JSONL fields, CSV columns in any order) with bad rows reported by line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from liteserve.runtime import ModelRepository

from localcloud import LocalCloud
from tests.integration.conftest import PROJECT_TEMPLATE, auth, post
from tests.integration.test_batch import drop, finished, results
from tests.integration.test_packaging import made, package, summary, two_input  # noqa: F401  (fixtures)
from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def packaged(made: Path, two_input: tuple[Path, dict]) -> Path:  # noqa: F811
    """The packaged two-input, diabetes (regression on named CSV columns) and scalar models in one folder."""
    out, _ = two_input
    src = made / "diabetes"
    summary(package(src / "saved_model", "--data", src / "data.csv", "--label-field", "target", "--name", "diabetes",
                    "--out", out))  # fmt: skip
    src = made / "scalar"
    summary(package(src / "saved_model", "--data", src / "data.jsonl", "--name", "scalar", "--quantize", "none",
                    "--out", out))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def cloud(packaged: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The project's template with a model layer that holds the bundled models and the packaged ones, as after
    `make package-model` (which writes into layers/model/models/)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_TEMPLATE, project / "template.yaml")
    for name in ("functions", "training"):
        (project / name).symlink_to(ROOT / name)
    (project / "layers").mkdir()
    for name in ("runtime", "shared"):
        (project / "layers" / name).symlink_to(ROOT / "layers" / name)
    models = project / "layers" / "model" / "models"
    models.mkdir(parents=True)
    for folder in [*(ROOT / "layers" / "model" / "models").iterdir(), *packaged.iterdir()]:
        (models / folder.name).symlink_to(folder)
    with LocalCloud(
        project / "template.yaml",
        state_dir=tmp_path_factory.mktemp("lc-own-model"),
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=2,
        parameters={"ShardBytes": "65536"},
    ) as lc:
        yield lc


def get(cloud: LocalCloud, path: str) -> dict[str, Any]:
    req = urllib.request.Request(cloud.api_url + path, headers=auth(cloud))
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def ok(answer: tuple[int, dict]) -> dict:
    status, body = answer
    assert status == 200, body
    return body


def test_two_input_model_keyed_in_both_protocols_within_the_reported_fidelity(cloud, made, packaged):  # noqa: F811
    bound = json.loads((packaged / "two-input" / "manifest.json").read_text())["fidelity"]["classification"]
    data, ref = np.load(made / "two_input" / "data.npz"), np.load(made / "two_input" / "reference.npz")
    rows = np.arange(3, 600, 37)
    keys = [f"img-{i}" for i in rows]
    image, meta, want = data["image"][rows], data["meta"][rows], ref["probabilities"][rows]

    def close(probs: Any) -> None:
        probs = np.asarray(probs, dtype=np.float64).reshape(len(rows), 3)
        assert np.abs(probs - want).max() <= bound["max_abs_prob_delta"] + 1e-6
        assert np.mean(probs.argmax(1) == want.argmax(1)) >= bound["top1_agreement"]

    instances = [{"key": k, "image": i, "meta": m} for k, i, m in zip(keys, image, meta, strict=True)]
    answer = ok(post(cloud, "/v1/models/two-input:predict", {"instances": instances}))
    assert [p["key"] for p in answer["predictions"]] == keys
    close([p["probabilities"] for p in answer["predictions"]])

    columnar = {"inputs": {"meta": meta, "key": keys, "image": image}}
    answer = ok(post(cloud, "/v1/models/two-input:predict", columnar))
    assert answer["outputs"]["key"] == keys
    close(answer["outputs"]["probabilities"])

    tensors = [
        {"name": "image", "shape": [len(rows), 8, 8, 1], "datatype": "FP32", "data": image.ravel()},
        {"name": "key", "shape": [len(rows)], "datatype": "BYTES", "data": keys},
        {"name": "meta", "shape": [len(rows), 3], "datatype": "FP32", "data": meta},  # nested data works too
    ]
    answer = ok(post(cloud, "/v2/models/two-input/infer", {"inputs": tensors}))
    out = {t["name"]: t for t in answer["outputs"]}
    assert answer["model_name"] == "two-input" and out["key"]["data"] == keys
    assert out["probabilities"]["shape"] == [len(rows), 3]
    close(out["probabilities"]["data"])

    # the class names, on request, in both protocols; the metadata lists them
    labels = ok(post(cloud, "/v1/models/two-input:predict", {**columnar, "output_filter": ["class_label"]}))
    answer = ok(post(cloud, "/v2/models/two-input/infer", {"inputs": tensors, "outputs": [{"name": "class_label"}]}))
    names = [str(c) for c in np.asarray(out["probabilities"]["data"]).reshape(-1, 3).argmax(1)]
    assert labels["outputs"] == {"key": keys, "class_label": names}
    assert [t["data"] for t in answer["outputs"] if t["name"] == "class_label"] == [names]
    meta_doc = get(cloud, "/v1/models/two-input/metadata")["metadata"]
    assert meta_doc["labels"] == {
        "names": ["0", "1", "2"],
        "output": "class_label",
        "signature": "serving_default",
        "from_output": "probabilities",
    }
    inputs = meta_doc["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert [d["size"] for d in inputs["image"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    v2_meta = get(cloud, "/v2/models/two-input")
    assert {t["name"]: t["shape"] for t in v2_meta["inputs"]} == {"image": [-1, 8, 8, 1], "meta": [-1, 3]}
    assert v2_meta["parameters"]["labels"]["names"] == ["0", "1", "2"]


def scalar_reference(x: np.ndarray) -> np.ndarray:
    """The scalar model of tests/packaging_models.py in numpy (its seeded weights): y = w2 . relu(w1 x + b1) + b2."""
    rng = np.random.default_rng(3)
    w1, b1, w2 = rng.normal(size=(1, 8)), rng.normal(size=(8,)), rng.normal(size=(8, 1))
    return (np.maximum(x[:, None] @ w1 + b1, 0) @ w2).reshape(-1) + 0.5


def test_a_scalar_input_float_model_answers_as_tf_serving_does(cloud, packaged):
    x = [-2.5, -0.5, 0.0, 1.25, 3.0]
    want = scalar_reference(np.asarray(x, dtype=np.float64))

    def close(values: Any) -> None:
        np.testing.assert_allclose(np.asarray(values, dtype=np.float64), want, rtol=1e-5, atol=1e-5)

    answer = ok(post(cloud, "/v1/models/scalar:predict", {"instances": x}))
    assert list(answer) == ["predictions"] and all(isinstance(v, float) for v in answer["predictions"])
    close(answer["predictions"])
    answer = ok(post(cloud, "/v1/models/scalar:predict", {"inputs": x}))
    assert list(answer) == ["outputs"]
    close(answer["outputs"])
    close(ok(post(cloud, "/v1/models/scalar:predict", {"inputs": {"x": x}}))["outputs"])
    keyed = ok(post(cloud, "/v1/models/scalar:predict", {"instances": [{"key": i, "x": v} for i, v in enumerate(x)]}))
    assert [p["key"] for p in keyed["predictions"]] == list(range(len(x)))
    close([p["y"] for p in keyed["predictions"]])
    keyed = ok(post(cloud, "/v1/models/scalar:predict", {"inputs": {"key": list("abcde"), "x": x}}))
    assert keyed["outputs"]["key"] == list("abcde")
    close(keyed["outputs"]["y"])
    status, body = post(cloud, "/v1/models/scalar:predict", {"instances": [1.0, [2.0]]})
    assert status == 400 and "instance 1: input 'x' expected a number, got list" in body["error"]

    version = json.loads((packaged / "scalar" / "manifest.json").read_text())["version"]
    assert get(cloud, "/v1/models/scalar") == {
        "model_version_status": [
            {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    meta = get(cloud, "/v1/models/scalar/metadata")
    assert meta["model_spec"] == {"name": "scalar", "signature_name": "", "version": version}
    assert "labels" not in meta["metadata"]  # a regression model has no class names
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1"]
    assert [d["size"] for d in sig["outputs"]["y"]["tensor_shape"]["dim"]] == ["-1"]
    v2 = ok(
        post(cloud, "/v2/models/scalar/infer", {"inputs": [{"name": "x", "shape": [5], "datatype": "FP32", "data": x}]})
    )
    (y,) = v2["outputs"]
    assert y["name"] == "y" and y["shape"] == [5]
    close(y["data"])


def batch_records(cloud: LocalCloud, model: str) -> list[dict]:
    """The prediction records the batch workers wrote for `model` (continued evaluation reads these)."""
    s3, bucket = cloud.client("s3"), cloud.name("DataBucket")
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="predictions/batch/"):
        for o in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            out += [r for r in map(orjson.loads, body.splitlines()) if r["model"] == model]
    return out


def test_batch_jsonl_with_two_named_inputs(cloud, made, packaged):  # noqa: F811
    bound = json.loads((packaged / "two-input" / "manifest.json").read_text())["fidelity"]["classification"]
    data, ref = np.load(made / "two_input" / "data.npz"), np.load(made / "two_input" / "reference.npz")
    lines, expected = [], {}
    for i in range(0, 600, 5):
        row = {"key": f"r{i}", "image": data["image"][i].tolist(), "meta": data["meta"][i].tolist()}
        if i == 250:
            del row["meta"]  # line 51: a bad row among valid neighbours
        else:
            expected[row["key"]] = ref["probabilities"][i]
        lines.append(orjson.dumps(row))
    lines.append(orjson.dumps({"key": "r-short", "image": data["image"][0].tolist(), "meta": [1.0, 2.0]}))
    drop(cloud, "incoming/two.jsonl", b"\n".join(lines) + b"\n", model="two-input")
    manifest = finished(cloud, "two.jsonl")
    assert manifest["state"] == "SUCCEEDED" and manifest["shards"]["total"] > 1, manifest
    parts, errors = results(cloud, "two.jsonl")
    assert sorted(p["key"] for p in parts) == sorted(expected)
    got = np.asarray([p["probabilities"] for p in parts])
    want = np.asarray([expected[p["key"]] for p in parts])
    assert np.abs(got - want).max() <= bound["max_abs_prob_delta"] + 1e-6
    assert sorted(errors, key=lambda e: e["line"]) == [
        {"line": 51, "key": "r250", "error": "missing input field 'meta'"},
        {"line": 121, "key": "r-short", "error": "input 'meta' expected 3 values, got 2"},
    ]
    records = {r["key"]: r for r in batch_records(cloud, "two-input")}
    assert set(records) == set(expected)
    one = records["r5"]
    assert set(one["inputs"]) == {"image", "meta"} and "x" not in one
    np.testing.assert_allclose(one["inputs"]["meta"], data["meta"][5], rtol=1e-6)
    assert np.asarray(one["inputs"]["image"]).shape == (8, 8, 1)


def test_batch_csv_columns_by_feature_name_in_any_order(cloud, made, packaged):  # noqa: F811
    with open(made / "diabetes" / "data.csv") as f:
        table = list(csv.DictReader(f))
    names = json.loads((packaged / "diabetes" / "manifest.json").read_text())["feature_names"]
    header = ["target", "s6", "key", *reversed(names[:-1])]  # shuffled, with an extra column the model ignores
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(table):
        cells = {**row, "key": f"p{i}"}
        if i == 7:
            cells["bmi"] = "n/a"  # line 9 (the header is line 1)
        writer.writerow([cells[c] for c in header])
    drop(cloud, "incoming/diabetes.csv", out.getvalue().encode(), model="diabetes")
    manifest = finished(cloud, "diabetes.csv")
    assert manifest["state"] == "SUCCEEDED", manifest
    parts, errors = results(cloud, "diabetes.csv")
    assert errors == [{"line": 9, "key": "p7", "error": "input 'features' column 'bmi' is not a number: 'n/a'"}]
    assert len(parts) == len(table) - 1
    model = ModelRepository(packaged).get("diabetes")
    features = np.asarray([[float(table[int(p["key"][1:])][n]) for n in names] for p in parts], dtype=np.float32)
    want = model.predict("serving_default", {"features": features})["output_0"]
    np.testing.assert_allclose(np.asarray([p["output_0"] for p in parts]), want, rtol=1e-6)

    # A header without one of the model's columns fails the job, naming it.
    drop(cloud, "incoming/narrow.csv", b"key,age,sex\nk,1,2\n", model="diabetes")
    failed = finished(cloud, "narrow.csv")
    assert failed["state"] == "FAILED"
    assert "input 'features' needs column(s) ['bmi', 'bp', 's1'" in failed["reasons"][0]
