"""The shared HTTP adapter behind the local API Gateway: a 405 names the allowed methods, and a real fault inside
the labels and batch-API functions (their DynamoDB table gone) answers 500 {"error": ...}, not {"message": ...}."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-http-errors") as cloud:
        yield cloud


def call(lc: LocalCloud, method: str, path: str, body: object = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", **auth(lc)}
    request = urllib.request.Request(lc.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_405_names_the_allowed_method(lc):
    status, headers, body = call(lc, "PUT", "/v2/models/digits/infer", {"inputs": []})
    assert status == 405 and headers["allow"] == "POST"
    assert body == {"error": "PUT /v2/models/digits/infer is not allowed; use POST"}


def test_a_fault_inside_labels_and_batch_api_is_a_500_in_the_protocol_shape(lc):
    ddb = lc.client("dynamodb")
    assert call(lc, "GET", "/v1/batch/jobs/nope")[0] == 404  # healthy first
    ddb.delete_table(TableName=lc.name("JobsTable"))
    status, _, body = call(lc, "GET", "/v1/batch/jobs/nope")
    assert (status, body) == (500, {"error": "internal error"})
    assert call(lc, "POST", "/v1/labels", [{"key": "k1", "label": 3}])[0] == 200
    ddb.delete_table(TableName=lc.name("LabelsTable"))
    status, _, body = call(lc, "POST", "/v1/labels", [{"key": "k1", "label": 3}])
    assert (status, body) == (500, {"error": "internal error"})
