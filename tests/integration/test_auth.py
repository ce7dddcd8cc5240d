"""The API's auth rule on the local gateway: which routes are protected (SAM semantics, from fixture templates and
from the project's template.yaml), 401 without a token, 403 with a wrong one, the function's answer with the right
one; the token file; the authorizer context in the event."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from localcloud import LocalCloud
from localcloud.auth import TOKEN_ENV, check_request, read_token, write_token
from localcloud.gateway import Route, routes_from_functions
from localcloud.runtime import function_specs
from localcloud.template import Template, TemplateError
from tests.integration.conftest import FIXTURES, PROJECT_TEMPLATE, auth, project_cloud, wait_for

pytestmark = pytest.mark.integration
ECHO = FIXTURES / "functions" / "echo"
UNAUTHORIZED = (401, {"message": "Unauthorized"})
FORBIDDEN = (403, {"message": "Forbidden"})


def call(
    lc: LocalCloud, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Status and parsed JSON body (raw bytes when not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        lc.api_url + path, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def routes(tpl: Template) -> dict[str, Route]:
    from localcloud.auth import http_api_auth

    return {r.route_key: r for r in routes_from_functions(function_specs(tpl), http_api_auth(tpl))}


def tiny_template(tmp_path: Path, api_auth: str, event_auth: str = "", globals_auth: str = "") -> Template:
    """One echo function on the implicit API (+ Globals) and on an explicit one, both with the given Auth blocks."""
    text = f"""
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: {{Runtime: python3.11, CodeUri: {ECHO}, Handler: app.handler}}
{"  HttpApi: {Auth: " + globals_auth + "}" if globals_auth else ""}
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties: {{Auth: {api_auth}}}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Explicit:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Path: /explicit, Method: GET{", Auth: " + event_auth if event_auth else ""}}}
        Implicit:
          Type: HttpApi
          Properties: {{Path: /implicit, Method: GET}}
"""
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return Template.load(path)


# ------------------------------------------------------------------------------------------- the rule (no server)


def test_the_rule_follows_sam_default_authorizer_event_authorizer_and_none() -> None:
    iam = routes(Template.load(FIXTURES / "auth.yaml"))
    assert iam["ANY /data/{proxy+}"].auth.kind == "iam"  # the API's DefaultAuthorizer AWS_IAM
    assert iam["GET /data/health"].auth is None  # Auth: {Authorizer: NONE}
    scoped = iam["GET /scoped"].auth  # named by the event, with its scopes
    assert (scoped.authorizer, scoped.kind, scoped.scopes) == ("Jwt", "jwt", ("predict",))
    assert iam["GET /open"].auth is None and iam["GET /implicit"].auth is None  # APIs without Auth
    jwt = routes(Template.load(FIXTURES / "auth.yaml", parameters={"AuthMode": "jwt"}))  # !If in DefaultAuthorizer
    assert jwt["ANY /data/{proxy+}"].auth.authorizer == "Jwt" and jwt["GET /data/health"].auth is None
    # Without the APIs' Auth (the old call), every route is open.
    assert all(r.auth is None for r in routes_from_functions(function_specs(Template.load(FIXTURES / "auth.yaml"))))


def test_globals_protect_the_implicit_api_and_a_lambda_authorizer_counts(tmp_path: Path) -> None:
    lam = "{DefaultAuthorizer: L, Authorizers: {L: {FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:a}}}"
    got = routes(tiny_template(tmp_path, api_auth="{}", globals_auth=lam))
    # Globals.HttpApi applies to every HttpApi: the explicit one too (its own empty Auth merges over it).
    assert got["GET /implicit"].auth.kind == "lambda" and got["GET /explicit"].auth.kind == "lambda"
    got = routes(tiny_template(tmp_path, api_auth="{EnableIamAuthorizer: true}", event_auth="{Authorizer: AWS_IAM}"))
    assert got["GET /explicit"].auth.kind == "iam" and got["GET /implicit"].auth is None


@pytest.mark.parametrize(
    "parameters", [{}, {"ApiAuth": "JWT", "JwtIssuer": "https://issuer.example.com", "JwtAudience": "liteserve"}]
)
def test_the_project_template_protects_every_data_route_in_both_auth_modes(parameters: dict[str, str]) -> None:
    got = routes(Template.load(PROJECT_TEMPLATE, parameters=parameters))
    data = ["ANY /v1/models/{proxy+}", "ANY /v2/{proxy+}", "POST /v1/labels"]
    data += ["GET /v1/batch/jobs/{proxy+}", "GET /v1/predictions/{proxy+}"]
    kind = "jwt" if parameters else "iam"
    assert {key: got[key].auth.kind for key in data} == dict.fromkeys(data, kind)
    assert got["GET /v2/health/live"].auth is None and got["GET /v2/health/ready"].auth is None


@pytest.mark.parametrize(
    ("api_auth", "event_auth", "message"),
    [
        ("{DefaultAuthorizer: AWS_IAM}", "", "needs Auth.EnableIamAuthorizer"),
        ("{DefaultAuthorizer: Nope}", "", "'Nope' is not defined"),
        ("{}", "{Authorizer: Missing}", "'Missing' is not defined in its HttpApi's Auth.Authorizers (none)"),
    ],
)
def test_an_authorizer_the_api_does_not_define_is_a_template_error(tmp_path, api_auth, event_auth, message) -> None:
    with pytest.raises(TemplateError, match=r"^Fn event Explicit: ") as err:
        routes(tiny_template(tmp_path, api_auth=api_auth, event_auth=event_auth))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("headers", "token", "expected"),
    [
        ([], "s3cret", (401, b'{"message":"Unauthorized"}')),
        (["  "], "s3cret", (401, b'{"message":"Unauthorized"}')),
        (["Bearer s3cret"], "s3cret", None),
        (["bearer  s3cret "], "s3cret", None),  # the scheme is case-insensitive (RFC 6750)
        (["Bearer s3cre"], "s3cret", (403, b'{"message":"Forbidden"}')),
        (["Bearer"], "s3cret", (403, b'{"message":"Forbidden"}')),
        (["Basic s3cret"], "s3cret", (403, b'{"message":"Forbidden"}')),
        (["Bearer s3cret", "Bearer s3cret"], "s3cret", (403, b'{"message":"Forbidden"}')),
        (["Bearer \u00e9t\u00e9"], "s3cret", (403, b'{"message":"Forbidden"}')),  # non-ASCII: refused, no crash
        (["Bearer anything"], None, (403, b'{"message":"Forbidden"}')),  # no token configured: fail closed
    ],
)
def test_check_request(headers: list[str], token: str | None, expected: tuple[int, bytes] | None) -> None:
    assert check_request(headers, token) == expected


def test_token_file_is_private_and_clients_prefer_the_environment(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "token"
    stale.write_text("old\n")
    os.chmod(stale, 0o644)
    path = write_token(tmp_path, "new-token")
    assert path == stale and stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new-token\n"
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token(tmp_path) == "new-token"
    assert read_token(tmp_path / "nowhere") is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert read_token(tmp_path) == "from-env"


# ------------------------------------------------------------------------------------------- fixture template


@pytest.fixture(scope="module")
def fixture_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(
        FIXTURES / "auth.yaml",
        state_dir=tmp_path_factory.mktemp("lc-auth"),
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=1,
        token="fixture-token",
    ) as lc:
        yield lc


def test_local_cloud_takes_a_token_or_generates_one(fixture_cloud: LocalCloud) -> None:
    assert fixture_cloud.token == "fixture-token"
    assert len(LocalCloud(FIXTURES / "auth.yaml").token) >= 40  # not started: only the generated token


def test_gateway_enforces_the_rule(fixture_cloud: LocalCloud) -> None:
    lc = fixture_cloud
    before = lc.pools["EchoFunction"].stats.invocations
    assert call(lc, "POST", "/data/x", {"a": 1}) == UNAUTHORIZED
    assert call(lc, "POST", "/data/x", {"a": 1}, {"authorization": "Bearer wrong"}) == FORBIDDEN
    assert call(lc, "GET", "/scoped", headers={"authorization": "Basic fixture-token"}) == FORBIDDEN
    status, out = call(lc, "POST", "/data/x", {"a": 1}, auth(lc))
    assert status == 200 and json.loads(out["event"]["body"]) == {"a": 1}
    for path in ("/data/health", "/open", "/implicit"):
        status, out = call(lc, "GET", path)
        assert status == 200 and "authorizer" not in out["event"]["requestContext"], path
    assert call(lc, "GET", "/nowhere")[0] == 404  # routing comes first: an unknown route is not an auth failure
    assert lc.pools["EchoFunction"].stats.invocations - before == 4  # refused requests never reach the function


def test_the_event_carries_the_authorizer_context(fixture_cloud: LocalCloud) -> None:
    _, out = call(fixture_cloud, "GET", "/data/x", headers=auth(fixture_cloud))
    event = APIGatewayProxyEventV2Model(**out["event"])
    assert event.requestContext.authorizer.iam.accountId == "123456789012"
    assert out["event"]["headers"]["authorization"] == "Bearer fixture-token"  # passed through, as on AWS
    _, out = call(fixture_cloud, "GET", "/scoped", headers=auth(fixture_cloud))
    assert APIGatewayProxyEventV2Model(**out["event"]).requestContext.authorizer.jwt.scopes == ["predict"]


def test_the_api_brought_back_still_enforces(fixture_cloud: LocalCloud) -> None:
    fixture_cloud.stop_api()
    fixture_cloud.start_api()
    assert call(fixture_cloud, "GET", "/data/x") == UNAUTHORIZED
    assert call(fixture_cloud, "GET", "/data/x", headers=auth(fixture_cloud))[0] == 200


# ------------------------------------------------------------------------------------------- the project template

X = [0.0] * 64
DATA_ROUTES = [  # (method, path, body) of every data route: predict, infer, labels, batch status, lookup, artifact
    ("POST", "/v1/models/digits:predict", {"instances": [{"key": "auth-1", "x": X}]}),
    ("POST", "/v2/models/digits/infer", {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X}]}),
    ("POST", "/v1/labels", [{"key": "auth-1", "label": "5"}]),
    ("GET", "/v1/batch/jobs/auth-job.jsonl", None),
    ("GET", "/v1/predictions/auth-9", None),
    ("GET", "/v1/models/digits-edge/artifact", None),
    ("GET", "/v1/models/digits", None),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-auth-project") as lc:
        # A tiny cached batch job, so that the job status and the prediction lookup have something to answer.
        rows = b"".join(b'{"key": "auth-%d", "x": %s}\n' % (i, json.dumps(X).encode()) for i in range(10))
        lc.client("s3").put_object(
            Bucket=lc.name("DataBucket"), Key="incoming/auth-job.jsonl", Body=rows, Metadata={"cache": "true"}
        )
        job = lambda: call(lc, "GET", "/v1/batch/jobs/auth-job.jsonl", headers=auth(lc))[1]  # noqa: E731
        wait_for(lambda: job().get("state") == "SUCCEEDED", timeout=90)
        yield lc


@pytest.mark.parametrize(("method", "path", "body"), DATA_ROUTES, ids=[f"{m} {p}" for m, p, _ in DATA_ROUTES])
def test_every_data_route_needs_the_token(project: LocalCloud, method: str, path: str, body: Any) -> None:
    assert call(project, method, path, body) == UNAUTHORIZED
    assert call(project, method, path, body, {"authorization": "Bearer " + project.token[::-1]}) == FORBIDDEN
    assert call(project, method, path, body, {"authorization": project.token}) == FORBIDDEN  # no scheme
    status, out = call(project, method, path, body, auth(project))
    assert status == 200, out


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_routes_stay_open(project: LocalCloud, path: str) -> None:
    assert next(r for r in project.gateway.routes if r.route_key == f"GET {path}").auth is None
    assert call(project, "GET", path)[0] == 200
