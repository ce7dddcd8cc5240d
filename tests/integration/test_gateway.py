"""The local HTTP API: routing, payload-v2.0 events (validated by Powertools' model), response mapping, errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from localcloud import LocalCloud
from localcloud.gateway import Route, find_route, map_response
from tests.integration.conftest import auth, wait_for

pytestmark = pytest.mark.integration


def call(
    lc: LocalCloud, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(lc.api_url + path, data=body, method=method, headers={**auth(lc), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_route_matching_most_specific_wins() -> None:
    routes = [
        Route("ANY", "/v1/models/{proxy+}", "A"),
        Route("GET", "/items/{id}", "B"),
        Route("GET", "/items/special", "C"),
        Route("ANY", "/items/{id}", "D"),
        Route("ANY", "$default", "E"),
    ]
    assert find_route(routes, "GET", "/items/special")[0].function == "C"
    assert find_route(routes, "GET", "/items/7") == (routes[1], {"id": "7"})
    assert find_route(routes, "POST", "/items/7")[0].function == "D"
    assert find_route(routes, "POST", "/v1/models/digits/versions/2:predict") == (
        routes[0],
        {"proxy": "digits/versions/2:predict"},
    )
    assert find_route(routes, "GET", "/v1/models")[0].function == "E"  # greedy needs at least one segment
    assert find_route(routes[:3], "GET", "/nothing") is None


def test_map_response_like_payload_v2() -> None:
    assert map_response({"ok": 1}) == (200, [("content-type", "application/json")], b'{"ok": 1}')
    assert map_response("hi") == (200, [("content-type", "application/json")], b"hi")
    status, headers, body = map_response({"statusCode": 204, "cookies": ["a=1"]})
    assert (status, headers, body) == (204, [("set-cookie", "a=1")], b"")


def test_http_event_is_a_real_payload_v2(cloud: LocalCloud) -> None:
    status, headers, body = call(
        cloud,
        "POST",
        "/v1/models/digits:predict?a=1&a=2&b=x%20y",
        b'{"instances": [[0.5]]}',
        {"content-type": "application/json", "Cookie": "c1=v1; c2=v2", "X-Custom": "Yes"},
    )
    assert status == 200
    assert headers["x-handler"] == "recorder" and headers["apigw-requestid"]
    out = json.loads(body)
    event = out["event"]
    parsed = APIGatewayProxyEventV2Model(**event)
    assert parsed.routeKey == "ANY /v1/models/{proxy+}"
    assert parsed.rawPath == "/v1/models/digits:predict"
    assert parsed.rawQueryString == "a=1&a=2&b=x%20y"
    assert parsed.queryStringParameters == {"a": "1,2", "b": "x y"}
    assert parsed.pathParameters == {"proxy": "digits:predict"}
    assert parsed.cookies == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-custom"] == "Yes" and "cookie" not in event["headers"]
    assert event["headers"]["x-forwarded-for"] == event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert parsed.requestContext.http.method == "POST" and parsed.requestContext.stage == "$default"
    assert parsed.requestContext.requestId == headers["apigw-requestid"]
    assert parsed.isBase64Encoded is False and json.loads(parsed.body) == {"instances": [[0.5]]}


def test_function_runs_like_on_lambda(cloud: LocalCloud) -> None:
    """Context object, cwd, layers on sys.path and under /opt, environment resolved from the template."""
    status, _, body = call(cloud, "GET", "/items/42")
    assert status == 200
    ctx = json.loads(body)["context"]
    assert ctx["function_name"] == cloud.name("RecorderFunction")
    assert ctx["invoked_function_arn"] == cloud.arn("RecorderFunction")
    assert ctx["memory_limit_in_mb"] == "256" and 0 < ctx["remaining_ms"] <= 5000
    assert ctx["cwd"].endswith("fixtures/functions/recorder")
    assert ctx["shared"] == "from-layer" and ctx["model_info"] == "model-one"
    assert ctx["localcloud_importable"] is False  # handlers cannot lean on the local cloud
    env = ctx["env"]
    assert env["WORK_QUEUE_URL"] == cloud.ref("WorkQueue") and env["WORK_QUEUE_ARN"] == cloud.arn("WorkQueue")
    assert env["JOBS_TABLE"] == cloud.name("JobsTable") and env["BUS_NAME"] == "liteserve-bus"
    assert env["RECORD_BUCKET"] == "liteserve-records-123456789012"
    assert (env["GREETING"], env["STAGE"], env["_HANDLER"]) == ("hello-test", "testing", "app.handler")


def test_binary_request_and_response(cloud: LocalCloud) -> None:
    payload = bytes(range(256)) * 4
    status, _, body = call(cloud, "PUT", "/v1/models/blob", payload, {"content-type": "application/octet-stream"})
    event = json.loads(body)["event"]
    assert status == 200 and event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    status, headers, body = call(cloud, "GET", "/v1/models/binary")
    assert status == 201 and body == bytes(range(256))
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_plain_result_becomes_200_json(cloud: LocalCloud) -> None:
    status, headers, body = call(cloud, "GET", "/v1/models/plain")
    assert (status, headers["content-type"], json.loads(body)) == (200, "application/json", {"plain": True})


def test_errors_like_api_gateway(cloud: LocalCloud) -> None:
    assert call(cloud, "GET", "/v1/models/boom")[::2] == (500, b'{"message":"Internal Server Error"}')
    assert call(cloud, "GET", "/nowhere")[::2] == (404, b'{"message":"Not Found"}')
    assert call(cloud, "DELETE", "/items/1")[0] == 404  # the route is GET only
    big = b"x" * (10 * 1024 * 1024 + 1)
    assert call(cloud, "POST", "/slow", big, {"content-type": "text/plain"})[0] == 413


def test_timeout_kills_the_container_and_fails_the_request(cloud: LocalCloud) -> None:
    before = dict(vars(cloud.pools["SlowFunction"].stats))
    status, _, body = call(cloud, "POST", "/slow", b'{"seconds": 5}', {"content-type": "application/json"})
    assert (status, body) == (500, b'{"message":"Internal Server Error"}')
    stats = cloud.pools["SlowFunction"].stats
    assert stats.timeouts == before["timeouts"] + 1
    # The next request gets a fresh container (a new cold start) and works.
    status, _, body = call(cloud, "POST", "/slow", b'{"seconds": 0}', {"content-type": "application/json"})
    assert status == 200 and json.loads(body)["slept"] == 0
    assert stats.cold_starts >= before["cold_starts"] + 1


def test_killed_container_fails_the_invocation(cloud: LocalCloud) -> None:
    import threading

    from localcloud import InvocationError

    errors: list[InvocationError] = []

    def slow_call() -> None:
        try:
            cloud.invoke("SlowFunction", {"seconds": 0.9})
        except InvocationError as exc:
            errors.append(exc)

    t = threading.Thread(target=slow_call)
    t.start()
    pool = cloud.pools["SlowFunction"]
    wait_for(lambda: pool.counts()["busy"] == 1, timeout=10, interval=0.01)
    assert cloud.kill_containers("SlowFunction") == 1
    t.join(10)
    assert len(errors) == 1 and errors[0].payload["errorType"] == "Runtime.ExitError"
    assert "signal: killed" in errors[0].payload["errorMessage"]
    assert cloud.invoke("SlowFunction", {"seconds": 0}) == {"slept": 0.0, "remaining_ms": pytest.approx(1000, abs=50)}


def test_integration_timeout_answers_503_while_the_function_runs_on(cloud: LocalCloud) -> None:
    stats = cloud.pools["SlowFunction"].stats
    before, errors = stats.invocations, stats.errors
    status, _, body = call(cloud, "POST", "/slow/short", b'{"seconds": 0.6}', {"content-type": "application/json"})
    assert (status, body) == (503, b'{"message":"Service Unavailable"}')  # TimeoutInMillis: 300
    wait_for(lambda: stats.invocations == before + 1, timeout=5)  # the invocation itself completes
    assert stats.errors == errors  # and it succeeded
