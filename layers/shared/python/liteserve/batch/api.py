"""Read side of batch serving over HTTP: job status and cached predictions by key."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

import orjson

from liteserve.batch.jobs import Pipeline
from liteserve.batch.storage import ResultsCache
from liteserve.errors import BadRequest, MethodNotAllowed, NotFound
from liteserve.http import Request, Result
from liteserve.keys import Key

LiveVersion = Callable[[str], "str | None"]  # model -> the version the live alias serves, None when unknown

JOBS = "/v1/batch/jobs/"
PREDICTIONS = "/v1/predictions/"


def handle(pipeline: Pipeline, request: Request, live_version: LiveVersion | None = None) -> Result:
    """`GET /v1/batch/jobs/{id}` -> the job; `GET /v1/predictions/{key}[?model=NAME][&type=string|integer]` -> the
    cached batch prediction of that model's key (the default model when `model` is omitted), with the version that
    wrote it and, when `live_version` knows the model's live version, whether that version has since been replaced."""
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
    text = unquote(path[len(PREDICTIONS) :])
    model = request.query.get("model") or pipeline.config.default_model
    unknown = sorted(set(request.query) - {"model", "type"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {unknown}; known: model, type")
    candidates = _typed_keys(text, request.query.get("type"))
    room = ResultsCache.key_room(model)
    if all(len(orjson.dumps(k)) > room for k in candidates):
        raise BadRequest(f"key takes more than {room} bytes as JSON: no results cache entry can hold it")
    found = None
    if pipeline.cache is not None:
        found = next((hit for k in candidates if (hit := pipeline.cache.get(model, k)) is not None), None)
    if found is None:
        # Deliberately no live fallback: this path is the precomputed (batch) side of the lambda architecture.
        raise NotFound(
            f"no cached prediction of model '{model}' for key {text!r}; run a batch job with cache=true or use :predict"
        )
    live = live_version(model) if live_version is not None else None
    if live is not None:
        found["live_version"] = live
        found["stale"] = str(found["model_version"]) != str(live)  # written by a version since replaced
    return Result(200, found)


def _typed_keys(text: str, kind: str | None) -> list[Key]:
    """The keys a path segment may name: the string, and the integer it spells (keys keep their JSON type)."""
    if kind not in (None, "string", "integer"):
        raise BadRequest(f"type must be 'string' or 'integer', got {kind!r}")
    integer = re.fullmatch(r"-?(0|[1-9][0-9]*)", text) is not None
    if kind == "integer":
        if not integer:
            raise BadRequest(f"type=integer, but {text!r} is not an integer")
        return [int(text)]
    return [text] if kind == "string" or not integer else [text, int(text)]
