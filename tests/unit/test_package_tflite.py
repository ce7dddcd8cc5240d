"""`liteserve-model package` on existing .tflite files, in the dev venv (LiteRT only, no TensorFlow): the committed
float digits reference and the int8 digits model, packaged as supplied, then served; and the CLI's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from liteserve.runtime import ModelRepository

from liteserve_dev.cli import main
from liteserve_dev.packaging.package import Options, package
from tests.support import MODEL_ROOT, ROOT
from training.data import split

FLOAT_DIGITS = ROOT / "training" / "artifacts" / "digits" / "float.tflite"
INT8_DIGITS = MODEL_ROOT / "digits" / "model.tflite"


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = split()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=s.x_test, label=s.y_test)
    return path


def test_a_float_tflite_is_packaged_as_supplied_with_task_labels_metrics_and_baseline(digits_npz: Path) -> None:
    p = package(FLOAT_DIGITS, digits_npz, Options(name="digits-float"))
    m = p.manifest
    assert p.model == FLOAT_DIGITS.read_bytes()
    assert m["format_version"] == 1 and m["source"] == {"kind": "tflite", "file": "float.tflite"}
    assert m["task"]["kind"] == "classification" and m["task"]["probabilities"] == "probabilities"
    assert m["task"]["class_id"] == "class_id" and m["labels"] == [str(i) for i in range(10)]
    assert m["quantization"] == {"type": "as supplied", "io": "float32", "all_signatures_int8": False}
    assert m["fidelity"]["classification"]["top1_agreement"] == 1.0  # it is its own reference
    assert m["metrics"]["tflite"]["accuracy"] == m["metrics"]["float"]["accuracy"] > 0.9
    assert m["feature_names"] == [f"x_{j}" for j in range(64)] and m["training_stats"]["label_source"] == "labels"
    assert sum(m["training_stats"]["label_counts"]) == m["training_stats"]["n"] == 360
    assert set(m["baseline"]["outputs"]) == {"embedding", "serving_default"}
    assert m["baseline"]["outputs"]["serving_default"]["class_id"]["kind"] == "counts"
    assert len(m["calibration"]) > 10


def test_an_int8_tflite_keeps_only_the_chosen_signatures(digits_npz: Path) -> None:
    m = package(INT8_DIGITS, digits_npz, Options(name="d8", signatures=["serving_default"], quantize="none")).manifest
    assert m["quantization"]["all_signatures_int8"] is True and list(m["signatures"]) == ["serving_default"]
    assert list(m["baseline"]["outputs"]) == ["serving_default"]


def test_cli_writes_a_model_the_runtime_serves(tmp_path: Path, digits_npz: Path, capsys) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"digit-{i}\n" for i in range(10)))
    args = ["package", str(FLOAT_DIGITS), "--data", str(digits_npz), "--name", "mine", "--version", "7"]
    assert main([*args, "--labels", str(labels), "--out", str(tmp_path / "models")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(tmp_path / "models" / "mine") and summary["task"] == "classification"
    model = ModelRepository(tmp_path / "models").get("mine")
    assert model.version == "7" and model.manifest.labels[3] == "digit-3"
    x = split().x_test[:5]
    out = model.predict("serving_default", {"x": x})
    np.testing.assert_array_equal(out["class_id"], np.argmax(out["probabilities"], 1))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--quantize", "int8"], "a .tflite source is packaged as supplied"),
        (["--task", "regression"], "which output is the regression score (one float per row): candidates none"),
        (["--signatures", "predict"], "--signatures ['predict'] not in the model"),
        (["--name", "a/b"], "--name: 'a/b' does not match"),
        (["--label-field", "y"], "no label field 'y'"),
    ],
)
def test_cli_refusals_write_nothing(tmp_path: Path, digits_npz: Path, capsys, extra: list[str], message: str) -> None:
    out = tmp_path / "models"
    args = ["package", str(FLOAT_DIGITS), "--data", str(digits_npz), "--name", "m", "--out", str(out), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("liteserve-model: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_data_that_does_not_fit_and_files_that_are_not_models(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((50, 63), dtype=np.float32))
    assert main(["package", str(FLOAT_DIGITS), "--data", str(bad), "--name", "m", "--out", str(tmp_path)]) == 1
    assert "input 'x' has shape [50, 63]; signature 'embedding' expects [n, 64] (float32)" in capsys.readouterr().err
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x00" * 64)
    assert main(["package", str(fake), "--data", str(bad), "--name", "m", "--out", str(tmp_path)]) == 1
    assert "model.tflite: not a TF Lite flatbuffer" in capsys.readouterr().err
    assert main(["package", str(tmp_path), "--data", str(bad), "--name", "m", "--out", str(tmp_path)]) == 1
    assert "a directory without saved_model.pb is not a SavedModel" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "model.tflite"]


def test_cli_unknown_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["package", "m.tflite", "--data", "d.npz", "--name", "m", "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
