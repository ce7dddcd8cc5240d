"""Layer versions, function versions and the weighted ``live`` alias, through moto's Lambda API (issue 5, promotion).

The steps are the ones promotion takes on AWS, in plain boto3: download the model layer from its Location, publish
a new layer version, point the function at it, publish a version, then shift the alias (canary, promote, rollback).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import LocalCloud
from localcloud.lambdas import ALIAS_TTL_S, AliasRouter
from tests.integration.conftest import FIXTURES, auth, project_cloud, wait_for

pytestmark = pytest.mark.integration

X = [0, 0, 0.5, 0.75, 0.875, 0.75, 0.1875, 0, 0, 0, 0.75, 0.3125, 0, 0.1875, 0, 0, 0, 0, 1, 0.125, 0.25, 0.0625, 0, 0]
X += [0, 0.25, 1, 0.875, 0.75, 0.9375, 0.25, 0, 0, 0, 0.25, 0, 0, 0.5, 0.5, 0, 0, 0.0625, 0, 0, 0, 0.6875, 0.3125, 0]
X += [0, 0.375, 0.875, 0.0625, 0.125, 0.9375, 0.0625, 0, 0, 0, 0.5, 0.875, 1, 0.25, 0, 0]


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "localcloud-lambda-versions") as cloud:
        yield cloud


def infer(lc: LocalCloud) -> str:
    """One V2 infer call through the HTTP API; the model version that answered."""
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X}]}
    req = urllib.request.Request(
        f"{lc.api_url}/v2/models/digits/infer",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **auth(lc)},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["model_version"])


def served(lc: LocalCloud, n: int) -> collections.Counter[str]:
    return collections.Counter(infer(lc) for _ in range(n))


def model_layer(lc: LocalCloud, qualifier: str) -> str:
    layers = lc.client("lambda").get_function_configuration(
        FunctionName=lc.name("PredictFunction"), Qualifier=qualifier
    )
    return next(la["Arn"] for la in layers["Layers"] if f":layer:{lc.name('ModelLayer')}:" in la["Arn"])


def download(lc: LocalCloud, layer_arn: str) -> zipfile.ZipFile:
    name, version = layer_arn.split(":")[6], int(layer_arn.split(":")[7])
    location = lc.client("lambda").get_layer_version(LayerName=name, VersionNumber=version)["Content"]["Location"]
    assert location.startswith("http")
    with urllib.request.urlopen(location, timeout=30) as r:
        return zipfile.ZipFile(io.BytesIO(r.read()))


def set_alias(lc: LocalCloud, version: str, weights: dict[str, float]) -> None:
    lc.client("lambda").update_alias(
        FunctionName=lc.name("PredictFunction"),
        Name="live",
        FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": weights},
    )


def shift(lc: LocalCloud, version: str, weights: dict[str, float]) -> None:
    """update_alias, then wait until invocations use it (within ALIAS_TTL_S, a second; calls refresh the routing)."""
    set_alias(lc, version, weights)
    router = lc.pools["PredictFunction"]
    assert isinstance(router, AliasRouter)
    expected = {"name": "live", "version": version, "weights": weights}
    wait_for(lambda: infer(lc) and router.describe()["alias"] == expected, timeout=5 * ALIAS_TTL_S + 10)


@pytest.fixture(scope="module")
def version_2(lc: LocalCloud) -> str:
    """Publish a model layer whose digits manifest says version "2", and a function version using it."""
    lam, s3 = lc.client("lambda"), lc.client("s3")
    fn = lc.name("PredictFunction")
    current = lam.get_function_configuration(FunctionName=fn, Qualifier="live")
    old_model = model_layer(lc, "live")
    src = download(lc, old_model)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            data = src.read(name)
            if name == "models/digits/manifest.json":
                manifest = json.loads(data)
                manifest["version"] = "2"  # the model file is unchanged: its sha256 still matches
                data = json.dumps(manifest).encode()
            out.writestr(name, data)
    bucket = lc.name("DataBucket")
    s3.put_object(Bucket=bucket, Key="staging/model-layer-2.zip", Body=buf.getvalue())
    new_model = lam.publish_layer_version(
        LayerName=lc.name("ModelLayer"), Content={"S3Bucket": bucket, "S3Key": "staging/model-layer-2.zip"}
    )["LayerVersionArn"]
    lam.update_function_configuration(
        FunctionName=fn, Layers=[new_model if la["Arn"] == old_model else la["Arn"] for la in current["Layers"]]
    )
    lam.get_waiter("function_updated").wait(FunctionName=fn)
    s3.delete_object(Bucket=bucket, Key="staging/model-layer-2.zip")  # Lambda keeps its own copy, as on AWS
    return str(lam.publish_version(FunctionName=fn)["Version"])


def test_provisioning_registers_layers_functions_version_1_and_the_alias(lc: LocalCloud) -> None:
    lam = lc.client("lambda")
    fn = lc.name("PredictFunction")
    alias = lam.get_alias(FunctionName=fn, Name="live")
    assert alias["FunctionVersion"] == "1"
    layers = [la["Arn"] for la in lam.get_function_configuration(FunctionName=fn, Qualifier="1")["Layers"]]
    assert [a.split(":")[6] for a in layers] == [lc.name(x) for x in ("RuntimeLayer", "SharedLayer", "ModelLayer")]
    # Every template function exists in moto, with its environment; only AutoPublishAlias functions get versions.
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert {lc.name(lid) for lid in lc.pools} <= names
    worker = lam.get_function_configuration(FunctionName=lc.name("BatchWorkerFunction"))
    assert worker["Environment"]["Variables"]["LITESERVE_MODEL_ROOT"] == "/opt/models"
    assert [
        v["Version"] for v in lam.list_versions_by_function(FunctionName=lc.name("BatchWorkerFunction"))["Versions"]
    ] == ["$LATEST"]
    assert infer(lc) == "1"


def test_template_layer_location_downloads_a_zip_of_the_model_files(lc: LocalCloud) -> None:
    z = download(lc, model_layer(lc, "1"))
    manifest = json.loads(z.read("models/digits/manifest.json"))
    assert manifest["version"] == "1"
    assert hashlib.sha256(z.read("models/digits/model.tflite")).hexdigest() == manifest["sha256"]
    assert {"models/digits-edge/model.tflite", "models/digits-cloud/model.tflite"} <= set(z.namelist())


def test_lambda_refuses_routing_configs_it_would_refuse_on_aws(lc: LocalCloud, version_2: str) -> None:
    for version, weights in (("1", {version_2: 1.5}), ("1", {"99": 0.1}), ("1", {"1": 0.5})):
        with pytest.raises(ClientError) as exc:
            set_alias(lc, version, weights)
        assert exc.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_weighted_alias_canary_then_promote_then_rollback(lc: LocalCloud, version_2: str) -> None:
    assert version_2 == "2"
    assert infer(lc) == "1"  # publishing a version changes nothing until the alias moves

    shift(lc, "1", {version_2: 0.5})
    canary = served(lc, 60)
    assert canary["1"] > 0 and canary["2"] > 0, canary  # P(one side empty) = 2 * 0.5**60
    status = lc.status()["functions"]["PredictFunction"]
    assert status["alias"] == {"name": "live", "version": "1", "weights": {"2": 0.5}}
    assert status["versions"]["2"]["layers"][-1] == model_layer(lc, "2")
    assert status["versions"]["1"]["layers"][-1] == model_layer(lc, "1")

    shift(lc, version_2, {})  # promote
    assert served(lc, 20) == {"2": 20}
    # Containers never switch versions: version 1's idle containers are stopped once nothing routes to it.
    wait_for(lambda: lc.status()["functions"]["PredictFunction"]["versions"]["1"]["containers"] == 0, timeout=10)

    shift(lc, "1", {})  # rollback
    assert served(lc, 20) == {"1": 20}


def test_qualified_invocations_and_version_environment(lc: LocalCloud, version_2: str) -> None:
    event = {
        "version": "2.0",
        "routeKey": "GET /v2/models/{proxy+}",
        "rawPath": "/v2/models/digits",
        "rawQueryString": "",
        "headers": {},
        "requestContext": {"http": {"method": "GET", "path": "/v2/models/digits"}},
        "isBase64Encoded": False,
    }

    def versions(qualifier: str) -> Any:
        return json.loads(lc.invoke(f"PredictFunction:{qualifier}", event)["body"])["versions"]

    assert versions(version_2) == ["2"]
    assert versions("1") == ["1"]
    with pytest.raises(KeyError):
        lc.invoke("BatchApiFunction:3", event)
    log = (lc.state_dir / "logs" / "PredictFunction.log").read_text()
    assert f"Version: {version_2}" in log  # AWS_LAMBDA_FUNCTION_VERSION of the container
    assert isinstance(lc.pools["PredictFunction"], AliasRouter)


# ---------------------------------------------------------------------------------------------- every event source


@pytest.fixture(scope="module")
def aliased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """A small template whose function has an alias and an SQS, a schedule and an EventBridge event."""
    with LocalCloud(
        FIXTURES / "aliased.yaml",
        state_dir=tmp_path_factory.mktemp("localcloud-aliased"),
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=2,
    ) as cloud:
        yield cloud


def seen(lc: LocalCloud, version: str) -> list[dict[str, Any]]:
    s3 = lc.client("s3")
    got = s3.list_objects_v2(Bucket=lc.name("SeenBucket"), Prefix=f"seen/{version}/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=lc.name("SeenBucket"), Key=o["Key"])["Body"].read()) for o in got]


def test_queue_schedule_and_rule_invoke_through_the_alias(aliased: LocalCloud) -> None:
    lc, lam = aliased, aliased.client("lambda")
    fn = lc.name("VersionedFunction")
    (first,) = lc.fire_schedule("VersionedFunction.Tick")
    assert (first["version"], first["greeting"], first["shared"]) == ("1", "v1", "from-layer")
    assert first["invoked_function_arn"] == f"{lc.arn('VersionedFunction')}:live"

    env = lam.get_function_configuration(FunctionName=fn)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {**env, "GREETING": "v2"}})
    lam.get_waiter("function_updated").wait(FunctionName=fn)
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.update_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    wait_for(lambda: lc.fire_schedule("VersionedFunction.Tick")[0]["version"] == version, timeout=10)
    (tick,) = lc.fire_schedule("VersionedFunction.Tick")
    assert (tick["greeting"], tick["shared"]) == ("v2", "from-layer")  # the version's own environment and layers

    lc.client("sqs").send_message(QueueUrl=lc.ref("WorkQueue"), MessageBody="{}")
    lc.client("events").put_events(Entries=[{"Source": "test.aliased", "DetailType": "x", "Detail": "{}"}])
    wait_for(lambda: {s["source"] for s in seen(lc, version)} == {"sqs", "test.aliased"}, timeout=20)
    assert seen(lc, "1") == []
