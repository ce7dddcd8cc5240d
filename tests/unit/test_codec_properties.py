"""Property-based tests (Hypothesis) of the codecs and validators against the real digits model.

Any JSON document (or any bytes) gives either a result or a LiteserveError with a 4xx status and a message; whatever
the codecs accept also validates against the published JSON Schemas; keys come back in order; V2 flat and nested
data, and TF Serving row and columnar format, give identical outputs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from liteserve.errors import LiteserveError
from liteserve.evaluation.labels import parse_post
from liteserve.http import Request
from liteserve.keys import check_keys
from liteserve.protocols import schemas, tfserving, v2
from liteserve.runtime import Model, ModelRepository
from liteserve.service import PredictService, ServingConfig

MAX = 20
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREDICT_SCHEMA = jsonschema.Draft202012Validator(schemas.predict_request(MAX))
INFER_SCHEMA = jsonschema.Draft202012Validator(schemas.INFER_REQUEST)
LABELS_SCHEMA = jsonschema.Draft202012Validator(schemas.LABELS_REQUEST)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=5),
)
json_docs = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
)


@pytest.fixture(scope="module")
def model(models: ModelRepository) -> Model:
    return models.get("digits")


@pytest.fixture(scope="module")
def width(model: Model) -> int:
    return model.signature(None).inputs["x"].feature_shape[0]


def _refused_cleanly(call) -> Any:
    """Run `call`; a refusal must be a LiteserveError with a 4xx status and a non-empty message."""
    try:
        return call()
    except LiteserveError as error:
        assert 400 <= error.status < 500, (error.status, error.message)
        assert error.message.strip()
        return None


# Values that look like rows of the digits model: right or wrong length, numbers of any size, odd types mixed in.
def near_rows(width: int) -> st.SearchStrategy[list]:
    number = st.one_of(
        st.floats(-16, 16), st.integers(-(2**70), 2**70), st.floats(), st.just(10**400), st.booleans(), st.none()
    )
    row = st.one_of(
        st.lists(st.floats(-16, 16), min_size=width, max_size=width),
        st.lists(number, min_size=width - 1, max_size=width + 1),
        st.lists(st.lists(number, max_size=2), min_size=width, max_size=width),
        number,
    )
    return st.lists(row, min_size=0, max_size=4)


def near_predict_docs(width: int) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=3), st.integers(-3, 3), st.none(), st.booleans(), st.floats(0, 2))
    keyed_rows = st.lists(
        st.fixed_dictionaries({"x": near_rows(width).map(lambda r: r[0] if r else [])}, optional={"key": keys}),
        max_size=4,
    )
    valid = st.lists(st.lists(st.floats(-16, 16), min_size=width, max_size=width), min_size=1, max_size=4)
    instances = st.one_of(valid, near_rows(width), keyed_rows, json_docs)
    inputs = st.one_of(
        valid,
        near_rows(width),
        st.fixed_dictionaries({"x": near_rows(width)}, optional={"key": st.lists(keys, max_size=4), "y": json_docs}),
        json_docs,
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"instances": instances},
            optional={"signature_name": st.sampled_from(["serving_default", "embedding", "nope", 3])},
        ),
        st.fixed_dictionaries({"inputs": inputs}, optional={"instances": instances, "extra": json_docs}),
        json_docs,
    )


def near_infer_docs(width: int) -> st.SearchStrategy[Any]:
    shape = st.one_of(st.lists(st.integers(-1, 70), max_size=3), json_docs)
    data = st.one_of(near_rows(width), st.lists(st.floats(-16, 16), max_size=3 * width), json_docs)
    tensor = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["x", "key", "y", ""]),
            "shape": shape,
            "datatype": st.sampled_from(["FP32", "BYTES", "INT8", "fp32"]),
            "data": data,
        },
        optional={"parameters": json_docs, "extra": json_docs},
    )
    return st.one_of(
        st.fixed_dictionaries({"inputs": valid_tensors(width)}, optional={"id": st.text(max_size=3) | json_docs}),
        st.fixed_dictionaries(
            {"inputs": st.lists(tensor, max_size=3)},
            optional={"id": json_docs, "parameters": json_docs, "outputs": json_docs},
        ),
        json_docs,
    )


@st.composite
def valid_tensors(draw: st.DrawFn, width: int) -> list[dict[str, Any]]:
    """A valid input tensor (flat or nested data), sometimes with a key tensor, sometimes with one field broken."""
    n = draw(st.integers(1, 3))
    rows = draw(st.lists(st.lists(st.floats(-16, 16), min_size=width, max_size=width), min_size=n, max_size=n))
    data = rows if draw(st.booleans()) else [v for r in rows for v in r]
    tensors = [{"name": "x", "shape": [n, width], "datatype": "FP32", "data": data}]
    if draw(st.booleans()):
        keys = draw(st.lists(st.text(min_size=1, max_size=3), min_size=n, max_size=n, unique=True))
        tensors.append({"name": "key", "shape": [n], "datatype": "BYTES", "data": keys})
    if draw(st.booleans()):  # break one field of one tensor
        tensor = draw(st.sampled_from(tensors))
        tensor[draw(st.sampled_from(sorted(tensor)))] = draw(json_docs)
    return tensors


@SETTINGS
@given(data=st.data())
def test_predict_any_document_is_answered_or_refused_with_a_4xx(model, width, data):
    doc = data.draw(st.one_of(near_predict_docs(width), json_docs))
    call = _refused_cleanly(lambda: tfserving.decode_predict(doc, model, key_field="key", max_instances=MAX))
    if call is not None:
        PREDICT_SCHEMA.validate(doc)  # accepted => the published schema accepts it too
        tfserving.encode_predict(call, model.predict(call.signature.name, call.inputs))


@SETTINGS
@given(data=st.data())
def test_infer_any_document_is_answered_or_refused_with_a_4xx(model, width, data):
    doc = data.draw(st.one_of(near_infer_docs(width), json_docs))
    call = _refused_cleanly(lambda: v2.decode_infer(doc, model, key_field="key", max_instances=MAX))
    if call is not None:
        INFER_SCHEMA.validate(doc)
        v2.encode_infer(call, model, model.predict(call.signature.name, call.inputs))


@SETTINGS
@given(doc=json_docs | st.lists(st.dictionaries(st.sampled_from(["key", "label", "x"]), scalars), max_size=4))
def test_labels_any_document_is_parsed_or_refused_with_a_4xx(doc):
    labels = _refused_cleanly(lambda: parse_post(doc))
    if labels is not None:
        LABELS_SCHEMA.validate(doc)
        items = doc["labels"] if isinstance(doc, dict) else doc
        assert [(lab.key, lab.label) for lab in labels] == [
            (str(i["key"]).strip(), str(i["label"]).strip()) for i in items
        ]


@SETTINGS
@given(values=st.lists(json_docs, max_size=6))
def test_check_keys_returns_the_keys_unchanged_or_refuses(values):
    keys = _refused_cleanly(lambda: check_keys(values))
    if keys is not None:
        assert keys == values
        assert all(isinstance(k, str | int) and not isinstance(k, bool) for k in keys)


@pytest.fixture(scope="module")
def service(models: ModelRepository) -> PredictService:
    return PredictService(models, ServingConfig(max_body_bytes=64 * 1024, max_instances=MAX))


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.one_of(
        st.sampled_from(
            ["/v1/models/digits:predict", "/v2/models/digits/infer", "/v1/models/digits", "/v2", "/openapi.json"]
        ),
        st.text(max_size=30).map(lambda t: "/v1/models/" + t),
        st.text(max_size=30).map(lambda t: "/v2/" + t),
    ),
    body=st.one_of(st.binary(max_size=200), json_docs.map(lambda d: json.dumps(d).encode())),
    ctype=st.sampled_from(["application/json", "text/plain", "application/xml", "", "multipart/form-data; b=1"]),
)
def test_service_any_request_is_answered_or_refused_with_a_4xx(service, method, path, body, ctype):
    headers = {"content-type": ctype} if ctype else {}
    result = _refused_cleanly(lambda: service.handle(Request(method, path, headers, body)))
    if result is not None:
        assert result.status in (200, 503)


# Valid requests
floats = st.floats(-16, 16, width=32)
keys_of = st.lists(
    st.one_of(st.text(min_size=1, max_size=8), st.integers(-(2**40), 2**40)), min_size=1, max_size=MAX, unique=True
)


@st.composite
def rows_and_keys(draw: st.DrawFn, width: int, str_keys: bool = False) -> tuple[list[list[float]], list]:
    keys = draw(
        st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=MAX, unique=True) if str_keys else keys_of
    )
    rows = draw(st.lists(st.lists(floats, min_size=width, max_size=width), min_size=len(keys), max_size=len(keys)))
    return rows, keys


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_keyed_row_and_columnar_requests_return_keys_in_order_with_equal_outputs(model, width, data):
    rows, keys = data.draw(rows_and_keys(width))
    row_doc = {"instances": [{"key": k, "x": r} for k, r in zip(keys, rows, strict=True)]}
    col_doc = {"inputs": {"key": keys, "x": rows}}
    answers = []
    for doc in (row_doc, col_doc):
        PREDICT_SCHEMA.validate(doc)
        call = tfserving.decode_predict(doc, model, key_field="key", max_instances=MAX)
        answers.append(tfserving.encode_predict(call, model.predict(call.signature.name, call.inputs)))
    by_row, by_col = answers
    assert [p["key"] for p in by_row["predictions"]] == keys
    assert by_col["outputs"]["key"] == keys
    assert [p["class_id"] for p in by_row["predictions"]] == list(by_col["outputs"]["class_id"])
    assert np.array_equal([p["probabilities"] for p in by_row["predictions"]], by_col["outputs"]["probabilities"])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_v2_flat_and_nested_data_give_identical_outputs_and_keys_in_order(model, width, data):
    rows, keys = data.draw(rows_and_keys(width, str_keys=True))
    nested = [{"name": "x", "shape": [len(rows), width], "datatype": "FP32", "data": rows}]
    flat = [{"name": "x", "shape": [len(rows), width], "datatype": "FP32", "data": [v for r in rows for v in r]}]
    key_tensor = {"name": "key", "shape": [len(keys)], "datatype": "BYTES", "data": keys}
    answers = []
    for tensors in (nested, flat):
        doc = {"id": "r1", "inputs": [*tensors, key_tensor]}
        INFER_SCHEMA.validate(doc)
        call = v2.decode_infer(doc, model, key_field="key", max_instances=MAX)
        answers.append(v2.encode_infer(call, model, model.predict(call.signature.name, call.inputs)))
    by_nested, by_flat = answers
    assert [t["name"] for t in by_nested["outputs"]] == [t["name"] for t in by_flat["outputs"]]
    assert by_nested["outputs"][0]["data"] == keys
    for a, b in zip(by_nested["outputs"][1:], by_flat["outputs"][1:], strict=True):
        assert a["shape"] == b["shape"] and np.array_equal(a["data"], b["data"])
    # and the TF Serving codec predicts the same classes for the same rows
    tf = tfserving.decode_predict({"instances": rows}, model, key_field="key", max_instances=MAX)
    classes = model.predict(tf.signature.name, tf.inputs)["class_id"]
    assert np.array_equal(classes, next(t["data"] for t in by_flat["outputs"] if t["name"] == "class_id"))


@SETTINGS
@given(body=st.binary(max_size=300))
def test_request_json_reads_any_bytes_or_refuses(body):
    doc = _refused_cleanly(lambda: Request("POST", "/", {"content-type": "application/json"}, body).json(1024))
    if doc is not None:
        parsed, _ = doc
        assert parsed == json.loads(body) or _has_nan(parsed)


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False
