"""The HTTP API's OpenAPI 3.1 document, built from `liteserve.protocols.schemas` (the codecs' own definitions),
the served models' names and the serving limits. Served at `GET /openapi.json`; `openapi.json` at the repository
root is this document for the committed models and default limits:
`LITESERVE_MODEL_ROOT=layers/model/models PYTHONPATH=layers/shared/python python -m liteserve.openapi > openapi.json`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import orjson

from liteserve import __version__
from liteserve.protocols import schemas as s
from liteserve.runtime import Model

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def document(models: Iterable[Model], *, max_instances: int, key_field: str = "key") -> dict[str, Any]:
    """The OpenAPI document for these models (path parameter `name` is one of them) and this instance limit."""
    models = sorted(models, key=lambda m: m.name)
    names = [m.name for m in models]
    example = _examples(models[0], key_field) if models else {}
    components = {
        "Error": s.ERROR,
        "PredictRequest": s.predict_request(max_instances),
        "PredictResponse": s.PREDICT_RESPONSE,
        "ExamplesRequest": s.examples_request(max_instances),
        "ExamplesResponse": s.EXAMPLES_RESPONSE,
        "ModelStatus": s.MODEL_STATUS,
        "ModelMetadataTF": s.MODEL_METADATA_TF,
        "Manifest": s.MANIFEST,
        "InferRequest": s.INFER_REQUEST,
        "InferResponse": s.INFER_RESPONSE,
        "ServerMetadata": s.SERVER_METADATA,
        "ModelMetadataV2": s.MODEL_METADATA_V2,
        "Live": s.LIVE,
        "Ready": s.READY,
        "ModelReady": s.MODEL_READY,
        "LabelsRequest": s.LABELS_REQUEST,
        "LabelsResponse": s.LABELS_RESPONSE,
        "BatchJob": s.BATCH_JOB,
        "CachedPrediction": s.CACHED_PREDICTION,
    }
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": names} if names else {"type": "string", "pattern": s.NAME_PATTERN},
    }
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": s.NAME_PATTERN},
    }
    paths: dict[str, Any] = {}

    def model_route(path: str, method: str, op_id: str, summary: str, answer: dict, body: str | None = None) -> None:
        for suffix, params in (("", [name]), ("/versions/{version}", [name, version])):
            full = path.replace("{name}", "{name}" + suffix)
            # examples on the unversioned route only: they would be the same
            examples = None if suffix else example.get(body)
            op = _operation(op_id + ("Version" if suffix else ""), summary, answer, params, body, examples)
            paths.setdefault(full, {})[method] = op

    model_route(
        "/v1/models/{name}:predict",
        "post",
        "tfPredict",
        "TF Serving predict (row or columnar format, optionally keyed)",
        _json("PredictResponse"),
        "PredictRequest",
    )
    for verb, what in (("classify", "label/score pairs per example"), ("regress", "one value per example")):
        model_route(
            f"/v1/models/{{name}}:{verb}",
            "post",
            f"tf{verb.title()}",
            f"TF Serving {verb} over the JSON examples format: {what}",
            _json("ExamplesResponse"),
            "ExamplesRequest",
        )
    model_route("/v1/models/{name}", "get", "tfModelStatus", "TF Serving model status", _json("ModelStatus"))
    model_route(
        "/v1/models/{name}/metadata", "get", "tfModelMetadata", "TF Serving signature defs", _json("ModelMetadataTF")
    )
    model_route(
        "/v1/models/{name}/artifact",
        "get",
        "modelArtifact",
        "The served .tflite file (two-phase prediction); header x-liteserve-sha256 carries its digest",
        {"description": "The model file", "content": {"application/octet-stream": {"schema": {}}}},
    )
    model_route(
        "/v1/models/{name}/artifact/manifest", "get", "modelManifest", "The served model's manifest", _json("Manifest")
    )
    paths["/v2"] = {"get": _operation("v2Server", "V2 server metadata", _json("ServerMetadata"))}
    paths["/v2/health/live"] = {"get": _operation("v2Live", "V2 liveness", _json("Live"))}
    paths["/v2/health/ready"] = {
        "get": _operation("v2Ready", "V2 readiness (503 when no model is loaded)", _json("Ready"), ready_503=True)
    }
    model_route("/v2/models/{name}", "get", "v2ModelMetadata", "V2 model metadata", _json("ModelMetadataV2"))
    model_route("/v2/models/{name}/ready", "get", "v2ModelReady", "V2 model readiness", _json("ModelReady"))
    model_route(
        "/v2/models/{name}/infer",
        "post",
        "v2Infer",
        "V2 inference (flat or nested data, optionally a BYTES key tensor)",
        _json("InferResponse"),
        "InferRequest",
    )
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        _binary_tensor_data(paths[path]["post"])
    paths["/v1/labels"] = {
        "post": _operation(
            "postLabels",
            "Ground truth by key (continued evaluation)",
            _json("LabelsResponse"),
            body="LabelsRequest",
            examples=example.get("LabelsRequest"),
        )
    }
    text_param = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    paths["/v1/batch/jobs/{job_id}"] = {
        "get": _operation("batchJob", "Batch job status", _json("BatchJob"), [{"name": "job_id", **text_param}])
    }
    paths["/v1/predictions/{key}"] = {
        "get": _operation(
            "cachedPrediction",
            "A batch prediction by model and key (jobs run with cache=true); no live fallback",
            _json("CachedPrediction"),
            [
                {"name": "key", **text_param},
                {
                    "name": "model",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "default model if omitted",
                },
                {
                    "name": "type",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["string", "integer"]},
                    "description": "the key's JSON type; omitted: the string, else the integer it spells",
                },
            ],
        )
    }
    paths["/openapi.json"] = {
        "get": _operation(
            "openapi", "This document", {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {}}}}
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "liteserve",
            "version": __version__,
            "description": (
                "Quantized TensorFlow Lite models behind TF Serving REST and the Open Inference Protocol (V2), with "
                f"keyed prediction (field `{key_field}`), batch status, cached lookups and labels. Every 4xx/5xx "
                'answer of the functions is `{"error": "..."}`; bodies over 6 MB are refused with 413 (API Gateway '
                'itself refuses over 10 MB and unknown routes, with its own `{"message": "..."}`). Up to '
                f"{max_instances} instances per request; shapes and dtypes per model: GET /v1/models/{{name}}/metadata."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components},
    }


def _json(component: str) -> dict[str, Any]:
    return {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


def _operation(
    op_id: str,
    summary: str,
    answer: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    examples: dict[str, Any] | None = None,
    ready_503: bool = False,
) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ERROR_REF}}}
    responses: dict[str, Any] = {"200": answer}
    if ready_503:
        responses["503"] = {"description": "Not ready", "content": answer["content"]}
    if parameters or body:
        responses["4XX"] = {"description": "Refused: bad request, unknown model or key, too large, not JSON", **error}
    responses["5XX"] = {"description": "Model unavailable or internal error", **error}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary}
    if parameters:
        op["parameters"] = parameters
    if body:
        media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{body}"}}
        if examples:
            media["examples"] = examples
        op["requestBody"] = {"required": True, "content": {"application/json": media}}
    op["responses"] = responses
    return op


def _binary_tensor_data(op: dict[str, Any]) -> None:
    """Document the binary tensor data extension on an infer operation (request and response)."""
    op["parameters"] = [
        *op.get("parameters", []),
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "Binary tensor data extension: the length of the JSON document at the start of the body; "
            "the rest is the binary data of the tensors with parameters.binary_data_size, in their order. "
            "Sizes that do not add up are a 400 naming the tensor. The answer carries the same header when an "
            "output is sent as binary data (parameters.binary_data, or binary_data_output for all).",
            "schema": {"type": "integer", "minimum": 1},
        },
    ]
    binary = {"schema": {"type": "string", "format": "binary"}}
    op["requestBody"]["description"] = (
        "JSON (application/json), or JSON followed by binary tensor data (application/octet-stream, with "
        "Inference-Header-Content-Length); Content-Encoding gzip or deflate is accepted."
    )
    op["requestBody"]["content"]["application/octet-stream"] = binary
    op["responses"]["200"]["content"]["application/octet-stream"] = binary


def _examples(model: Model, key_field: str) -> dict[str, dict[str, Any]]:
    """Valid request bodies for the default signature of `model` (zeros of each input's instance shape)."""
    sig = model.signature(None)

    def zeros(shape: tuple[int, ...]) -> Any:
        return 0.0 if not shape else [zeros(shape[1:]) for _ in range(shape[0])]

    rows = [{n: zeros(t.feature_shape) for n, t in sig.inputs.items()} for _ in range(2)]
    if len(sig.inputs) == 1:
        only = next(iter(sig.inputs))
        row_format = {"instances": [r[only] for r in rows]}
    else:
        row_format = {"instances": rows}
    tensors = [
        {
            "name": n,
            "shape": [2, *t.feature_shape],
            "datatype": s.DATATYPES[t.dtype],
            "data": [zeros(t.feature_shape)] * 2,
        }
        for n, t in sig.inputs.items()
    ]
    return {
        "PredictRequest": {
            "rows": {"summary": f"{model.name}, row format", "value": row_format},
            "keyed": {
                "summary": f"{model.name}, keyed rows",
                "value": {"instances": [{key_field: f"k{i}", **r} for i, r in enumerate(rows)]},
            },
            "columnar": {
                "summary": f"{model.name}, columnar format",
                "value": {"inputs": {n: [r[n] for r in rows] for n in sig.inputs}},
            },
        },
        "ExamplesRequest": {
            "examples": {"summary": f"{model.name}, two examples", "value": {"examples": rows}},
        },
        "InferRequest": {
            "nested": {"summary": f"{model.name}, nested data", "value": {"inputs": tensors}},
            "keyed": {
                "summary": f"{model.name}, with a key tensor",
                "value": {
                    "inputs": [*tensors, {"name": key_field, "shape": [2], "datatype": "BYTES", "data": ["k0", "k1"]}]
                },
            },
        },
        "LabelsRequest": {
            "labels": {"summary": "two labels", "value": [{"key": "k0", "label": 3}, {"key": "k1", "label": 7}]}
        },
    }


def dumps(doc: dict[str, Any]) -> bytes:
    """The document as the committed file holds it (indented, sorted keys, trailing newline)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> None:
    """Print the document for the models under $LITESERVE_MODEL_ROOT and the limits from the environment."""
    from liteserve.runtime import default_repository
    from liteserve.service import ServingConfig

    config = ServingConfig.from_env()
    doc = document(default_repository(), max_instances=config.max_instances, key_field=config.key_field)
    sys.stdout.buffer.write(dumps(doc))


if __name__ == "__main__":
    main()
