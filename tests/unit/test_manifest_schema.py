"""The manifest contract: the JSON Schema file, the layer's validator of it, and serving refusing what it cannot use."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from liteserve.errors import ModelUnavailable
from liteserve.manifest import Manifest
from liteserve.manifest_schema import SCHEMA_PATH, SERVING_FIELDS, InvalidManifest, check
from liteserve.runtime import ModelRepository

from tests.support import MODEL_ROOT

NAMES = sorted(p.parent.name for p in MODEL_ROOT.glob("*/manifest.json"))


def committed(name: str = "digits") -> dict[str, Any]:
    return json.loads((MODEL_ROOT / name / "manifest.json").read_text())


def test_the_schema_file_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize("name", NAMES)
def test_committed_manifests_follow_the_contract(name: str) -> None:
    raw = committed(name)
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(raw)
    check(raw)  # every field, not only the ones serving reads
    assert raw["task"]["kind"] == "classification" and raw["task"]["probabilities"] == "probabilities"


def broken(path: str, value: Any) -> dict[str, Any]:
    """The digits manifest with the field at dotted `path` set to `value` (or deleted when value is DELETE)."""
    raw = copy.deepcopy(committed())
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()
SCHEMA_CASES = [
    ("format_version", DELETE, "format_version"),
    ("name", "../etc", "name"),
    ("version", 3, "version"),
    ("sha256", "abc", "sha256"),
    ("file", "sub/model.tflite", "file"),
    ("signatures", {}, "signatures"),
    ("signatures.serving_default.inputs.x.dtype", "float128", "signatures.serving_default.inputs.x.dtype"),
    ("signatures.serving_default.inputs.x.shape", [-1, "64"], "signatures.serving_default.inputs.x.shape[1]"),
    ("signatures.embedding.outputs", {}, "signatures.embedding.outputs"),
    ("task", DELETE, "task"),
    ("task.kind", "ranking", "task.kind"),
    ("task.probabilities", 7, "task.probabilities"),
    ("labels", ["0", 1], "labels[1]"),
    ("training_stats.features", [{"name": "x"}], "training_stats.features[0].mean"),
    ("quantization.all_signatures_int8", "yes", "quantization.all_signatures_int8"),
]


@pytest.mark.parametrize(("path", "value", "field"), SCHEMA_CASES)
def test_a_broken_field_is_named_and_the_json_schema_agrees(path: str, value: Any, field: str) -> None:
    raw = broken(path, value)
    with pytest.raises(InvalidManifest) as err:
        check(raw)
    assert err.value.field == field and f"'{field}'" in str(err.value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("format_version", 2, "format_version", "2 is not supported (this code reads 1)"),
        ("task.signature", "predict", "task.signature", "'predict' is not one of the signatures"),
        ("task.probabilities", "probs", "task.probabilities", "'probs' is not an output of 'serving_default'"),
        ("labels", ["a", "b"], "labels", "2 labels for 10 classes of 'probabilities'"),
        ("task.kind", "regression", "task", "a regression model names at least one of ['score']"),
    ],
)
def test_cross_field_rules(path: str, value: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidManifest) as err:
        check(broken(path, value))
    assert err.value.field == field and message in str(err.value)


def test_serving_checks_only_what_it_reads() -> None:
    stats_broken = broken("training_stats.features", [{"name": "x"}])
    check(stats_broken, SERVING_FIELDS)  # the evaluator's business, not the server's
    assert Manifest.from_dict(stats_broken).name == "digits"
    with pytest.raises(InvalidManifest, match=re.escape("manifest field 'signatures.serving_default.inputs.x.dtype'")):
        Manifest.from_dict(broken("signatures.serving_default.inputs.x.dtype", "string"))


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("format_version", DELETE, "format_version"),
        (
            "signatures.serving_default.outputs.class_id.shape",
            "[-1]",
            "signatures.serving_default.outputs.class_id.shape",
        ),
        ("task.probabilities", "scores", "task.probabilities"),
    ],
)
def test_serving_refuses_a_manifest_it_cannot_use(tmp_path: Path, path: str, value: Any, field: str) -> None:
    shutil.copytree(MODEL_ROOT / "digits", tmp_path / "digits")
    (tmp_path / "digits" / "manifest.json").write_text(json.dumps(broken(path, value)))
    with pytest.raises(ModelUnavailable) as err:
        ModelRepository(tmp_path)
    assert isinstance(err.value, InvalidManifest) and err.value.field == field
    assert f"manifest field '{field}'" in err.value.message
