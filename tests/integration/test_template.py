"""Template reading: CloudFormation tags, parameters, conditions, Globals, intrinsics; schedule expressions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from localcloud.runtime import function_specs
from localcloud.schedule import Expression, ScheduleError
from localcloud.template import Template, TemplateError, load_yaml
from tests.integration.conftest import FIXTURES

BASE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub "${AWS::StackName}-${Stage}-q"}}
  B: {Type: AWS::S3::Bucket}
  T: {Type: AWS::DynamoDB::Table, Properties: {TableName: !Join ["_", [!Ref Stage, jobs]]}}
  Only: {Type: AWS::S3::Bucket, Condition: IsProd}
"""


def load(tmp_path: Path, text: str = BASE, **kw: object) -> Template:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return Template.load(p, stack_name="st", endpoint_url="http://127.0.0.1:5000", **kw)  # type: ignore[arg-type]


def test_intrinsics_resolve_like_cloudformation(tmp_path: Path) -> None:
    t = load(tmp_path)
    assert t.ref("Q") == "http://127.0.0.1:5000/123456789012/st-dev-q"
    assert t.resolve({"Fn::GetAtt": ["Q", "Arn"]}) == "arn:aws:sqs:us-east-1:123456789012:st-dev-q"
    assert t.resolve({"Fn::Sub": "${B}/${Q.QueueName}/${!Literal}"}) == "st-b/st-dev-q/${Literal}"
    assert t.resolve({"Fn::Sub": ["${x}-${AWS::Region}", {"x": {"Ref": "T"}}]}) == "dev_jobs-us-east-1"
    assert t.resolve({"k": {"Fn::If": ["IsProd", "a", {"Ref": "AWS::NoValue"}]}}) == {}
    assert t.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert list(t.of_type("AWS::S3::Bucket")) == ["B"]  # "Only" is conditional


def test_parameters_are_validated(tmp_path: Path) -> None:
    assert load(tmp_path, parameters={"Stage": "prod"}).name("T") == "prod_jobs"
    with pytest.raises(TemplateError, match="AllowedValues"):
        load(tmp_path, parameters={"Stage": "qa"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        load(tmp_path, parameters={"Nope": "x"})


def test_unresolvable_references_fail_loudly(tmp_path: Path) -> None:
    t = load(tmp_path)
    with pytest.raises(TemplateError, match="unresolvable !Ref Missing"):
        t.resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match=r"unsupported GetAtt B\.Nope"):
        t.resolve({"Fn::GetAtt": ["B", "Nope"]})


def test_globals_merge_into_functions() -> None:
    t = Template.load(FIXTURES / "template.yaml")
    specs = function_specs(t)
    worker, recorder = specs["WorkerFunction"], specs["RecorderFunction"]
    assert (worker.timeout, worker.memory, worker.reserved_concurrency) == (1, 256, 2)  # local Timeout wins
    assert recorder.env["MODEL_ROOT"] == "/opt/models" and recorder.env["GREETING"] == "hello-test"  # maps merge
    assert worker.env == {
        "MODEL_ROOT": "/opt/models",
        "RECORD_BUCKET": "liteserve-records-123456789012",
        "STAGE": "testing",
    }
    assert [d.name for d in recorder.layer_dirs] == ["layer"]


def test_sqs_visibility_shorter_than_timeout_is_rejected(tmp_path: Path) -> None:
    from localcloud.cloud import LocalCloud

    text = (FIXTURES / "template.yaml").read_text().replace("      Timeout: 1\n", "      Timeout: 3\n")
    bad = FIXTURES / "_bad_visibility.yaml"  # next to the fixtures: CodeUri paths are relative
    bad.write_text(text)
    try:
        with pytest.raises(TemplateError, match="visibility timeout"):
            LocalCloud(bad, state_dir=tmp_path, moto_port=0, api_port=0).start()
    finally:
        bad.unlink()


def test_schedule_expressions() -> None:
    t0 = datetime(2026, 11, 27, 23, 59, 30, tzinfo=UTC)  # a Friday
    start = datetime(2026, 11, 27, 23, 59, tzinfo=UTC)
    assert Expression("rate(5 minutes)").next_after(t0, start=start) == datetime(2026, 11, 28, 0, 4, tzinfo=UTC)
    assert Expression("cron(0 3 * * ? *)").next_after(t0) == datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert Expression("cron(15 10 ? * MON-FRI *)").next_after(t0) == datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
    assert Expression("cron(0/20 * * * ? *)").next_after(t0) == datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    assert Expression("cron(0 12 1 JAN ? 2027)").next_after(t0) == datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    for bad in ("rate(5 weeks)", "cron(0 12 * * ?)", "cron(0 12 L * ? *)", "at(2026-01-01T00:00:00)"):
        with pytest.raises(ScheduleError):
            Expression(bad)


def test_log_filter_patterns() -> None:
    from localcloud.logship import compile_pattern, firehose_prefix

    both = compile_pattern('{ ($.liteserve = "prediction") || ($.liteserve = "prediction.instance") }')
    assert both('{"liteserve": "prediction", "x": 1}') and both('{"liteserve": "prediction.instance"}')
    assert not both('{"liteserve": "predictions"}') and not both("START RequestId: 1") and not both("[1, 2]")
    nested = compile_pattern('{ $.a.b[1] >= 2 && $.c != "x*" }')
    assert nested('{"a": {"b": [0, 2]}, "c": "y"}') and not nested('{"a": {"b": [0, 2]}, "c": "xyz"}')
    assert not nested('{"a": {"b": [0, "2"]}, "c": "y"}')
    assert compile_pattern("ERROR -timeout")("an ERROR here") and not compile_pattern("ERROR -timeout")("ERROR timeout")
    assert compile_pattern("?WARN ?ERROR")("WARN x") and compile_pattern("")("anything")
    assert firehose_prefix("p/!{timestamp:yyyy/MM/dd/HH}/", 0) == "p/1970/01/01/00/"
    assert firehose_prefix("plain/", 0) == "plain/1970/01/01/00/"
    with pytest.raises(TemplateError):
        compile_pattern('{ $.a = "x" ')


# ------------------------------------------------------------------------------------------------ security (issue 7)
# The project template's security shape, read as the local cloud reads it (parameters, conditions and !If resolved)
# and, for the routes, as SAM translates it for each ApiAuth choice.

ROOT = Path(__file__).resolve().parents[2]
OPEN_ROUTES = {("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2"), ("GET", "/openapi.json")}
JWT = {"ApiAuth": "JWT", "JwtIssuer": "https://issuer.example.com", "JwtAudience": "liteserve"}
# AWS offers no narrower resource for these actions (X-Ray write APIs have no resource-level permissions).
STAR_RESOURCE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def project(**parameters: str) -> Template:
    return Template.load(ROOT / "template.yaml", parameters=parameters)


def http_routes(t: Template) -> dict[tuple[str, str], dict]:
    """(METHOD, path) -> the event's resolved Auth, for every HttpApi event of every function."""
    routes = {}
    for lid in t.of_type("AWS::Serverless::Function"):
        for event in (t.props(lid).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                p = event["Properties"]
                routes[(p["Method"].upper(), p["Path"])] = p.get("Auth") or {}
    return routes


@pytest.mark.parametrize(("parameters", "authorizer"), [({}, "AWS_IAM"), (JWT, "JwtAuthorizer")])
def test_every_data_route_needs_the_chosen_authorizer_and_only_health_routes_are_open(
    parameters: dict[str, str], authorizer: str
) -> None:
    t = project(**parameters)
    (api,) = t.of_type("AWS::Serverless::HttpApi")
    auth = t.props(api)["Auth"]
    assert auth["DefaultAuthorizer"] == authorizer
    if authorizer == "AWS_IAM":
        assert auth["EnableIamAuthorizer"] is True and "Authorizers" not in auth
    else:
        jwt = auth["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
        assert jwt == {"issuer": "https://issuer.example.com", "audience": ["liteserve"]}
    routes = http_routes(t)
    opened = {route for route, route_auth in routes.items() if route_auth.get("Authorizer") == "NONE"}
    assert opened == OPEN_ROUTES
    data = set(routes) - opened
    # predict/infer/status/metadata/artifact (both protocols), labels, batch status, lookups
    assert {("ANY", "/v1/models/{proxy+}"), ("ANY", "/v2/{proxy+}"), ("POST", "/v1/labels")} <= data
    assert {("GET", "/v1/batch/jobs/{proxy+}"), ("GET", "/v1/predictions/{proxy+}")} <= data
    assert all(not routes[r].get("Authorizer") for r in data)  # no route opts out of the default another way


@pytest.mark.parametrize(("parameters", "scheme"), [({"ApiAuth": "IAM"}, "AWS_IAM"), (JWT, "JwtAuthorizer")])
def test_sam_puts_the_authorizer_on_every_data_route(tmp_path: Path, parameters: dict, scheme: str) -> None:
    """What API Gateway imports: the translated OpenAPI body, after the language-extensions step."""
    from localcloud.language_extensions import expand
    from localcloud.sam_translate import load_template, translate

    expanded = tmp_path / "expanded.json"
    expanded.write_text(json.dumps(expand(load_template(ROOT / "template.yaml"), parameters)))
    body = translate(expanded)["Resources"]["HttpApi"]["Properties"]["Body"]
    assert scheme in body["components"]["securitySchemes"]
    seen = {}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            seen[(verb, path)] = operation.get("security")
    assert {r for r, sec in seen.items() if sec == [{"NONE": []}]} == OPEN_ROUTES
    assert all(sec == [{scheme: []}] for r, sec in seen.items() if r not in OPEN_ROUTES)
    assert len(seen) > len(OPEN_ROUTES)


def test_language_extensions_step_resolves_only_parameter_conditions() -> None:
    from localcloud.language_extensions import expand

    doc = {
        "Parameters": {"Mode": {"Type": "String", "Default": "a"}, "L": {"Type": "CommaDelimitedList", "Default": "x"}},
        "Conditions": {
            "IsB": {"Fn::Equals": [{"Ref": "Mode"}, "b"]},
            "NotB": {"Fn::Not": [{"Condition": "IsB"}]},
            "Region": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
        },
        "Resources": {
            "R": {
                "Properties": {
                    "Pick": {"Fn::If": ["IsB", "b", "a"]},
                    "Gone": {"Fn::If": ["NotB", {"Ref": "AWS::NoValue"}, 1]},
                    "List": [{"Fn::If": ["IsB", 1, {"Ref": "AWS::NoValue"}]}, 2],
                    "Kept": {"Fn::If": ["Region", 1, 2]},
                    "Sub": {"Fn::Sub": "${AWS::StackName}-x"},
                }
            }
        },
    }
    props = expand(doc)["Resources"]["R"]["Properties"]
    assert props == {
        "Pick": "a",
        "List": [2],
        "Kept": {"Fn::If": ["Region", 1, 2]},
        "Sub": {"Fn::Sub": "${AWS::StackName}-x"},
    }
    assert expand(doc, {"Mode": "b"})["Resources"]["R"]["Properties"]["Pick"] == "b"
    with pytest.raises(ValueError, match="unknown parameter"):
        expand(doc, {"Nope": "1"})


def test_jwt_without_issuer_or_audience_is_refused_by_a_rule() -> None:
    rule = load_yaml(ROOT / "template.yaml")["Rules"]["JwtNeedsIssuerAndAudience"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]}
    asserted = json.dumps(rule["Assertions"])
    assert '"JwtIssuer"' in asserted and '"JwtAudience"' in asserted


def test_buckets_block_public_access_are_encrypted_and_refuse_plain_http() -> None:
    t = project()
    buckets = t.of_type("AWS::S3::Bucket")
    assert buckets
    policies = [t.props(lid) for lid in t.of_type("AWS::S3::BucketPolicy")]
    for lid in buckets:
        props = t.props(lid)
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}, lid
        assert len(props["PublicAccessBlockConfiguration"]) == 4, lid
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], lid
        arn = t.resolve({"Fn::GetAtt": [lid, "Arn"]})
        tls = [
            s
            for p in policies
            if p["Bucket"] == t.ref(lid)
            for s in p["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": False}}
        ]
        assert tls and set(tls[0]["Resource"]) == {arn, f"{arn}/*"} and tls[0]["Principal"] == "*", lid


def test_queues_tables_and_delivery_streams_are_encrypted() -> None:
    t = project()
    for lid in t.of_type("AWS::SQS::Queue"):
        props = t.props(lid)
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), lid
    for lid in t.of_type("AWS::DynamoDB::Table"):
        assert t.props(lid)["SSESpecification"]["SSEEnabled"] is True, lid
    for lid in t.of_type("AWS::KinesisFirehose::DeliveryStream"):
        assert t.props(lid)["DeliveryStreamEncryptionConfigurationInput"]["KeyType"], lid


def test_every_log_group_has_retention_and_every_function_its_log_group() -> None:
    t = project(LogRetentionDays="30")
    groups = {t.props(lid)["LogGroupName"]: t.props(lid) for lid in t.of_type("AWS::Logs::LogGroup")}
    assert all(int(g.get("RetentionInDays", 0)) == 30 for g in groups.values()), groups
    for lid in t.of_type("AWS::Serverless::Function"):
        assert f"/aws/lambda/{t.props(lid)['FunctionName']}" in groups, lid


def _statements(t: Template) -> list[tuple[str, dict]]:
    """Every IAM statement the template writes: roles, managed policies, SAM inline Policies statements."""
    out = []
    for lid in t.of_type("AWS::IAM::Role"):
        for policy in t.props(lid).get("Policies") or []:
            out += [(lid, s) for s in policy["PolicyDocument"]["Statement"]]
    for lid in t.of_type("AWS::IAM::ManagedPolicy"):
        out += [(lid, s) for s in t.props(lid)["PolicyDocument"]["Statement"]]
    for lid in t.of_type("AWS::Serverless::Function"):
        for policy in t.props(lid).get("Policies") or []:
            if isinstance(policy, dict) and "Statement" in policy:
                out += [(lid, s) for s in policy["Statement"]]
    return out


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_actions_and_star_resources_only_where_aws_has_nothing_narrower() -> None:
    t = project(TracingMode="Active")  # the X-Ray policy exists only then
    statements = _statements(t)
    assert len(statements) > 20
    for lid, s in statements:
        if s["Effect"] != "Allow":
            continue
        actions = _listed(s["Action"])
        assert all(a != "*" and not a.endswith(":*") for a in actions), (lid, actions)
        if "*" in _listed(s["Resource"]):
            assert set(actions) <= STAR_RESOURCE_ACTIONS, (lid, actions)


def test_functions_use_roles_written_in_the_template() -> None:
    """SAM-generated roles carry AWS managed policies with Resource "*" (basic execution, X-Ray, SQS polling)."""
    t = project()
    roles = {t.resolve({"Fn::GetAtt": [lid, "Arn"]}) for lid in t.of_type("AWS::IAM::Role")}
    for lid in t.of_type("AWS::Serverless::Function"):
        assert t.props(lid).get("Role") in roles, lid
        assert "Policies" not in t.props(lid), lid


def test_costly_runaways_are_capped() -> None:
    t = project()
    (api,) = t.of_type("AWS::Serverless::HttpApi")
    throttle = t.props(api)["DefaultRouteSettings"]
    assert int(throttle["ThrottlingRateLimit"]) > 0 and int(throttle["ThrottlingBurstLimit"]) > 0
    assert int(t.props("BatchSplitFunction")["ReservedConcurrentExecutions"]) == 2
    assert "ReservedConcurrentExecutions" not in project(BatchSplitReservedConcurrency="0").props("BatchSplitFunction")
    sqs = {
        lid: e["Properties"]
        for lid in t.of_type("AWS::Serverless::Function")
        for e in (t.props(lid).get("Events") or {}).values()
        if e["Type"] == "SQS"
    }
    assert sqs and all(int(p["ScalingConfig"]["MaximumConcurrency"]) >= 2 for p in sqs.values()), sqs


ALARMS = {
    "Api5xxRateAlarm": "AWS/ApiGateway",
    "ApiLatencyP99Alarm": "AWS/ApiGateway",
    "ShardDeadLetterAlarm": "AWS/SQS",
    "EvaluationSignalAlarm": "AWS/Events",
    "EvaluationFailureAlarm": "AWS/Lambda",
}


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:oncall"])
def test_alarms_watch_the_stacks_own_resources_and_notify_the_topic_if_any(topic: str) -> None:
    """Issue 12: 5xx rate, p99 latency, shard DLQ depth, drift / retrain events, evaluation failures."""
    root = Path(__file__).resolve().parents[2]
    t = Template.load(root / "template.yaml", stack_name="st", parameters={"AlarmTopicArn": topic})
    for lid, namespace in ALARMS.items():
        props = t.resolve(t.props(lid))
        metrics = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        stats = metrics or [props]
        assert {m["Namespace"] for m in stats} == {namespace}, lid
        dimensions = [d["Value"] for m in stats for d in m["Dimensions"]]
        assert all(isinstance(v, str) and v for v in dimensions), (lid, dimensions)
        assert props.get("AlarmActions", []) == ([topic] if topic else []), lid
    assert t.resolve(t.props("EvaluationFailureAlarm"))["Dimensions"][0]["Value"] == t.name("EvaluateFunction")
    pattern = t.props("EvaluationSignalRule")["EventPattern"]
    assert pattern["detail-type"] == ["DriftDetected", "RetrainRequested"]
