"""Template reading: CloudFormation tags, parameters, conditions, Globals, intrinsics; schedule expressions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from localcloud.runtime import function_specs
from localcloud.schedule import Expression, ScheduleError
from localcloud.template import Template, TemplateError
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
