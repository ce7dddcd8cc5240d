"""Hostile bodies against the local cloud's HTTP API (real template, gateway and handlers): each is refused with a
4xx and a clear error, on every route that reads a body, and the function keeps serving afterwards."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud

pytestmark = pytest.mark.integration
MB = 1024 * 1024
ROUTES = ["/v1/models/digits:predict", "/v2/models/digits/infer", "/v1/labels"]


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-bad-input") as cloud:
        yield cloud


def post(lc: LocalCloud, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(
        lc.api_url + path, data=body, method="POST", headers={"content-type": content_type, **auth(lc)}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def refused(lc: LocalCloud, path: str, body: bytes, status: int, *words: str, **kwargs: str) -> str:
    """Assert the function refused `body` with `status` and an error naming `words`; return the message."""
    got, doc = post(lc, path, body, **kwargs)
    assert got == status, (got, doc)
    assert set(doc) == {"error"} and isinstance(doc["error"], str), doc
    for word in words:
        assert word in doc["error"], (word, doc["error"])
    return doc["error"]


def row(value: str) -> bytes:
    """A predict body with one 64-value row whose first value is the literal `value` (raw JSON text)."""
    return ('{"instances": [[' + value + ", " + ", ".join(["0"] * 63) + "]]}").encode()


@pytest.mark.parametrize("path", ROUTES)
def test_body_over_the_lambda_limit_is_413_from_the_function(lc, path):
    body = b'{"instances": [' + b"0," * (7 * MB // 2) + b"0]}"  # 7 MB: under API Gateway's 10 MB, over Lambda's 6 MB
    refused(lc, path, body, 413, "exceeds the limit of 6291456")


def test_body_over_the_gateway_limit_is_413_from_the_gateway(lc):
    status, doc = post(lc, ROUTES[0], b"[" + b"0," * (11 * MB // 2) + b"0]")
    assert status == 413
    assert doc == {"message": "Request Entity Too Large"}  # API Gateway's own body: the function never runs


@pytest.mark.parametrize("path", ROUTES)
def test_deeply_nested_json_is_400(lc, path):
    depth = 100_000
    refused(lc, path, b"[" * depth + b"]" * depth, 400, "not valid JSON")


def test_nesting_deeper_than_the_input_is_named(lc):
    deep = "[" * 50 + "1" + "]" * 50
    message = refused(lc, ROUTES[0], row(deep), 400, "instance 0")
    assert "expected a number" in message


@pytest.mark.parametrize(
    "literal",
    ["1e400", "-1e400", "3.5e38", "1" + "0" * 400, "NaN", "Infinity", "-Infinity"],
)
def test_huge_or_non_finite_numbers_are_400_naming_the_instance(lc, literal):
    message = refused(lc, ROUTES[0], row(literal), 400, "instance 0")
    assert "out of range" in message or "NaN" in message


def test_huge_numbers_in_v2_data_are_400(lc):
    data = "[1e400" + ", 0" * 63 + "]"
    body = f'{{"inputs": [{{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": {data}}}]}}'.encode()
    refused(lc, ROUTES[1], body, 400, "input 'x'")


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "body",
    [b'{"instances": [[\xff\xfe]]}', b"\xef\xbb\xbf" + b"\x80" * 20, b'{"key": "\xc3\x28"}', b"\x1f\x8b\x08\x00gzip"],
    ids=["invalid-bytes", "bom-then-garbage", "bad-continuation", "gzip-magic"],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_non_utf8_bodies_are_400(lc, path, body, content_type):
    # As JSON the gateway delivers text with U+FFFD for each invalid byte (as API Gateway does); as curl -d's form
    # type, base64 of the raw bytes.
    refused(lc, path, body, 400, "not valid", content_type=content_type)


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x", "image/png"])
def test_wrong_content_types_are_415(lc, path, content_type):
    body = row("0")
    refused(lc, path, body, 415, content_type.split(";")[0], "application/json", content_type=content_type)


@pytest.mark.parametrize("path", ROUTES)
def test_empty_and_non_object_bodies_are_400(lc, path):
    refused(lc, path, b"", 400, "empty")
    refused(lc, path, b"   ", 400, "empty")
    refused(lc, path, b'"just a string"', 400)


def test_the_function_still_serves_after_the_hostile_bodies(lc):
    status, doc = post(lc, ROUTES[0], json.dumps({"instances": [{"key": "a", "x": [0] * 64}]}).encode())
    assert status == 200
    assert doc["predictions"][0]["key"] == "a"
