"""Open Inference Protocol binary tensor data extension (the default of tritonclient's and kserve's HTTP clients),
gzip bodies, kserve's top-level model_name and the key as a requested output, on the committed int8 model."""

from __future__ import annotations

import gzip
import json

import numpy as np
import orjson
import pytest
from liteserve.errors import BadRequest
from liteserve.http import Binary, Request
from liteserve.manifest import SignatureSpec, TensorSpec
from liteserve.protocols import v2
from liteserve.records import Signatures, parse_line
from liteserve.service import PredictService

from tests.support import MODEL_ROOT, FakeLambdaContext, http_event, import_predict_handler

HEADER = "inference-header-content-length"


def body_of(doc: dict, *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(doc).encode()
    return head + b"".join(chunks), {HEADER: str(len(head)), "content-type": "application/octet-stream"}


def bytes_tensor(items: list[str]) -> bytes:
    return b"".join(len(i.encode()).to_bytes(4, "little") + i.encode() for i in items)


def split_response(content: bytes, headers: dict[str, str]) -> tuple[dict, dict[str, bytes]]:
    """The JSON document and each binary output's bytes, by name."""
    n = int(headers[HEADER])
    doc, rest, out = orjson.loads(content[:n]), content[n:], {}
    for tensor in doc["outputs"]:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[tensor["name"]], rest = rest[:size], rest[size:]
    assert rest == b""
    return doc, out


def infer(service: PredictService, raw: bytes, headers: dict[str, str], path: str = "/v2/models/digits/infer"):
    return service.handle(Request.from_event(http_event("POST", path, raw_body=raw, headers=headers)))


def test_binary_in_and_out_match_the_json_answer(service, models, digits):
    x, _ = digits
    rows = x[:3].astype(np.float32)
    raw, headers = body_of(
        {
            "inputs": [
                {"name": "x", "shape": [3, 64], "datatype": "FP32", "parameters": {"binary_data_size": rows.nbytes}},
                {"name": "key", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]},
            ],
            "parameters": {"binary_data_output": True},
        },
        rows.tobytes(),
    )
    result = infer(service, raw, headers)
    assert isinstance(result.document, Binary)
    doc, chunks = split_response(result.document.content, result.document.headers)
    assert [t["name"] for t in doc["outputs"]] == ["key", "class_id", "probabilities"]
    ref = models.get("digits").predict("serving_default", {"x": rows})
    np.testing.assert_array_equal(np.frombuffer(chunks["probabilities"], "<f4").reshape(3, 10), ref["probabilities"])
    np.testing.assert_array_equal(np.frombuffer(chunks["class_id"], "<i8"), ref["class_id"])
    assert chunks["key"] == bytes_tensor(["a", "b", "c"])
    assert result.served.keys == ["a", "b", "c"]
    assert result.served.json_exchange is False


def test_mixed_json_and_binary_and_the_key_as_a_requested_output(service, models, digits):
    x, _ = digits
    keys = bytes_tensor(["k1", "k2"])
    raw, headers = body_of(
        {
            "model_name": "digits",  # kserve's client sends it
            "inputs": [
                {"name": "key", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(keys)}},
                {"name": "x", "shape": [2, 64], "datatype": "FP32", "data": x[:2].reshape(-1).tolist()},
            ],
            "outputs": [{"name": "class_id"}, {"name": "key", "parameters": {"binary_data": True}}],
        },
        keys,
    )
    result = infer(service, raw, headers)
    doc, chunks = split_response(result.document.content, result.document.headers)
    assert [t["name"] for t in doc["outputs"]] == ["class_id", "key"]
    ref = models.get("digits").predict("serving_default", {"x": x[:2].astype(np.float32)})
    assert doc["outputs"][0]["data"] == ref["class_id"].tolist()
    assert chunks == {"key": keys}


def test_json_request_asking_for_the_key_by_name(service):
    body = {
        "inputs": [
            {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64},
            {"name": "key", "shape": [1], "datatype": "BYTES", "data": ["only"]},
        ],
        "outputs": [{"name": "key"}, {"name": "probabilities"}],
    }
    result = service.handle(Request.from_event(http_event("POST", "/v2/models/digits/infer", body)))
    assert [t["name"] for t in result.document["outputs"]] == ["key", "probabilities"]
    assert result.document["outputs"][0]["data"] == ["only"]


X_BIN = {"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}


@pytest.mark.parametrize(
    ("doc", "tail", "length", "fragment"),
    [
        ({"inputs": [{**X_BIN, "parameters": {"binary_data_size": 252}}]}, b"\0" * 252, None, "input 'x'"),
        ({"inputs": [X_BIN]}, b"\0" * 200, None, "input 'x' declares binary_data_size 256 at offset 0"),
        ({"inputs": [X_BIN]}, b"\0" * 260, None, "260 bytes of binary data follow the JSON"),
        ({"inputs": [{**X_BIN, "data": [0.0] * 64}]}, b"\0" * 256, None, "both 'data' and parameters.binary_data"),
        ({"inputs": [{**X_BIN, "parameters": {"binary_data_size": -1}}]}, b"", None, "non-negative integer"),
        ({"inputs": [X_BIN]}, b"\0" * 256, 100000, "does not fit a body"),
        ({"inputs": [X_BIN], "model_name": "digits-edge"}, b"\0" * 256, None, "does not match the model of the path"),
        ({"inputs": [X_BIN], "outputs": [{"name": "key"}]}, b"\0" * 256, None, "send a BYTES input 'key'"),
        (
            {
                "inputs": [
                    X_BIN,
                    {"name": "key", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 3}},
                ]
            },
            b"\0" * 256 + b"\x05\0\0",
            None,
            "input 'key': binary BYTES data ends inside a length prefix",
        ),
    ],
)
def test_sizes_that_do_not_add_up_are_a_400_naming_the_tensor(service, doc, tail, length, fragment):
    raw, headers = body_of(doc, tail)
    if length is not None:
        headers[HEADER] = str(length)
    with pytest.raises(BadRequest, match=None) as err:
        infer(service, raw, headers)
    assert fragment in err.value.message


def test_gzip_bodies_are_read_and_other_encodings_refused_saying_so(service):
    rows = np.full((1, 64), 0.25, np.float32)
    raw, headers = body_of({"inputs": [X_BIN], "parameters": {"binary_data_output": False}}, rows.tobytes())
    result = infer(service, gzip.compress(raw), {**headers, "content-encoding": "gzip"})
    assert result.document["outputs"][0]["name"] == "class_id"
    app = import_predict_handler()
    event = http_event("POST", "/v2/models/digits/infer", raw_body=raw, headers={**headers, "content-encoding": "br"})
    out = app.lambda_handler(event, FakeLambdaContext())
    assert out["statusCode"] == 415
    assert "content-encoding 'br' is not supported; send the body uncompressed, gzip or deflate" in out["body"]
    event = http_event(
        "POST", "/v2/models/digits/infer", raw_body=b"\x1f\x8b garbage", headers={"content-encoding": "gzip"}
    )
    assert app.lambda_handler(event, FakeLambdaContext())["statusCode"] == 400


def test_server_metadata_lists_the_extension(service):
    assert service.handle(Request("GET", "/v2", {}, b"")).document["extensions"] == ["binary_tensor_data"]


class _Source:
    """A signature source with integer inputs: the codec sees only this, never an interpreter."""

    name, version = "ints", "1"

    def signature(self, name):
        inputs = {"a": TensorSpec("a", "int32", (-1, 2)), "b": TensorSpec("b", "uint8", (-1,))}
        return SignatureSpec("serving_default", inputs, {"y": TensorSpec("y", "int64", (-1,))})


def test_other_numeric_types_decode_from_binary():
    a = np.array([[1, -2], [3, 4]], np.int32)
    b = np.array([7, 255], np.uint8)
    doc = {
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "INT32", "parameters": {"binary_data_size": a.nbytes}},
            {"name": "b", "shape": [2], "datatype": "UINT8", "parameters": {"binary_data_size": b.nbytes}},
        ]
    }
    call = v2.decode_infer(doc, _Source(), key_field="key", max_instances=10, binary=a.tobytes() + b.tobytes())
    np.testing.assert_array_equal(call.inputs["a"], a)
    np.testing.assert_array_equal(call.inputs["b"], b)
    body, length = v2.encode_binary(
        v2.decode_infer(
            {**doc, "parameters": {"binary_data_output": True}},
            _Source(),
            key_field="key",
            max_instances=10,
            binary=a.tobytes() + b.tobytes(),
        ),
        _Source(),
        {"y": np.array([5, 6], np.int64)},
    )
    assert np.frombuffer(body[length:], "<i8").tolist() == [5, 6]


def test_binary_data_for_a_bytes_model_input_is_a_400_not_a_crash():
    class Text(_Source):
        def signature(self, name):
            return SignatureSpec("serving_default", {"s": TensorSpec("s", "object", (-1,))}, {})

    doc = {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}
    with pytest.raises(BadRequest, match="binary data for BYTES model inputs is unsupported"):
        v2.decode_infer(doc, Text(), key_field="key", max_instances=10, binary=bytes_tensor(["a"]))


def test_binary_requests_are_logged_per_instance_and_read_back(capsys, digits):
    x, _ = digits
    app = import_predict_handler()
    rows = x[:2].astype(np.float32)
    raw, headers = body_of(
        {
            "inputs": [
                {"name": "x", "shape": [2, 64], "datatype": "FP32", "parameters": {"binary_data_size": rows.nbytes}},
                {"name": "key", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]},
            ]
        },
        rows.tobytes(),
    )
    out = app.lambda_handler(
        http_event("POST", "/v2/models/digits/infer", raw_body=raw, headers=headers), FakeLambdaContext()
    )
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is False  # binary in, JSON out
    lines = [line for line in capsys.readouterr().out.splitlines() if '"prediction.instance"' in line]
    records = [r for line in lines for r in parse_line(line, Signatures(MODEL_ROOT))]
    assert [r["key"] for r in records] == ["p", "q"]
    np.testing.assert_allclose(records[0]["inputs"]["x"], rows[0])
