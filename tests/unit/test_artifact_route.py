"""GET /v1/models/{name}/artifact and /artifact/manifest: the served .tflite bytes (base64 proxy response with its
sha256) and the manifest, through the real predict handler on real-shaped HTTP API events."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from liteserve.http import Binary, response

from tests.support import MODEL_ROOT, FakeLambdaContext, http_event, import_predict_handler


@pytest.fixture(scope="module")
def app():
    return import_predict_handler()


@pytest.mark.parametrize("name", ["digits-edge", "digits-cloud"])
def test_artifact_is_the_served_file_base64_with_its_sha256(app, name):
    result = app.lambda_handler(http_event("GET", f"/v1/models/{name}/artifact"), FakeLambdaContext())
    on_disk = (MODEL_ROOT / name / "model.tflite").read_bytes()
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is True
    assert result["headers"]["content-type"] == "application/octet-stream"
    body = base64.b64decode(result["body"], validate=True)
    assert body == on_disk
    manifest = json.loads((MODEL_ROOT / name / "manifest.json").read_text())
    assert result["headers"]["x-liteserve-sha256"] == hashlib.sha256(on_disk).hexdigest() == manifest["sha256"]
    assert result["headers"]["x-liteserve-model-version"] == manifest["version"]


def test_artifact_manifest_is_the_manifest_document(app):
    result = app.lambda_handler(http_event("GET", "/v1/models/digits-edge/artifact/manifest"), FakeLambdaContext())
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    assert result["headers"]["content-type"] == "application/json"
    assert json.loads(result["body"]) == json.loads((MODEL_ROOT / "digits-edge" / "manifest.json").read_text())


def test_artifact_with_the_served_version_and_a_wrong_one(app):
    version = json.loads((MODEL_ROOT / "digits-edge" / "manifest.json").read_text())["version"]
    ok = app.lambda_handler(
        http_event("GET", f"/v1/models/digits-edge/versions/{version}/artifact"), FakeLambdaContext()
    )
    assert ok["statusCode"] == 200
    wrong = app.lambda_handler(http_event("GET", "/v1/models/digits-edge/versions/999/artifact"), FakeLambdaContext())
    assert wrong["statusCode"] == 404
    assert "version 999" in json.loads(wrong["body"])["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/no-such-model/artifact", 404),
        ("GET", "/v1/models/no-such-model/artifact/manifest", 404),
        ("POST", "/v1/models/digits-edge/artifact", 405),
        ("DELETE", "/v1/models/digits-edge/artifact/manifest", 405),
        ("GET", "/v1/models/digits-edge/artifact/other", 404),
    ],
)
def test_artifact_errors(app, method, path, status):
    result = app.lambda_handler(http_event(method, path), FakeLambdaContext())
    assert result["statusCode"] == status
    assert json.loads(result["body"])["error"]


def test_binary_response_helper_merges_headers():
    out = response(200, Binary(b"\x00\xff", headers={"x-a": "1"}), headers={"x-b": "2"})
    assert out == {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream", "x-a": "1", "x-b": "2"},
        "body": "AP8=",
        "isBase64Encoded": True,
    }
