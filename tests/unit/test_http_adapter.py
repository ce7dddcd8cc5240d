"""The one HTTP adapter (liteserve.http: route table, 405 with Allow, error map, catch-all) as every HTTP function
uses it, and the event-type check of every function (liteserve.events)."""

from __future__ import annotations

import json

import pytest
from liteserve.errors import NotFound
from liteserve.events import HTTP, S3, SCHEDULE, SQS, UnexpectedEvent, expects, kind
from liteserve.http import Request, Result, Router, serve

from tests.support import FakeLambdaContext, http_event, import_handler, import_predict_handler

AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "LITESERVE_BUCKET": "liteserve-dev-data-123456789012",
    "LITESERVE_LABELS_TABLE": "liteserve-dev-labels",
    "LITESERVE_JOBS_TABLE": "liteserve-dev-jobs",
    "LITESERVE_CACHE_TABLE": "liteserve-dev-cache",
    "POWERTOOLS_SERVICE_NAME": "liteserve",
    "POWERTOOLS_METRICS_NAMESPACE": "Liteserve",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def _answer(out: dict) -> tuple[int, dict]:
    return out["statusCode"], json.loads(out["body"])


def test_router_405_names_the_allowed_methods_in_the_allow_header():
    router = Router(
        [("GET", r"/things/(?P<id>\w+)", lambda r, id: Result(200, {"id": id})), ("PUT", r"/things/\w+", None)]
    )
    assert _answer(serve(http_event("GET", "/things/a1"), router.dispatch).response) == (200, {"id": "a1"})
    out = serve(http_event("DELETE", "/things/a1"), router.dispatch).response
    assert out["statusCode"] == 405
    assert out["headers"]["allow"] == "GET, PUT"
    assert json.loads(out["body"]) == {"error": "DELETE /things/a1 is not allowed; use GET or PUT"}
    assert _answer(serve(http_event("GET", "/other"), router.dispatch).response)[0] == 404


def test_domain_errors_keep_their_status_and_a_bug_is_a_500_with_the_trace_logged(caplog):
    def missing(request: Request) -> Result:
        raise NotFound("no such thing")

    def bug(request: Request) -> Result:
        raise ZeroDivisionError("hidden detail")

    exchange = serve(http_event("GET", "/x"), missing)
    assert _answer(exchange.response) == (404, {"error": "no such thing"})
    exchange = serve(http_event("GET", "/x"), bug)
    assert _answer(exchange.response) == (500, {"error": "internal error"})
    assert exchange.error is not None and exchange.error.status == 500
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.exc_info[0] is ZeroDivisionError  # the trace is in the log, not in the answer


def test_predict_answers_405_with_allow():
    app = import_predict_handler()
    out = app.lambda_handler(http_event("DELETE", "/v2/models/digits/infer"), FakeLambdaContext())
    assert out["statusCode"] == 405
    assert out["headers"]["allow"] == "POST"


@pytest.fixture(scope="module")
def labels_app():
    return import_handler("labels", AWS_ENV)


@pytest.fixture(scope="module")
def batch_api_app():
    return import_handler("batch_api", AWS_ENV)


def test_labels_bug_answers_500_error_shape(labels_app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("table went away")

    monkeypatch.setattr(labels_app.labels, "put_many", broken)
    event = http_event("POST", "/v1/labels", [{"key": "k1", "label": 3}], route_key="POST /v1/labels")
    out = labels_app.lambda_handler(event, FakeLambdaContext())
    assert _answer(out) == (500, {"error": "internal error"})


def test_labels_routes_and_client_errors(labels_app):
    event = http_event("GET", "/v1/labels", route_key="POST /v1/labels")
    out = labels_app.lambda_handler(event, FakeLambdaContext())
    assert out["statusCode"] == 405 and out["headers"]["allow"] == "POST"
    event = http_event("POST", "/v1/labels", {"nope": 1}, route_key="POST /v1/labels")
    status, body = _answer(labels_app.lambda_handler(event, FakeLambdaContext()))
    assert status == 400 and body["error"]


def test_batch_api_bug_answers_500_error_shape(batch_api_app, monkeypatch):
    def broken(job_id):
        raise RuntimeError("dynamodb timeout")

    monkeypatch.setattr(batch_api_app.pipeline.jobs, "get", broken)
    event = http_event("GET", "/v1/batch/jobs/j1", route_key="GET /v1/batch/jobs/{proxy+}")
    out = batch_api_app.lambda_handler(event, FakeLambdaContext())
    assert _answer(out) == (500, {"error": "internal error"})
    event = http_event("POST", "/v1/batch/jobs/j1", route_key="GET /v1/batch/jobs/{proxy+}")
    out = batch_api_app.lambda_handler(event, FakeLambdaContext())
    assert out["statusCode"] == 405 and out["headers"]["allow"] == "GET"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (http_event("GET", "/v2"), HTTP),
        ({"Records": [{"eventSource": "aws:s3", "s3": {}}]}, S3),
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, SQS),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, SCHEDULE),
    ],
)
def test_event_kinds(event, expected):
    assert kind(event) == expected


def test_a_handler_given_another_functions_event_names_the_one_it_expects():
    @expects(SQS)
    def handler(event, context):
        return "ran"

    assert handler({"Records": [{"eventSource": "aws:sqs"}]}, None) == "ran"
    with pytest.raises(UnexpectedEvent, match=r"expects an SQS message batch .* given an S3 ObjectCreated"):
        handler({"Records": [{"eventSource": "aws:s3", "s3": {}}]}, None)
    with pytest.raises(UnexpectedEvent, match="given an API Gateway HTTP API request"):
        handler(http_event("GET", "/v2"), None)

    @expects(SCHEDULE)
    def scheduled(event, context):
        return "ran"

    assert scheduled({}, None) == scheduled({"time": "2026-11-28T03:00:00Z"}, None) == "ran"
    with pytest.raises(UnexpectedEvent, match='given an EventBridge "RetrainRequested" event'):
        scheduled({"detail-type": "RetrainRequested", "source": "liteserve.evaluation", "detail": {}}, None)


def test_predict_refuses_an_s3_event_naming_the_http_request_it_expects():
    app = import_predict_handler()
    with pytest.raises(UnexpectedEvent, match="expects an API Gateway HTTP API request"):
        app.lambda_handler({"Records": [{"eventSource": "aws:s3", "s3": {}}]}, FakeLambdaContext())
