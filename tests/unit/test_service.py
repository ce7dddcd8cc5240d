"""PredictService on the committed int8 model: TF Serving REST and Open Inference Protocol V2, keys, signatures,
and one clear 4xx for every kind of bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from liteserve.errors import LiteserveError
from liteserve.http import Request
from liteserve.service import PredictService

from tests.support import http_event


def call(service: PredictService, method: str, path: str, body=None, **kw) -> tuple[int, dict]:
    """Run the service like the handler does and return (status, decoded JSON body)."""
    try:
        result = service.handle(Request.from_event(http_event(method, path, body, **kw)))
    except LiteserveError as err:
        return err.status, {"error": err.message}
    return result.status, orjson.loads(orjson.dumps(result.document, option=orjson.OPT_SERIALIZE_NUMPY))


def reference(models, rows: np.ndarray, signature: str = "serving_default") -> dict[str, np.ndarray]:
    return models.get("digits").predict(signature, {"x": rows.astype(np.float32)})


# ---------------------------------------------------------------- TF Serving REST


def test_status_and_metadata(service, models):
    version = models.get("digits").version
    status, body = call(service, "GET", "/v1/models/digits")
    assert status == 200
    assert body["model_version_status"][0] == {
        "version": version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    status, body = call(service, "GET", f"/v1/models/digits/versions/{version}/metadata")
    assert status == 200
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "embedding"} <= defs.keys()
    x = defs["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "64"]
    assert set(defs["serving_default"]["outputs"]) == {"probabilities", "class_id"}


def test_row_format_keyed_predictions_match_the_model(service, models, digits):
    x, y = digits
    keys = [f"img-{i}" for i in range(20)]
    instances = [{"key": k, "x": row.tolist()} for k, row in zip(keys, x[:20], strict=True)]
    status, body = call(service, "POST", "/v1/models/digits:predict", {"instances": instances})
    assert status == 200
    ref = reference(models, x[:20])
    assert [p["key"] for p in body["predictions"]] == keys
    for i, p in enumerate(body["predictions"]):
        assert set(p) == {"key", "probabilities", "class_id"}
        np.testing.assert_allclose(p["probabilities"], ref["probabilities"][i], rtol=1e-6)
        assert p["class_id"] == int(ref["class_id"][i]) == int(np.argmax(ref["probabilities"][i]))
    accuracy = np.mean([p["class_id"] for p in body["predictions"]] == y[:20])
    assert accuracy >= 0.9


def test_row_format_unkeyed_and_named_input(service, models, digits):
    x, _ = digits
    status, bare = call(service, "POST", "/v1/models/digits:predict", {"instances": x[:3].tolist()})
    status2, named = call(
        service, "POST", "/v1/models/digits:predict", {"instances": [{"x": r} for r in x[:3].tolist()]}
    )
    assert status == status2 == 200
    assert bare == named
    assert [p["class_id"] for p in bare["predictions"]] == reference(models, x[:3])["class_id"].tolist()


def test_single_output_is_unwrapped(service, models, digits):
    x, _ = digits
    status, body = call(
        service, "POST", "/v1/models/digits:predict", {"signature_name": "embedding", "instances": x[:2].tolist()}
    )
    assert status == 200
    emb = reference(models, x[:2], "embedding")["embedding"]
    assert np.asarray(body["predictions"]).shape == emb.shape
    np.testing.assert_allclose(body["predictions"], emb, rtol=1e-6)


def test_keyed_embedding_keeps_the_output_name(service, digits):
    x, _ = digits
    status, body = call(
        service,
        "POST",
        "/v1/models/digits:predict",
        {"signature_name": "embedding", "instances": [{"key": 7, "x": x[0].tolist()}]},
    )
    assert status == 200
    assert set(body["predictions"][0]) == {"key", "embedding"}
    assert body["predictions"][0]["key"] == 7


def test_columnar_format(service, models, digits):
    x, _ = digits
    status, body = call(service, "POST", "/v1/models/digits:predict", {"inputs": x[:4].tolist()})
    assert status == 200
    assert body["outputs"]["class_id"] == reference(models, x[:4])["class_id"].tolist()
    status, body = call(
        service, "POST", "/v1/models/digits:predict", {"inputs": {"x": x[:2].tolist(), "key": ["a", "b"]}}
    )
    assert status == 200
    assert body["outputs"]["key"] == ["a", "b"]
    status, body = call(
        service, "POST", "/v1/models/digits:predict", {"signature_name": "embedding", "inputs": {"x": x[:2].tolist()}}
    )
    assert status == 200
    assert np.asarray(body["outputs"]).shape[0] == 2


def test_version_route(service, models, digits):
    version = models.get("digits").version
    x, _ = digits
    status, _ = call(service, "POST", f"/v1/models/digits/versions/{version}:predict", {"instances": x[:1].tolist()})
    assert status == 200
    status, body = call(service, "POST", "/v1/models/digits/versions/999:predict", {"instances": x[:1].tolist()})
    assert status == 404
    assert "version 999 not found" in body["error"]


ROW = [0.5] * 64


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"instances": []}, 400, "non-empty list"),
        ({"instances": [ROW, ROW[:63]]}, 400, "instance 1: input 'x' expected 64 values, got 63"),
        ({"instances": [ROW, [*ROW[:63], "a"]]}, 400, "instance 1: input 'x' expected a number, got str"),
        ({"instances": [ROW, [*ROW[:63], True]]}, 400, "instance 1: input 'x' expected a number, got bool"),
        ({"instances": [[ROW]]}, 400, "instance 0: input 'x' expected 64 values, got 1"),
        ({"instances": [{"key": "a", "x": ROW}, {"x": ROW}]}, 400, "instance 1: either every instance carries a 'key'"),
        (
            {"instances": [{"key": "a", "x": ROW}, {"key": "a", "x": ROW}]},
            400,
            "instance 1: key 'a' repeats instance 0",
        ),
        ({"instances": [{"key": None, "x": ROW}]}, 400, "instance 0: key must be a string or an integer"),
        ({"instances": [{"key": "a", "y": ROW}]}, 400, "instance 0: missing input(s) ['x']; unknown field(s) ['y']"),
        ({"instances": [{"x": ROW}, ROW]}, 400, "instance 1: expected an object like instance 0"),
        ({"instances": [ROW, {"x": ROW}]}, 400, "mix objects and bare values"),
        ({"instances": [ROW] * 51}, 413, "51 instances exceed the limit of 50"),
        ({"signature_name": "nope", "instances": [ROW]}, 400, "signature_name 'nope' not found; available: embedding"),
        ({"signature_name": 3, "instances": [ROW]}, 400, "signature_name must be a string"),
        ({"instances": [ROW], "inputs": [ROW]}, 400, "exactly one of"),
        ({}, 400, "exactly one of"),
        ({"instance": [ROW]}, 400, "unknown field(s) ['instance']"),
        ([ROW], 400, "must be a JSON object"),
        ({"inputs": {"x": [ROW], "key": ["a", "b"]}}, 400, "has 2 keys for 1 instances"),
        ({"inputs": {"x": [ROW], "k": ["a"]}}, 400, "unknown ['k']"),
    ],
)
def test_bad_predict_requests(service, body, status, fragment):
    got, answer = call(service, "POST", "/v1/models/digits:predict", body)
    assert got == status
    assert fragment in answer["error"]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "fragment"),
    [
        (b'{"instances": [[0.5, NaN]]}', None, 400, "instance 0: input 'x'"),
        (
            b'{"instances": [' + json.dumps([0.5] * 63).encode()[:-1] + b", Infinity]]}",
            None,
            400,
            "instance 0: input 'x' holds",
        ),
        (b'{"instances": [[1e400' + b", 0.5" * 63 + b"]]}", None, 400, "instance 0: input 'x' holds"),
        (b"{not json", None, 400, "body is not valid JSON"),
        (b"", None, 400, "body is empty"),
        (b"\xff\xfe garbage", None, 400, "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, None, 400, "not valid JSON"),
        (b'{"instances": [[0.5]]}', {"content-type": "application/xml"}, 415, "content-type 'application/xml'"),
        (b'{"instances": [' + b"[" + b"0.5," * 70000 + b"0.5]]}", None, 413, "exceeds the limit"),
    ],
)
def test_malformed_bodies(service, raw, headers, status, fragment):
    got, answer = call(service, "POST", "/v1/models/digits:predict", raw_body=raw, headers=headers)
    assert got == status, answer
    assert fragment in answer["error"]


def test_curl_default_content_type_is_accepted(service):
    got, _ = call(
        service,
        "POST",
        "/v1/models/digits:predict",
        {"instances": [ROW]},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert got == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/nope", 404),
        ("POST", "/v1/models/nope:predict", 404),
        ("GET", "/v1/models/digits:predict", 405),
        ("POST", "/v1/models/digits", 405),
        ("POST", "/v1/models/digits:classify", 400),
        ("GET", "/v3/anything", 404),
    ],
)
def test_routing_errors(service, method, path, status):
    got, body = call(service, method, path, {"instances": [ROW]} if method == "POST" else None)
    assert got == status
    assert body["error"]


# ---------------------------------------------------------------- Open Inference Protocol V2


def test_v2_health_and_metadata(service, models):
    assert call(service, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(service, "GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = call(service, "GET", "/v2")
    assert status == 200
    assert meta["name"] == "liteserve"
    assert call(service, "GET", "/v2/models/digits/ready") == (200, {"name": "digits", "ready": True})
    status, meta = call(service, "GET", "/v2/models/digits")
    assert status == 200
    assert meta["versions"] == [models.get("digits").version]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "class_id"}
    assert call(service, "GET", "/v2/models/nope/ready")[0] == 404


def test_v2_infer_keyed(service, models, digits):
    x, _ = digits
    body = {
        "id": "req-1",
        "inputs": [
            {"name": "key", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]},
            {"name": "x", "shape": [3, 64], "datatype": "FP32", "data": x[:3].reshape(-1).tolist()},
        ],
    }
    status, out = call(service, "POST", "/v2/models/digits/infer", body)
    assert status == 200
    assert out["id"] == "req-1"
    assert out["model_name"] == "digits"
    tensors = {t["name"]: t for t in out["outputs"]}
    assert tensors["key"] == {"name": "key", "datatype": "BYTES", "shape": [3], "data": ["a", "b", "c"]}
    ref = reference(models, x[:3])
    assert tensors["probabilities"]["shape"] == [3, 10]
    assert tensors["probabilities"]["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(tensors["probabilities"]["data"], (3, 10)), ref["probabilities"], rtol=1e-6)
    assert tensors["class_id"]["data"] == ref["class_id"].tolist()


def test_v2_signature_and_requested_outputs(service, models, digits):
    x, _ = digits
    body = {
        "parameters": {"signature_name": "embedding"},
        "inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": x[:2].tolist()}],
    }
    status, out = call(service, "POST", "/v2/models/digits/infer", body)
    assert status == 200
    assert [t["name"] for t in out["outputs"]] == ["embedding"]
    body = {
        "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": x[0].tolist()}],
        "outputs": [{"name": "class_id"}],
    }
    status, out = call(service, "POST", "/v2/models/digits/infer", body)
    assert status == 200
    assert [t["name"] for t in out["outputs"]] == ["class_id"]


def _x(data=None, shape=(1, 64), datatype="FP32", name="x"):
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data if data is not None else ROW}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": []}, 400, "non-empty list"),
        ({"inputs": [_x(datatype="FP64")]}, 400, "must have datatype FP32"),
        ({"inputs": [_x(shape=(2, 64))]}, 400, "64 values do not fill shape [2, 64]"),
        ({"inputs": [_x(shape=(1, 63))]}, 400, "does not match the model's [N, 64]"),
        ({"inputs": [_x(data=[*ROW[:63], math.inf])]}, 400, "holds NaN, Infinity"),
        ({"inputs": [_x(data=[*ROW[:63], True])]}, 400, "only numbers"),
        ({"inputs": [_x(name="y")]}, 400, "unknown input 'y'"),
        ({"inputs": [_x(), _x()]}, 400, "given twice"),
        ({"inputs": [{"name": "x"}]}, 400, "needs 'name', 'shape', 'datatype' and 'data'"),
        (
            {"inputs": [_x(), {"name": "key", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]},
            400,
            "input 'key' has 2 keys for 1 instances",
        ),
        (
            {"inputs": [_x(), {"name": "key", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "must have shape [N] and N strings",
        ),
        (
            {
                "inputs": [
                    _x(shape=(2, 64), data=ROW * 2),
                    {"name": "key", "shape": [2], "datatype": "BYTES", "data": ["a", "a"]},
                ]
            },
            400,
            "repeats",
        ),
        (
            {"inputs": [_x(), {"name": "key", "shape": [1], "datatype": "INT64", "data": [1]}]},
            400,
            "must have datatype BYTES",
        ),
        ({"inputs": [_x()], "outputs": [{"name": "nope"}]}, 400, "unknown output(s) ['nope']"),
        ({"inputs": [_x()], "parameters": {"signature_name": "nope"}}, 400, "available: embedding"),
        ({"inputs": [_x()], "id": 5}, 400, "'id' must be a string"),
        ({"inputs": [_x(shape=(51, 64), data=ROW * 51)]}, 413, "exceed the limit of 50"),
        ({"input": [_x()]}, 400, "unknown field(s) ['input']"),
    ],
)
def test_v2_bad_requests(service, body, status, fragment):
    got, answer = call(service, "POST", "/v2/models/digits/infer", body)
    assert got == status, answer
    assert fragment in answer["error"]
