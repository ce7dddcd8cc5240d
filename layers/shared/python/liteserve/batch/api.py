"""Read side of batch serving over HTTP: job status and cached predictions by key."""

from __future__ import annotations

from urllib.parse import unquote

from liteserve.batch.jobs import Pipeline
from liteserve.batch.storage import MAX_DYNAMODB_KEY_BYTES, key_bytes
from liteserve.errors import BadRequest, MethodNotAllowed, NotFound
from liteserve.http import Request
from liteserve.service import Result

JOBS = "/v1/batch/jobs/"
PREDICTIONS = "/v1/predictions/"


def handle(pipeline: Pipeline, request: Request) -> Result:
    """`GET /v1/batch/jobs/{id}` -> the job; `GET /v1/predictions/{key}` -> the cached batch prediction."""
    path = request.path
    if not path.startswith((JOBS, PREDICTIONS)) or path in (JOBS, PREDICTIONS):
        raise NotFound(f"no route for {request.method} {path}")
    if request.method != "GET":
        raise MethodNotAllowed(f"{request.method} {path} is not allowed; use GET")
    if path.startswith(JOBS):
        job_id = unquote(path[len(JOBS) :])
        job = pipeline.jobs.get(job_id)
        if job is None:
            raise NotFound(f"batch job '{job_id}' not found")
        return Result(200, pipeline.describe(job))
    key = unquote(path[len(PREDICTIONS) :])
    if key_bytes(key) > MAX_DYNAMODB_KEY_BYTES:
        raise BadRequest(f"key is {key_bytes(key)} bytes; cached keys are at most {MAX_DYNAMODB_KEY_BYTES} bytes")
    found = pipeline.cache.get(key) if pipeline.cache is not None else None
    if found is None:
        # Deliberately no live fallback: this path is the precomputed (batch) side of the lambda architecture.
        raise NotFound(f"no cached prediction for key '{key}'; run a batch job with cache=true or use :predict")
    return Result(200, found)
