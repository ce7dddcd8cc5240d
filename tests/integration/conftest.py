"""One local cloud per test session (moto server over HTTP + the fixture template); moto is reset between tests."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from localcloud import LocalCloud
from localcloud.auth import bearer
from localcloud.cloud import MotoServer

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
T = TypeVar("T")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def cloud_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The fixture template running locally on free ports, schedules only on demand."""
    with LocalCloud(
        FIXTURES / "template.yaml",
        state_dir=tmp_path_factory.mktemp("localcloud"),
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=2,
        log_subscriptions=True,
        log_ship_interval=3600,  # deliveries only on flush_logs(): deterministic tests
    ) as lc:
        yield lc


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A bare moto server over HTTP for one test module (no template provisioned)."""
    server = MotoServer(port=0, log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aws_env(moto: MotoServer) -> Iterator[dict[str, str]]:
    """This process's AWS settings pointed at `moto` for the module; returns them for subprocesses."""
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def cloud(cloud_session: LocalCloud) -> Iterator[LocalCloud]:
    """The session's local cloud, freshly reset (moto's reset endpoint + provisioning from the template)."""
    cloud_session.reset()
    yield cloud_session
    with contextlib.suppress(TimeoutError):  # let stray retries finish: they must not leak into the next test
        cloud_session.wait_idle(timeout=20)


@contextlib.contextmanager
def project_cloud(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    parameters: dict[str, str] | None = None,
    template: Path = PROJECT_TEMPLATE,
    **options: Any,
) -> Iterator[LocalCloud]:
    """The project's own template.yaml (or a copy of it, `template`) running locally on free ports, schedules only
    on demand."""
    with LocalCloud(
        template,
        state_dir=tmp_path_factory.mktemp(name),
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=2,
        parameters=parameters,
        **options,
    ) as lc:
        yield lc


def auth(lc: LocalCloud) -> dict[str, str]:
    """The header that opens ``lc``'s protected routes (``Authorization: Bearer <lc.token>``)."""
    return bearer(lc.token)


def wait_for(probe: Callable[[], T], timeout: float = 20, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value: {value!r})")
        time.sleep(interval)


def objects(lc: LocalCloud, bucket_lid: str, prefix: str) -> dict[str, Any]:
    """Every object under ``prefix`` in a template bucket, parsed as JSON, by key."""
    s3 = lc.client("s3")
    bucket = lc.name(bucket_lid)
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    return out


class Events:
    """Evaluation events of one type (RetrainRequested by default), caught by a rule on the default bus that
    targets an SQS queue."""

    def __init__(self, cloud: LocalCloud, detail_type: str = "RetrainRequested") -> None:
        self.sqs, events = cloud.client("sqs"), cloud.client("events")
        name = f"test-{detail_type.lower()}"
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {"source": ["liteserve.evaluation"], "detail-type": [detail_type]}
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])

    def drain(self) -> list[dict]:
        got = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not msgs.get("Messages"):
                return got
            for m in msgs["Messages"]:
                got.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def post(cloud: LocalCloud, path: str, body: object) -> tuple[int, dict]:
    """POST a JSON body (numpy arrays allowed) to the local API with the cloud's token; status and parsed answer."""
    req = urllib.request.Request(
        f"{cloud.api_url}{path}", data=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), method="POST"
    )
    req.add_header("content-type", "application/json")
    req.add_header("authorization", auth(cloud)["authorization"])
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def infer_served(cloud: LocalCloud, model: str, name: str, keys: list[str], x: Any, chunk: int = 20) -> Counter:
    """V2 infer of `x` (one FP32 input `name`, rows keyed by `keys`) in requests of `chunk` rows (the `live` alias
    picks a version per request); returns how many rows each model version served."""
    served: Counter = Counter()
    for start in range(0, len(keys), chunk):
        k, rows = keys[start : start + chunk], x[start : start + chunk]
        body = {
            "inputs": [
                {"name": "key", "datatype": "BYTES", "shape": [len(k)], "data": k},
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": [len(k), *rows.shape[1:]],
                    "data": rows.reshape(-1).tolist(),
                },
            ]
        }
        status, doc = post(cloud, f"/v2/models/{model}/infer", body)
        assert status == 200, doc
        served[doc["model_version"]] += len(k)
    return served
