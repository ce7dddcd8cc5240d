"""Batch runs the live version (issue 12, part 1), against in-process moto: after a promotion a job predicts with the
promoted version from the registry, records it on the job and every row, and keeps it when the routing record
changes mid-job; the same file dropped again after a promotion is predicted by the new version."""

from __future__ import annotations

import boto3
import numpy as np
import orjson
import pytest
from botocore.exceptions import ClientError
from liteserve.adapters import ObjectStore
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.promotion.live import LiveModels
from liteserve.registry import Registry
from liteserve.runtime import Model, ModelRepository

from tests.support import MODEL_ROOT
from tests.unit.test_batch_pipeline import BUCKET, CACHE, JOBS, aws, drain, make_rows, outputs, put

__all__ = ["aws"]


def register(version: str, source: str = "digits-cloud") -> None:
    """A version of `digits` in the registry: another bundled model's files under digits' name."""
    s3 = boto3.client("s3")
    manifest = orjson.loads((MODEL_ROOT / source / "manifest.json").read_bytes())
    manifest.update(name="digits", version=version)
    s3.put_object(Bucket=BUCKET, Key=f"models/digits/{version}/manifest.json", Body=orjson.dumps(manifest))
    body = (MODEL_ROOT / source / "model.tflite").read_bytes()
    s3.put_object(Bucket=BUCKET, Key=f"models/digits/{version}/model.tflite", Body=body)


def route(primary: str) -> None:
    Registry(ObjectStore(BUCKET)).set_live("digits", {"primary": {"model_version": primary}, "canary": None})


@pytest.fixture
def pipeline(aws, tmp_path):
    models = LiveModels(ModelRepository(MODEL_ROOT), Registry(ObjectStore(BUCKET)), cache_dir=tmp_path)
    config = BatchConfig(bucket=BUCKET, jobs_table=JOBS, queue_url=aws, cache_table=CACHE, shard_bytes=8_000)
    return Pipeline(config, models)


def test_a_job_runs_the_promoted_version_and_keeps_it_through_a_rollback(pipeline):
    register("2")
    route("2")
    lines, valid, _ = make_rows(120)
    put("incoming/live.jsonl", b"\n".join(lines) + b"\n")
    pipeline.split("incoming/live.jsonl")
    messages = drain(pipeline)
    assert len(messages) > 2 and pipeline.jobs.get("live.jsonl").model_version == "2"
    pipeline.run_shard(messages[0])
    route("1")  # rolled back while the job runs
    for m in messages[1:]:
        pipeline.run_shard(m)
    parts, _ = outputs("live.jsonl")
    assert {p["model_version"] for p in parts} == {"2"} and len(parts) == len(valid)
    v2 = Model(MODEL_ROOT / "digits-cloud")  # the same files the registry holds as version 2
    keys = [p["key"] for p in parts]
    expected = v2.predict("serving_default", {"x": np.asarray([valid[k] for k in keys], dtype=np.float32)})
    assert [p["class_id"] for p in parts] == expected["class_id"].tolist()
    # the same bytes dropped again now that version 1 is live again: a new run with version 1
    put("incoming/live.jsonl", b"\n".join(lines) + b"\n")
    assert pipeline.split("incoming/live.jsonl")["run"] == 2
    for m in drain(pipeline):
        pipeline.run_shard(m)
    assert {p["model_version"] for p in outputs("live.jsonl")[0]} == {"1"}


def test_without_a_promotion_the_layer_version_runs_and_unknown_versions_fail_clearly(pipeline):
    models = pipeline.models
    assert models.live("digits").version == "1" and models.live_version("digits") is None
    with pytest.raises(ClientError, match=r"NoSuchKey|Not Found|404"):
        models.get("digits", "9")
