"""TF Serving REST beyond :predict: `:classify` / `:regress` over the JSON examples format, and `{"b64": ...}` for
string inputs and outputs (the codec sees only a signature source, so string models are stood in for here)."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from liteserve.errors import BadRequest, LiteserveError
from liteserve.http import Request
from liteserve.manifest import SignatureSpec, TensorSpec
from liteserve.protocols import tfserving
from liteserve.records import Signatures, parse_line

from tests.support import MODEL_ROOT, FakeLambdaContext, http_event, import_predict_handler


def call(service, path: str, body) -> tuple[int, dict]:
    try:
        result = service.handle(Request.from_event(http_event("POST", path, body)))
    except LiteserveError as err:
        return err.status, {"error": err.message}
    return result.status, orjson.loads(orjson.dumps(result.document, option=orjson.OPT_SERIALIZE_NUMPY))


def test_classify_answers_label_score_pairs_for_every_class(service, models, digits):
    x, _ = digits
    status, body = call(
        service, "/v1/models/digits:classify", {"examples": [{"x": x[0].tolist()}, {"x": x[1].tolist()}]}
    )
    assert status == 200, body
    ref = models.get("digits").predict("serving_default", {"x": x[:2].astype(np.float32)})["probabilities"]
    labels = models.get("digits").manifest.labels
    assert [[label for label, _ in pairs] for pairs in body["results"]] == [labels, labels]
    np.testing.assert_allclose([[s for _, s in pairs] for pairs in body["results"]], ref, rtol=1e-6)


def test_classify_context_holds_shared_features_and_keys_reach_the_log(service, digits):
    x, _ = digits
    body = {"context": {"x": x[3].tolist()}, "examples": [{"key": "a"}, {"key": "b"}]}
    result = service.handle(Request.from_event(http_event("POST", "/v1/models/digits/versions/1:classify", body)))
    assert len(result.document["results"]) == 2
    assert result.document["results"][0] == result.document["results"][1]
    assert result.served.keys == ["a", "b"] and result.served.json_exchange is False


def test_classify_without_label_names_answers_class_ids(service, digits):
    x, _ = digits
    sig = service.models.get("digits").signature(None)
    examples = tfserving.decode_examples(
        {"examples": [{"x": x[0].tolist()}]}, _Fixed(sig), "classify", key_field="key", max_instances=5
    )
    scores = {"probabilities": np.array([[0.25] * 10], np.float32), "class_id": np.array([0])}
    assert tfserving.encode_classify(examples, scores, [])["results"][0][:2] == [["0", 0.25], ["1", 0.25]]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/v1/models/digits:regress", {"examples": [{"x": [0.5] * 64}]}, "is not a regression signature"),
        (
            "/v1/models/digits:classify",
            {"signature_name": "embedding", "examples": [{"x": [0.5] * 64}]},
            "signature 'embedding' is not a classification signature",
        ),
        ("/v1/models/digits:classify", {"instances": [[0.5] * 64]}, "unknown field(s) ['instances']; :classify takes"),
        ("/v1/models/digits:classify", {"examples": []}, "'examples' must be a non-empty list"),
        (
            "/v1/models/digits:classify",
            {"examples": [{"y": [0.5] * 64}]},
            "example 0: missing feature(s) ['x'], unknown ['y']",
        ),
        (
            "/v1/models/digits:classify",
            {"context": {"x": [0.5] * 64}, "examples": [{"x": [0.5] * 64}]},
            "example 0: feature(s) ['x'] also in 'context'",
        ),
        ("/v1/models/digits:classify", {"examples": [{"x": [0.5] * 63}]}, "example 0: input 'x' expected 64 values"),
        ("/v1/models/digits:classify", {"examples": [{"x": {"b64": "AAAA"}}]}, "example 0: input 'x' expected a list"),
        (
            "/v1/models/digits:classify",
            {"examples": [{"x": [0.5] * 64, "key": "a"}, {"x": [0.5] * 64}]},
            "every example",
        ),
    ],
)
def test_examples_requests_refused_clearly(service, path, body, fragment):
    status, answer = call(service, path, body)
    assert status == 400, answer
    assert fragment in answer["error"]


class _Fixed:
    """A signature source with one signature."""

    name, version = "fixed", "1"

    def __init__(self, sig: SignatureSpec) -> None:
        self.sig = sig

    def signature(self, name):
        return self.sig


TEXT = SignatureSpec(
    "serving_default",
    {"image_bytes": TensorSpec("image_bytes", "object", (-1,))},
    {"caption": TensorSpec("caption", "object", (-1,)), "thumb_bytes": TensorSpec("thumb_bytes", "object", (-1,))},
)
REGRESSION = SignatureSpec(
    "serving_default", {"x": TensorSpec("x", "float32", (-1, 2))}, {"y": TensorSpec("y", "float32", (-1, 1))}
)


def test_b64_string_inputs_decode_to_bytes_and_plain_strings_to_utf8():
    raw = b"\x89PNG\x00\xff"
    doc = {"instances": [{"b64": base64.b64encode(raw).decode()}, "plain text"]}
    got = tfserving.decode_predict(doc, _Fixed(TEXT), key_field="key", max_instances=5)
    assert got.inputs["image_bytes"].tolist() == [raw, b"plain text"]
    keyed = {"instances": [{"key": "k", "image_bytes": {"b64": "aGk="}}]}
    assert tfserving.decode_predict(keyed, _Fixed(TEXT), key_field="key", max_instances=5).inputs[
        "image_bytes"
    ].tolist() == [b"hi"]
    with pytest.raises(BadRequest, match="instance 0: input 'image_bytes': 'b64' is not valid base64"):
        tfserving.decode_predict({"instances": [{"b64": "%%%"}]}, _Fixed(TEXT), key_field="key", max_instances=5)
    with pytest.raises(BadRequest, match=r'expected a string or \{"b64": "..."\}, got int'):
        tfserving.decode_predict({"instances": [7]}, _Fixed(TEXT), key_field="key", max_instances=5)


def test_string_outputs_are_strings_or_b64():
    got = tfserving.decode_predict({"instances": ["a", "b"]}, _Fixed(TEXT), key_field="key", max_instances=5)
    outputs = {
        "caption": np.array([b"a cat", b"\xff\xfe"], dtype=object),
        "thumb_bytes": np.array([b"ok", b"\x00"], dtype=object),
    }
    doc = orjson.loads(orjson.dumps(tfserving.encode_predict(got, outputs), option=orjson.OPT_SERIALIZE_NUMPY))
    assert doc["predictions"] == [
        {"caption": "a cat", "thumb_bytes": {"b64": "b2s="}},
        {"caption": {"b64": "//4="}, "thumb_bytes": {"b64": "AA=="}},
    ]


def test_regress_answers_one_value_per_example():
    examples = tfserving.decode_examples(
        {"context": {"x": [1.0, 2.0]}, "examples": [{}, {}]},
        _Fixed(REGRESSION),
        "regress",
        key_field="key",
        max_instances=5,
    )
    assert examples.output == "y" and examples.inputs["x"].shape == (2, 2)
    assert tfserving.encode_regress(examples, {"y": np.array([[3.5], [4.0]], np.float32)}) == {"results": [3.5, 4.0]}


def test_classify_is_logged_per_instance_with_its_keys(capsys, digits):
    x, _ = digits
    app = import_predict_handler()
    event = http_event("POST", "/v1/models/digits:classify", {"examples": [{"key": "c1", "x": x[0].tolist()}]})
    out = app.lambda_handler(event, FakeLambdaContext())
    assert out["statusCode"] == 200
    lines = [line for line in capsys.readouterr().out.splitlines() if '"prediction.instance"' in line]
    (record,) = [r for line in lines for r in parse_line(line, Signatures(MODEL_ROOT))]
    assert record["key"] == "c1" and len(record["outputs"]["probabilities"]) == 10
