"""The `class_label` output (a classifier's class names, on request) in both protocols, and the labels in metadata,
on the committed digits model with its classes renamed; a prediction log line of a filtered answer reads back with
the outputs it carried."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from liteserve.http import Request
from liteserve.predlog import PredictionLog
from liteserve.records import Signatures, parse_line
from liteserve.runtime import ModelRepository
from liteserve.service import PredictService, ServingConfig

from tests.support import MODEL_ROOT, http_event
from tests.unit.test_service import call as _call

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits model with class names that are not its class ids."""
    root = tmp_path_factory.mktemp("named")
    shutil.copytree(MODEL_ROOT / "digits", root / "digits")
    manifest = orjson.loads((root / "digits" / "manifest.json").read_bytes())
    manifest["labels"] = NAMES
    (root / "digits" / "manifest.json").write_bytes(orjson.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def models(root: Path) -> ModelRepository:
    return ModelRepository(root)


@pytest.fixture(scope="module")
def service(models: ModelRepository) -> PredictService:
    return PredictService(models, ServingConfig(max_instances=50))


def call(service, method, path, body=None):
    return _call(service, method, path, body)


def test_tf_serving_output_filter_returns_class_label_beside_class_id(service, models, digits):
    x, _ = digits
    model = models.get("digits")
    ref = model.predict("serving_default", {"x": x[:4].astype(np.float32)})
    names = [model.manifest.labels[i] for i in ref["class_id"]]
    body = {"instances": [{"key": f"k{i}", "x": r.tolist()} for i, r in enumerate(x[:4])]}
    status, out = call(
        service, "POST", "/v1/models/digits:predict", {**body, "output_filter": ["class_id", "class_label"]}
    )
    assert status == 200
    assert out["predictions"] == [
        {"key": f"k{i}", "class_id": int(c), "class_label": n}
        for i, (c, n) in enumerate(zip(ref["class_id"], names, strict=True))
    ]
    # columnar, one output asked for and no key: unwrapped as TF Serving does for a single output
    status, out = call(
        service, "POST", "/v1/models/digits:predict", {"inputs": x[:4].tolist(), "output_filter": ["class_label"]}
    )
    assert status == 200 and out == {"outputs": names}
    # without output_filter the answer is exactly the signature's outputs
    status, out = call(service, "POST", "/v1/models/digits:predict", body)
    assert status == 200 and set(out["predictions"][0]) == {"key", "probabilities", "class_id"}


def test_output_filter_mistakes_are_400(service, digits):
    x, _ = digits
    row = x[0].tolist()
    for body, fragment in [
        ({"instances": [row], "output_filter": ["nope"]}, "unknown output(s) ['nope']"),
        ({"instances": [row], "output_filter": []}, "non-empty list"),
        ({"instances": [row], "output_filter": ["class_id", "class_id"]}, "twice"),
        ({"signature_name": "embedding", "instances": [row], "output_filter": ["class_label"]}, "offers ['embedding']"),
    ]:
        status, out = call(service, "POST", "/v1/models/digits:predict", body)
        assert status == 400 and fragment in out["error"], out


def test_v2_class_label_is_a_bytes_output_on_request(service, models, digits):
    x, _ = digits
    ref = models.get("digits").predict("serving_default", {"x": x[:3].astype(np.float32)})
    body = {
        "inputs": [{"name": "x", "shape": [3, 64], "datatype": "FP32", "data": x[:3].ravel().tolist()}],
        "outputs": [{"name": "class_label"}, {"name": "class_id"}],
    }
    status, out = call(service, "POST", "/v2/models/digits/infer", body)
    assert status == 200
    label, class_id = out["outputs"]
    assert label == {
        "name": "class_label",
        "datatype": "BYTES",
        "shape": [3],
        "data": [NAMES[c] for c in ref["class_id"]],
    }
    assert class_id["data"] == ref["class_id"].tolist()
    status, out = call(service, "POST", "/v2/models/digits/infer", {**body, "outputs": None})
    assert status == 200 and {t["name"] for t in out["outputs"]} == {"probabilities", "class_id"}


def test_metadata_lists_the_labels_in_both_protocols(service, models):
    labels = models.get("digits").manifest.labels
    expected = {"names": labels, "output": "class_label", "signature": "serving_default", "from_output": "class_id"}
    status, tf = call(service, "GET", "/v1/models/digits/metadata")
    assert status == 200 and tf["metadata"]["labels"] == expected
    status, v2 = call(service, "GET", "/v2/models/digits")
    assert status == 200 and v2["parameters"]["labels"] == expected


def test_a_filtered_answer_in_the_prediction_log_reads_back_under_its_outputs(service, root, digits):
    x, _ = digits
    body = {"instances": [{"key": "a", "x": x[0].tolist()}], "output_filter": ["class_label"]}
    raw = orjson.dumps(body).decode()
    result = service.handle(Request.from_event(http_event("POST", "/v1/models/digits:predict", body)))
    answer = orjson.dumps(result.document, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    lines: list[str] = []
    PredictionLog(write=lines.append).record(result.served, "tfserving", raw, answer, "r1")
    (record,) = parse_line(lines[0], Signatures(root))
    assert record["outputs"] == {"class_label": result.document["predictions"][0]["class_label"]}
    assert record["inputs"]["x"] == x[0].astype(np.float32).tolist()
    # the per-instance form (large bodies) carries every input by name, and reads back the same
    lines.clear()
    PredictionLog(write=lines.append, max_inline_bytes=10).record(result.served, "tfserving", raw, answer, "r2")
    (record,) = parse_line(lines[0], Signatures(root))
    assert record["key"] == "a" and record["inputs"]["x"] == x[0].astype(np.float32).tolist()
