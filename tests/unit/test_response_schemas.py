"""Every response document the core builds validates against the schema the OpenAPI document publishes for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import jsonschema
import orjson
import pytest
from liteserve.batch.jobs import Pipeline
from liteserve.batch.storage import Job
from liteserve.errors import BadRequest
from liteserve.http import error_response
from liteserve.protocols import schemas, tfserving, v2
from liteserve.runtime import Model, ModelRepository


def check(doc: Any, schema: dict) -> None:
    """Validate the document as a client receives it (serialized with numpy arrays, parsed back)."""
    jsonschema.Draft202012Validator(schema).validate(orjson.loads(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)))


@pytest.fixture(scope="module", params=["digits", "digits-edge", "digits-cloud"])
def model(request, models: ModelRepository) -> Model:
    return models.get(request.param)


ROWS = [[0.0] * 64, [16.0] * 64]


def _predict(model: Model, doc: dict) -> dict:
    call = tfserving.decode_predict(doc, model, key_field="key", max_instances=10)
    return tfserving.encode_predict(call, model.predict(call.signature.name, call.inputs))


@pytest.mark.parametrize(
    "doc",
    [
        {"instances": ROWS},
        {"instances": [{"key": "a", "x": ROWS[0]}, {"key": 7, "x": ROWS[1]}]},
        {"inputs": ROWS},
        {"inputs": {"x": ROWS, "key": ["a", "b"]}},
        {"signature_name": "embedding", "instances": ROWS},
    ],
    ids=["rows", "keyed-rows", "columnar", "keyed-columnar", "embedding"],
)
def test_predict_responses(model, doc):
    if doc.get("signature_name", "serving_default") not in model.manifest.signatures:
        pytest.skip(f"{model.name} has no signature {doc['signature_name']}")
    check(_predict(model, doc), schemas.PREDICT_RESPONSE)


@pytest.mark.parametrize("keyed", [False, True])
def test_infer_responses(model, keyed):
    inputs = [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": ROWS}]
    if keyed:
        inputs.append({"name": "key", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]})
    call = v2.decode_infer({"id": "r", "inputs": inputs}, model, key_field="key", max_instances=10)
    check(v2.encode_infer(call, model, model.predict(call.signature.name, call.inputs)), schemas.INFER_RESPONSE)


def test_metadata_and_status_documents(model):
    check(tfserving.model_status(model), schemas.MODEL_STATUS)
    check(tfserving.model_metadata(model), schemas.MODEL_METADATA_TF)
    check(model.manifest.raw, schemas.MANIFEST)
    check(v2.server_metadata(), schemas.SERVER_METADATA)
    check(v2.model_metadata(model), schemas.MODEL_METADATA_V2)


def test_error_body():
    response = error_response(BadRequest("instance 3: input 'x' expected 64 values, got 63"))
    check(orjson.loads(response["body"]), schemas.ERROR)


@pytest.mark.parametrize(
    "job",
    [
        Job("j1", "etag", "PLANNING", source="batch/in/a.jsonl", created_at=1.0),
        Job(
            "j2",
            "etag",
            "RUNNING",
            source="batch/in/b.csv",
            shards_total=3,
            done={0},
            counts={"rows_in": 10, "rows_predicted": 9, "rows_rejected": 1},
            options={"model": "digits", "signature": "serving_default", "ordered": True},
            model_version="1",
            created_at=1.0,
            planned_at=2.0,
        ),
        Job("j3", "etag", "FAILED", shards_total=2, done={0}, failed={1}, created_at=1.0, finished_at=5.0, reason="x"),
    ],
    ids=["planning", "running", "failed"],
)
def test_batch_job_status(job):
    describe = Pipeline.describe  # only reads self.config.bucket
    check(describe(SimpleNamespace(config=SimpleNamespace(bucket="bucket")), job), schemas.BATCH_JOB)


def test_cached_prediction(models):
    model = models.get("digits")
    outputs = model.predict("serving_default", {"x": tfserving.to_batch(ROWS, model.signature(None).inputs["x"])})
    (prediction,) = tfserving.instance_objects({k: v[:1] for k, v in outputs.items()})
    entry = {**prediction, "key": "a", "model": "digits", "model_version": "1", "job_id": "j1", "run": 1}
    check({**entry, "expires_at": 1, "live_version": "2", "stale": True}, schemas.CACHED_PREDICTION)
    check({**entry, "key": 7}, schemas.CACHED_PREDICTION)  # keys keep their JSON type


def test_batch_manifest_lists_the_runs_objects():
    job = Job("a/b.jsonl", "etag", "SUCCEEDED", run=3, shards_total=1, done={0}, options={"ordered": True})
    parts = ["results/a/b.jsonl/run-000003/part-00000.jsonl"]
    doc = Pipeline.describe(SimpleNamespace(config=SimpleNamespace(bucket="bucket")), job, parts=parts, errors=[])
    check(doc, schemas.BATCH_JOB)
    assert doc["output"] == {
        "manifest": "s3://bucket/results/a/b.jsonl/_SUCCESS",
        "prefix": "s3://bucket/results/a/b.jsonl/run-000003/",
        "parts": ["s3://bucket/results/a/b.jsonl/run-000003/part-00000.jsonl"],
        "errors": [],
        "ordered": "s3://bucket/results/a/b.jsonl/run-000003/ordered.jsonl",
    }


def test_classify_and_regress_answers_match_examples_response(model: Model):
    call = tfserving.decode_examples(
        {"examples": [{"x": row} for row in ROWS]},
        model,
        "classify",
        key_field="key",
        max_instances=10,
        labels=model.manifest.labels,
    )
    check(
        tfserving.encode_classify(call, model.predict(call.signature.name, call.inputs), model.manifest.labels),
        schemas.EXAMPLES_RESPONSE,
    )
    check({"results": [3.5, 4.0]}, schemas.EXAMPLES_RESPONSE)  # encode_regress's shape (no regression model here)
    with pytest.raises(jsonschema.ValidationError):
        check({"results": [[["5"]]]}, schemas.EXAMPLES_RESPONSE)  # a pair is [label, score]


def test_binary_infer_answer_header_matches_infer_response(model: Model):
    doc = {
        "inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": ROWS}],
        "parameters": {"binary_data_output": True},
    }
    call = v2.decode_infer(doc, model, key_field="key", max_instances=10)
    body, length = v2.encode_binary(call, model, model.predict(call.signature.name, call.inputs))
    check(orjson.loads(body[:length]), schemas.INFER_RESPONSE)
