"""The retraining contract (liteserve_dev.retraining) and the job's exit codes around it: the manifest's `retrain`
declaration, entry point resolution, what an entry point may return, the declared training data and the packaging
options a candidate inherits. No TensorFlow: entry points here fail before a model would be packaged."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import numpy as np
import pytest
from liteserve.evaluation.labels import Label, LabelStore
from liteserve.manifest_schema import SCHEMA_PATH, InvalidManifest, check
from liteserve.records import batch_object

from liteserve_dev import cli
from liteserve_dev.retraining import (
    ContractError,
    Declaration,
    RetrainInput,
    Rows,
    TrainingFailed,
    candidate_options,
    declared,
    load_training,
    resolve,
    run_entry_point,
)
from tests.support import MODEL_ROOT, ROOT, create_labels_table
from training import digits
from training.retrain import main

BUCKET, TABLE = "retrain-contract", "retrain-contract-labels"
NOT_CALLABLE = 3


def returns_a_number(job: RetrainInput) -> int:
    """An entry point breaking the contract: neither a Keras model nor a SavedModel path."""
    return len(job.training) + len(job.recent)


def returns_a_plain_folder(job: RetrainInput) -> str:
    return str(job.workdir)


def raises(job: RetrainInput) -> None:
    raise RuntimeError(f"no GPU for {job.model}")


def digits_manifest(**retrain: str) -> dict[str, Any]:
    raw = json.loads((MODEL_ROOT / "digits" / "manifest.json").read_text())
    if retrain:
        raw["retrain"] = retrain
    else:
        raw.pop("retrain")
    return raw


def job_input(tmp_path: Path, rows: int = 3) -> RetrainInput:
    x = np.zeros((rows, 64), dtype=np.float32)
    return RetrainInput(
        "digits", "2", "1", {"kind": "classification"}, [str(i) for i in range(10)], None,
        Rows({"x": x}, np.zeros(rows, dtype=np.int64)), Rows({"x": x}, np.zeros(rows, dtype=np.int64), ["k"] * rows),
        tmp_path,
    )  # fmt: skip


def test_the_digits_models_declare_their_entry_point_and_it_resolves() -> None:
    for name in ("digits", "digits-edge", "digits-cloud"):
        raw = json.loads((MODEL_ROOT / name / "manifest.json").read_text())
        assert declared(raw) == Declaration("training.digits:retrain", "training/data/digits-train.npz")
    assert resolve("training.digits:retrain") is digits.retrain


def test_a_manifest_without_retrain_is_valid_but_its_model_cannot_be_retrained() -> None:
    raw = digits_manifest()
    check(raw)
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(raw)
    with pytest.raises(ContractError, match=r"declares no retraining entry point.*--retrain module:function"):
        declared(raw)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"entry_point": "no_colon"}, "retrain.entry_point"),
        ({"entry_point": "a:b:c"}, "retrain.entry_point"),
        ({"entry_point": "1pkg:f"}, "retrain.entry_point"),
        ({"data": "train.csv"}, "retrain.entry_point"),
        ({"entry_point": "m:f", "script": "x"}, "retrain.script"),
        ({"entry_point": "m:f", "data": ""}, "retrain.data"),
    ],
)
def test_the_schema_and_the_layer_validator_refuse_a_bad_retrain_block(block: dict, field: str) -> None:
    raw = digits_manifest()
    raw["retrain"] = block
    with pytest.raises(InvalidManifest) as err:
        check(raw)
    assert err.value.field == field
    assert not jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).is_valid(raw)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("training.digits", "is not `module:function`"),
        ("training.digits:retrain:x", "is not `module:function`"),
        ("no_such_package.train:retrain", "no module 'no_such_package' on the path"),
        ("training.digits:retrain_all", "training.digits has no attribute 'retrain_all'"),
        ("tests.unit.test_retrain_contract:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ],
)
def test_entry_points_that_do_not_resolve_are_named(spec: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        resolve(spec)


def test_an_entry_point_module_that_raises_on_import_is_reported(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_trainer.py").write_text("import numpy\nraise OSError('weights.h5 missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ContractError, match=r"importing broken_trainer raised OSError: weights\.h5 missing"):
        resolve("broken_trainer:retrain")
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ContractError, match="importing needs_dep failed: No module named 'no_such_dependency_xyz'"):
        resolve("needs_dep:retrain")


def test_what_an_entry_point_returns(tmp_path: Path) -> None:
    job = job_input(tmp_path)
    with pytest.raises(TrainingFailed, match="returned int; expected a Keras model or the path of a SavedModel"):
        run_entry_point(returns_a_number, "t:returns_a_number", job)
    with pytest.raises(TrainingFailed, match=r"not a SavedModel or \.keras"):
        run_entry_point(returns_a_plain_folder, "t:returns_a_plain_folder", job)
    with pytest.raises(TrainingFailed, match="t:raises raised RuntimeError: no GPU for digits"):
        run_entry_point(raises, "t:raises", job)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    assert run_entry_point(lambda _: saved, "t:f", job) == saved
    assert run_entry_point(lambda _: str(saved), "t:f", job) == saved


def test_training_data_is_read_and_checked_like_packaging_data(tmp_path: Path) -> None:
    raw = digits_manifest(entry_point="training.digits:retrain", data=digits.DATA_FILE)
    rows = load_training(declared(raw), raw, tmp_path, ROOT)
    from training.data import split

    s = split()
    assert np.array_equal(rows.inputs["x"], s.x_train) and np.array_equal(rows.labels, s.y_train)
    assert rows.labels.dtype == np.int64 and rows.keys is None

    np.savez(tmp_path / "narrow.npz", x=np.zeros((30, 8), dtype=np.float32), label=np.zeros(30))
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((30, 64), dtype=np.float32))
    np.savez(tmp_path / "cats.npz", x=np.zeros((30, 64), dtype=np.float32), label=np.full(30, 12))
    for data, message in (
        ("narrow.npz", r"input 'x' has shape \[30, 8\]"),
        ("unlabelled.npz", "has no labels"),
        ("cats.npz", "neither a class name nor an index < 10"),
        ("missing.npz", "no such file"),
    ):
        with pytest.raises(ContractError, match=message):
            load_training(Declaration("m:f", data), raw, tmp_path, tmp_path)


def test_a_candidate_inherits_the_parents_packaging_options() -> None:
    raw = json.loads((MODEL_ROOT / "digits-edge" / "manifest.json").read_text())
    options = candidate_options(raw, "7")
    assert (options.name, options.version, options.task, options.quantize) == (
        "digits-edge",
        "7",
        "classification",
        "int8",
    )
    assert options.labels == raw["labels"] and options.signatures == ["embedding", "serving_default"]
    assert options.bounds.as_dict() == raw["fidelity"]["bounds"] and options.bounds.max_accuracy_drop == 0.005
    assert options.histogram_edges == [round(0.1 * i, 10) for i in range(11)]
    assert options.feature_names == raw["feature_names"] and options.retrain == raw["retrain"]
    assert options.calibration_rows is None  # every row the candidate trained on calibrates, as `make model` does


def test_the_packaging_command_records_the_declaration(capsys) -> None:
    args = cli.parser().parse_args(["package", "m.keras", "--data", "d.csv", "--name", "n", "--retrain", "pkg.t:fit"])
    assert cli.retrain_block(args) == {"entry_point": "pkg.t:fit", "data": "d.csv"}
    args = cli.parser().parse_args(
        ["package", "m.keras", "--data", "d.csv", "--name", "n", "--retrain", "pkg.t:fit", "--retrain-data",
         "s3://b/train.csv", "--label-field", "target"]
    )  # fmt: skip
    assert cli.retrain_block(args) == {"entry_point": "pkg.t:fit", "data": "s3://b/train.csv", "label_field": "target"}
    assert cli.retrain_block(cli.parser().parse_args(["package", "m.keras", "--data", "d", "--name", "n"])) is None
    for argv, message in (
        (["--retrain", "fit"], "expected module:function"),
        (["--retrain-data", "t.csv"], "--retrain-data needs --retrain"),
    ):
        assert cli.main(["package", "m.keras", "--data", "d.csv", "--name", "n", *argv]) == 1
        assert message in capsys.readouterr().err


# -------------------------------------------------------------------------------- the job's exit codes (moto)


@pytest.fixture
def aws(mocked_aws, monkeypatch):
    monkeypatch.chdir(ROOT)  # the build's source root: declared data paths are relative to it
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    create_labels_table(boto3.client("dynamodb"), TABLE)


def model_root(tmp_path: Path, retrain: dict[str, str] | None) -> Path:
    """A model layer holding the digits model, declaring `retrain` (or nothing)."""
    root = tmp_path / "models"
    shutil.copytree(MODEL_ROOT / "digits", root / "digits")
    raw = copy.deepcopy(digits_manifest(**(retrain or {})))
    (root / "digits" / "manifest.json").write_text(json.dumps(raw))
    return root


def seed(n: int = 40) -> float:
    """`n` labelled batch predictions of digits made an hour ago; returns now."""
    from liteserve.runtime import Model

    now = 1_794_441_600.0
    x = np.random.default_rng(0).random((n, 64), dtype=np.float32)
    keys = [f"k{i:03d}" for i in range(n)]
    model = Model(MODEL_ROOT / "digits")
    key, body = batch_object("job", 0, now - 3600, "digits", "1", "serving_default", keys, {"x": x},
                             model.predict("serving_default", {"x": x}))  # fmt: skip
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    LabelStore(TABLE).put_many([Label(k, str(i % 10)) for i, k in enumerate(keys)], source="test", now=now - 600)
    return now


def retrain(root: Path, capsys) -> tuple[int, str]:
    argv = ["--model", "digits", "--parent", "1", "--window-end", "1794441600", "--min-labelled", "10"]
    argv += ["--bucket", BUCKET, "--labels-table", TABLE, "--model-root", str(root)]
    rc = main(argv)
    return rc, capsys.readouterr().err


def registry_keys() -> list[str]:
    return [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="models/").get("Contents", [])]


@pytest.mark.parametrize(
    ("retrain_block", "message"),
    [
        (None, "model 'digits' (version 1) declares no retraining entry point"),
        ({"entry_point": "training.digits:nothing"}, "training.digits has no attribute 'nothing'"),
        ({"entry_point": "training.digits:retrain", "data": "training/data/absent.npz"}, "no such file"),
    ],
)
def test_a_model_that_cannot_be_retrained_fails_the_job_with_exit_2(aws, tmp_path, capsys, retrain_block, message):
    seed()
    rc, err = retrain(model_root(tmp_path, retrain_block), capsys)
    assert rc == 2 and message in err, err
    assert registry_keys() == []  # nothing claimed


def test_an_entry_point_returning_no_model_fails_the_job_with_exit_1(aws, tmp_path, capsys) -> None:
    seed()
    spec = "tests.unit.test_retrain_contract:returns_a_number"
    rc, err = retrain(model_root(tmp_path, {"entry_point": spec, "data": digits.DATA_FILE}), capsys)
    assert rc == 1, err
    assert f"retraining entry point {spec} returned int; expected a Keras model" in err
    # The window's rows reached the entry point: the log shows the join before the failure.
    assert "'labelled': 40" in err
    assert registry_keys() == ["models/digits/2/claim.json"]  # claimed, never completed: a rerun resumes it
