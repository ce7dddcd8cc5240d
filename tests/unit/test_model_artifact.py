"""The committed int8 models, checked against their manifests and the held-out digits split (no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from liteserve.manifest import Manifest

from training import data
from training.specs import SPECS

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "layers" / "model" / "models"
FLOATS = ROOT / "training" / "artifacts"
NAMES = sorted(SPECS)


@cache
def manifest(name: str) -> dict[str, Any]:
    return json.loads((MODELS / name / "manifest.json").read_text())


def interpreter(path: Path) -> Interpreter:
    return Interpreter(model_path=str(path), num_threads=1)


@cache
def held_out() -> data.Split:
    return data.split()


def run(interp: Interpreter, signature: str, x: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in interp.get_signature_runner(signature)(x=x).items()}


@cache
def outputs(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(int8 serving outputs, float serving outputs, int8 embedding) on the whole held-out split."""
    x = held_out().x_test
    i8 = interpreter(MODELS / name / "model.tflite")
    fl = interpreter(FLOATS / name / "float.tflite")
    return run(i8, "serving_default", x), run(fl, "serving_default", x), run(i8, "embedding", x)["embedding"]


def non_int8_kernels(interp: Interpreter) -> dict[str, list[str]]:
    """Per signature: float32 tensors other than its own inputs/outputs, and constant 2-D weights that are not int8."""
    found: dict[str, list[str]] = {}
    for key in interp.get_signature_list():
        runner = interp.get_signature_runner(key)
        io = {d["index"] for d in [*runner.get_input_details().values(), *runner.get_output_details().values()]}
        bad, weights = [], 0
        for t in interp.get_tensor_details(runner._subgraph_index):
            if t["index"] in io:
                continue
            shape = [int(s) for s in t["shape_signature"]]
            if t["dtype"] == np.float32:
                bad.append(t["name"])
            if len(shape) == 2 and min(shape) > 0:
                weights += 1
                if t["dtype"] != np.int8:
                    bad.append(t["name"])
        found[key] = bad if weights else ["<no weights found>"]
    return found


@pytest.mark.parametrize("name", NAMES)
def test_sha256_and_file_match_manifest(name: str) -> None:
    m = manifest(name)
    assert m["name"] == name and m["file"] == "model.tflite"
    assert hashlib.sha256((MODELS / name / m["file"]).read_bytes()).hexdigest() == m["sha256"]
    # The float reference used below is the one produced by the same build.
    assert hashlib.sha256((FLOATS / name / "float.tflite").read_bytes()).hexdigest() == m["float_reference"]["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_signatures_match_interpreter_and_convention(name: str) -> None:
    m = manifest(name)
    interp = interpreter(MODELS / name / "model.tflite")
    assert set(interp.get_signature_list()) == set(m["signatures"]) == {"serving_default", "embedding"}
    for key, sig in m["signatures"].items():
        runner = interp.get_signature_runner(key)
        for side, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
            got = {
                n: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape_signature"]]}
                for n, d in details.items()
            }
            assert got == sig[side], (key, side)
    x = {"x": {"dtype": "float32", "shape": [-1, 64]}}
    sd, emb = m["signatures"]["serving_default"], m["signatures"]["embedding"]
    assert sd["inputs"] == x and emb["inputs"] == x
    assert sd["outputs"]["probabilities"] == {"dtype": "float32", "shape": [-1, 10]}
    assert sd["outputs"]["class_id"]["shape"] == [-1] and sd["outputs"]["class_id"]["dtype"].startswith("int")
    assert emb["outputs"]["embedding"]["dtype"] == "float32"
    assert emb["outputs"]["embedding"]["shape"] == [-1, m["architecture"]["hidden"][-1]]
    assert m["labels"] == [str(i) for i in range(10)]
    assert m["feature_names"] == data.FEATURE_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_signature_is_int8(name: str) -> None:
    assert manifest(name)["quantization"] == {"type": "int8 full-integer", "io": "float32", "all_signatures_int8": True}
    assert non_int8_kernels(interpreter(MODELS / name / "model.tflite")) == {"serving_default": [], "embedding": []}


@pytest.mark.parametrize("name", NAMES)
def test_kernel_check_rejects_the_float_model(name: str) -> None:
    found = non_int8_kernels(interpreter(FLOATS / name / "float.tflite"))
    assert all(found[k] for k in ("serving_default", "embedding")), found


@pytest.mark.parametrize("name", NAMES)
def test_int8_fidelity_on_held_out_split(name: str) -> None:
    y = held_out().y_test
    out8, outf, _ = outputs(name)
    acc8, accf = data.accuracy(out8["probabilities"], y), data.accuracy(outf["probabilities"], y)
    agreement = float(np.mean(np.argmax(out8["probabilities"], 1) == np.argmax(outf["probabilities"], 1)))
    assert abs(accf - acc8) <= 0.005 + 1e-12, (accf, acc8)
    assert agreement >= 0.99
    m = manifest(name)["metrics"]
    assert acc8 == pytest.approx(m["int8"]["accuracy"]) and accf == pytest.approx(m["float"]["accuracy"])
    assert agreement == pytest.approx(m["int8"]["argmax_agreement"])
    assert data.log_loss(out8["probabilities"], y) == pytest.approx(m["int8"]["log_loss"], rel=1e-3)
    np.testing.assert_array_equal(out8["class_id"], np.argmax(out8["probabilities"], 1))
    np.testing.assert_allclose(out8["probabilities"].sum(1), 1.0, atol=0.05)


@pytest.mark.parametrize("name", NAMES)
def test_embedding_shape_and_batch_resizing(name: str) -> None:
    _, _, emb = outputs(name)
    width = manifest(name)["signatures"]["embedding"]["outputs"]["embedding"]["shape"][1]
    assert emb.shape == (len(held_out().y_test), width) and emb.dtype == np.float32
    assert np.isfinite(emb).all() and (emb >= 0).all() and emb.std() > 0  # ReLU activations, not constant
    interp = interpreter(MODELS / name / "model.tflite")
    x = held_out().x_test
    for n in (1, 7):
        np.testing.assert_array_equal(run(interp, "embedding", x[:n])["embedding"], emb[:n])


@pytest.mark.parametrize("name", NAMES)
def test_data_block_and_training_stats_reproduce(name: str) -> None:
    m, s = manifest(name), held_out()
    assert m["data"] == data.data_info(s)
    stats = data.training_stats(s.x_train, s.y_train)
    assert m["training_stats"]["n"] == stats["n"] == len(s.y_train)
    assert m["training_stats"]["label_counts"] == stats["label_counts"]
    assert len(m["training_stats"]["features"]) == 64
    for got, want in zip(m["training_stats"]["features"], stats["features"], strict=True):
        assert got["name"] == want["name"]
        assert got["histogram"] == want["histogram"]
        assert sum(got["histogram"]["counts"]) == stats["n"]
        for k in ("mean", "std", "min", "max"):
            assert got[k] == pytest.approx(want[k])
        assert got["quantiles"] == pytest.approx(want["quantiles"])


@pytest.mark.parametrize("name", NAMES)
def test_calibration_table_reproduces(name: str) -> None:
    table = manifest(name)["calibration"]
    out8, _, _ = outputs(name)
    y = held_out().y_test
    want = data.calibration(out8["probabilities"], y, [r["threshold"] for r in table])
    for got_row, want_row in zip(table, want, strict=True):
        assert got_row["accepted"] == want_row["accepted"]
        assert got_row["accepted_accuracy"] == pytest.approx(want_row["accepted_accuracy"])
        assert got_row["escalation_rate"] == pytest.approx(want_row["escalation_rate"])
    rates = [r["escalation_rate"] for r in table]
    assert rates == sorted(rates) and table[0]["escalation_rate"] == 0.0


def test_edge_model_is_smallest_and_cloud_most_accurate() -> None:
    size = {n: (MODELS / n / "model.tflite").stat().st_size for n in NAMES}
    assert size["digits-edge"] < 8 * 1024 and size["digits-edge"] == min(size.values())
    accuracy = {n: manifest(n)["metrics"]["int8"]["accuracy"] for n in NAMES}
    assert accuracy["digits-cloud"] == max(accuracy.values())


def test_a_manifest_with_nan_still_loads(tmp_path):
    # training writes manifests with Python's json, which spells a NaN statistic `NaN`; orjson alone refuses that
    source = MODELS / "digits" / "manifest.json"
    raw = json.loads(source.read_text())
    raw["training_stats"] = {"note": float("nan")}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    loaded = Manifest.load(tmp_path / "manifest.json")
    assert math.isnan(loaded.raw["training_stats"]["note"])
    assert loaded.signatures == Manifest.load(source).signatures
