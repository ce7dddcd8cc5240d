"""`liteserve-model package` on real small models made with TensorFlow (tests/packaging_models.py), run as the user
runs it: a subprocess of the training venv (`make package-model` once). The packaged two-input model is then served
through the runtime and answers TF Serving and V2 requests within the fidelity the packager reported."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from liteserve.http import Request
from liteserve.runtime import ModelRepository
from liteserve.service import PredictService, ServingConfig

from tests.support import ROOT, http_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared' / 'python'}", "TF_CPP_MIN_LOG_LEVEL": "3"}

if not TRAIN_PYTHON.exists():
    pytest.skip("packaging with TensorFlow runs in .venv-train: run `make train-venv`", allow_module_level=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("made")
    subprocess.run([str(TRAIN_PYTHON), "-m", "tests.packaging_models", str(out)], cwd=ROOT, env=ENV, check=True)
    return out


def package(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(TRAIN_PYTHON), "-m", "liteserve_dev", "package", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("liteserve-model: error: ")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def two_input(made: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("models")
    src = made / "two_input"
    s = summary(package(src / "model.keras", "--data", src / "data.npz", "--name", "two-input", "--out", out))
    return out, s


def test_two_input_keras_model_is_int8_in_every_signature_with_a_baseline_per_input(two_input) -> None:
    out, s = two_input
    m = manifest(out / "two-input")
    assert s["task"] == "classification" and s["quantization"] == "int8 full-integer" and s["all_signatures_int8"]
    assert m["signatures"]["serving_default"]["inputs"] == {
        "image": {"dtype": "float32", "shape": [-1, 8, 8, 1]},
        "meta": {"dtype": "float32", "shape": [-1, 3]},
    }
    assert m["task"]["probabilities"] == "probabilities" and m["labels"] == ["0", "1", "2"]
    fid = m["fidelity"]["classification"]
    assert fid["top1_agreement"] >= 0.99 and fid["max_abs_prob_delta"] <= 0.1
    assert m["metrics"]["int8"]["accuracy"] > 0.9  # labelled data: the task metrics of source and package
    image, meta = m["baseline"]["inputs"]["image"], m["baseline"]["inputs"]["meta"]
    assert image["kind"] == "tensor" and len(image["channels"]) == 1 and image["summary"]["max"] <= 1.0
    assert [f["name"] for f in meta["features"]] == ["meta_0", "meta_1", "meta_2"]
    assert m["baseline"]["outputs"]["serving_default"]["probabilities"]["kind"] == "columns"
    assert m["training_stats"]["label_source"] == "labels" and sum(m["training_stats"]["label_counts"]) == 600


def test_the_packaged_model_is_served_within_the_reported_fidelity(made: Path, two_input) -> None:
    out, s = two_input
    bound = s["fidelity"]["max_abs_prob_delta"]
    data, ref = np.load(made / "two_input" / "data.npz"), np.load(made / "two_input" / "reference.npz")
    rows = np.arange(0, 600, 40)
    service = PredictService(ModelRepository(out), ServingConfig(max_instances=100))

    def post(path: str, body: dict) -> dict:
        result = service.dispatch(Request.from_event(http_event("POST", path, body)))
        assert result.status == 200, result.document
        return result.document

    instances = [{"image": data["image"][i].tolist(), "meta": data["meta"][i].tolist()} for i in rows]
    tf_answer = post("/v1/models/two-input:predict", {"instances": instances})
    tf_probs = np.array([p["probabilities"] if isinstance(p, dict) else p for p in tf_answer["predictions"]])
    v2_answer = post(
        "/v2/models/two-input/infer",
        {
            "inputs": [
                {"name": "image", "shape": [len(rows), 8, 8, 1], "datatype": "FP32",
                 "data": data["image"][rows].ravel().tolist()},
                {"name": "meta", "shape": [len(rows), 3], "datatype": "FP32",
                 "data": data["meta"][rows].ravel().tolist()},
            ]
        },
    )  # fmt: skip
    (v2_out,) = v2_answer["outputs"]
    v2_probs = np.array(v2_out["data"], dtype=np.float64).reshape(v2_out["shape"])
    for probs in (tf_probs, v2_probs):
        assert probs.shape == (len(rows), 3)
        assert np.abs(probs - ref["probabilities"][rows]).max() <= bound + 1e-6


def test_regression_mlp_on_named_csv_columns(made: Path, tmp_path: Path) -> None:
    src = made / "diabetes"
    s = summary(
        package(src / "saved_model", "--data", src / "data.csv", "--label-field", "target", "--name", "diabetes",
                "--version", "2", "--out", tmp_path)
    )  # fmt: skip
    m = manifest(tmp_path / "diabetes")
    assert s["task"] == "regression" and m["task"]["score"] == "output_0" and m["labels"] == []
    assert m["feature_names"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert [f["name"] for f in m["training_stats"]["features"]] == m["feature_names"]
    assert m["quantization"]["all_signatures_int8"] and m["fidelity"]["regression"]["max_rel_error"] <= 0.05
    assert m["metrics"]["int8"]["mae"] == pytest.approx(m["metrics"]["float"]["mae"], rel=0.05)
    assert ModelRepository(tmp_path).get("diabetes").version == "2"


@pytest.mark.parametrize(
    ("quantize", "kind"), [("float16", "float16 weights"), ("dynamic", "dynamic-range int8 weights")]
)
def test_other_quantizations_are_recorded_and_checked(made: Path, tmp_path: Path, quantize: str, kind: str) -> None:
    src = made / "diabetes"
    s = summary(
        package(src / "saved_model", "--data", src / "data.csv", "--label-field", "target", "--name", "d",
                "--quantize", quantize, "--out", tmp_path)
    )  # fmt: skip
    m = manifest(tmp_path / "d")
    assert m["quantization"] == {"type": kind, "io": "float32", "all_signatures_int8": False}
    assert set(m["metrics"]) == {"float", quantize} and s["fidelity"]["max_rel_error"] <= 0.05
    assert m["build"]["size_bytes"] == (tmp_path / "d" / "model.tflite").stat().st_size


def test_scalar_input_float_model_through_make(made: Path, tmp_path: Path) -> None:
    src = made / "scalar"
    args = f"{src / 'saved_model'} --data {src / 'data.jsonl'} --name scalar --quantize none --out {tmp_path}"
    proc = subprocess.run(
        ["make", "--no-print-directory", "package-model", f"ARGS={args}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    s = summary(proc)
    m = manifest(tmp_path / "scalar")
    assert m["signatures"]["serving_default"]["inputs"] == {"x": {"dtype": "float32", "shape": [-1]}}
    assert s["task"] == "regression" and m["quantization"]["type"] == "float" and not s["all_signatures_int8"]
    assert m["fidelity"]["regression"]["max_rel_error"] < 1e-5 and m["feature_names"] == ["x"]
    model = ModelRepository(tmp_path).get("scalar")
    y = model.predict("serving_default", {"x": np.array([0.0, 1.0], dtype=np.float32)})["y"]
    assert y.shape == (2,) and np.isfinite(y).all()


def test_every_signature_is_calibrated_and_int8_and_signatures_can_be_left_out(made: Path, tmp_path: Path) -> None:
    src = made / "two_signatures"
    base = (src / "saved_model", "--data", src / "data.npz", "--max-rel-error", "0.2")
    s = summary(package(*base, "--name", "both", "--out", tmp_path))
    m = manifest(tmp_path / "both")
    assert s["all_signatures_int8"] and sorted(m["signatures"]) == ["hidden", "serving_default"]
    assert m["task"] == {**m["task"], "kind": "regression", "signature": "serving_default", "score": "score"}
    assert m["fidelity"]["outputs"]["hidden"]["h"] <= 0.1  # the other signature's output, checked too
    assert m["baseline"]["outputs"]["hidden"]["h"]["kind"] == "columns"
    summary(package(*base, "--name", "one", "--signatures", "serving_default", "--out", tmp_path))
    assert list(manifest(tmp_path / "one")["signatures"]) == ["serving_default"]
    served = ModelRepository(tmp_path).get("both").predict("hidden", {"x": np.ones((2, 4), np.float32)})
    assert served["h"].shape == (2, 8)
    # The converter keeps one signature of this tf.Module: refused with the reason, not served half-converted.
    line = error_line(package(src / "module", "--data", src / "data.npz", "--name", "mod", "--out", tmp_path))
    assert "the TF Lite converter dropped signature(s) ['hidden'] of this SavedModel" in line
    assert not (tmp_path / "mod").exists()


def test_an_existing_float_tflite_is_packaged_as_supplied(made: Path, tmp_path: Path) -> None:
    src = made / "float_tflite"
    s = summary(package(src / "model.tflite", "--data", src / "data.npz", "--name", "fl", "--out", tmp_path))
    assert s["quantization"] == "as supplied" and s["fidelity"]["max_rel_error"] == 0.0
    assert (tmp_path / "fl" / "model.tflite").read_bytes() == (src / "model.tflite").read_bytes()


def test_refusals_name_the_numbers_and_write_nothing(made: Path, tmp_path: Path) -> None:
    src = made / "two_input"
    strict = package(src / "model.keras", "--data", src / "data.npz", "--name", "m", "--out", tmp_path,
                     "--max-prob-delta", "0.0001")  # fmt: skip
    line = error_line(strict)
    assert "not faithful to its source on 600 rows: max |Δprob|" in line and "(bound <= 0.0001)" in line
    data = dict(np.load(src / "data.npz"))
    data["meta"] = data["meta"][:, :2]
    np.savez(tmp_path / "narrow.npz", **data)
    narrow = package(src / "model.keras", "--data", tmp_path / "narrow.npz", "--name", "m", "--out", tmp_path)
    assert "input 'meta' has shape [600, 2]; signature 'serving_default' expects [n, 3]" in error_line(narrow)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.npz"]
