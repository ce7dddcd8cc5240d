"""JSON Schemas of the HTTP API's bodies: the single source of the OpenAPI document (`liteserve.openapi`) and of
the codecs' structural checks (their field sets, required fields, datatypes and limits are read from here).

The codecs keep their hand-written walk over the document because it names the offending instance and position
(`instance 3: input 'x' expected 64 values, got 63`), which a generic validator cannot; `tests/unit` checks that
every body the codecs accept also validates against these schemas. Model-specific shapes are not part of them:
they come from each model's manifest at request time (`GET /v1/models/{name}/metadata`).
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

# Open Inference Protocol datatypes by numpy dtype name.
DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "bool": "BOOL",
    "object": "BYTES",
}
MAX_LABELS = 10_000  # labels per POST /v1/labels
NAME_PATTERN = "^[A-Za-z0-9._-]+$"  # model names and versions (the service's route table uses the same class)

NUMBER: Schema = {"type": "number"}
# An instance's value: a number, or a list (of lists) of numbers, shaped like the model input without the batch axis.
# Two levels deep rather than a recursive $ref: the served models take vectors, and generators handle it better.
TENSOR_VALUE: Schema = {
    "anyOf": [NUMBER, {"type": "array", "items": {"anyOf": [NUMBER, {"type": "array", "items": NUMBER}]}}]
}
KEY: Schema = {
    "description": "Keyed prediction: comes back with the instance's prediction, never reaches the model.",
    "anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}],
}
B64: Schema = {
    "type": "object",
    "required": ["b64"],
    "additionalProperties": False,
    "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
    "description": "Bytes of a string input or output (TF Serving's binary encoding).",
}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}},
    "description": "Every 4xx/5xx answer of the functions (TF Serving and Open Inference Protocol agree on it).",
}


def predict_request(max_instances: int) -> Schema:
    """TF Serving `:predict` body: row format (`instances`) or columnar format (`inputs`), never both."""
    rows: Schema = {"type": "array", "minItems": 1, "maxItems": max_instances}
    instance_object: Schema = {
        "type": "object",
        "minProperties": 1,
        "description": "One value per named input, plus the key field when keyed (default field name `key`).",
        "additionalProperties": {"anyOf": [TENSOR_VALUE, KEY, B64]},
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "signature_name": {"type": ["string", "null"], "description": "Default `serving_default`."},
            "output_filter": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "Outputs to return (PredictRequest.output_filter of TF Serving's gRPC API); may name "
                "`class_label` (the class names of a model with labels). Default: every output of the signature.",
            },
            "instances": {**rows, "items": {"anyOf": [TENSOR_VALUE, B64, instance_object]}},
            "inputs": {
                "anyOf": [
                    {**rows, "items": TENSOR_VALUE},
                    {
                        "type": "object",
                        "minProperties": 1,
                        "description": "Input name (or key field) -> one value (or key) per instance.",
                        "additionalProperties": {**rows, "items": {"anyOf": [TENSOR_VALUE, KEY, B64]}},
                    },
                ]
            },
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    }


def examples_request(max_instances: int) -> Schema:
    """TF Serving `:classify` / `:regress` body: `examples` (one object of features per example) and an optional
    `context` of features shared by every example."""
    features: Schema = {
        "type": "object",
        "description": 'Input name (or key field) -> value; strings may be {"b64": ...} for bytes.',
        "additionalProperties": {"anyOf": [TENSOR_VALUE, KEY, B64]},
    }
    return {
        "type": "object",
        "required": ["examples"],
        "additionalProperties": False,
        "properties": {
            "signature_name": {"type": ["string", "null"], "description": "Default `serving_default`."},
            "context": features,
            "examples": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": features},
        },
    }


EXAMPLES_RESPONSE: Schema = {
    "type": "object",
    "required": ["results"],
    "description": ":classify -> per example a list of [label, score] for every class (label names from the model, "
    "else class ids); :regress -> one number per example.",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "anyOf": [
                    NUMBER,
                    {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "description": "[label, score]",
                            "minItems": 2,
                            "maxItems": 2,
                            "items": {"anyOf": [{"type": "string"}, NUMBER]},
                        },
                    },
                ]
            },
        }
    },
}

PREDICT_RESPONSE: Schema = {
    "type": "object",
    "description": "Row format -> `predictions` (one entry per instance, objects when keyed or several outputs); "
    "columnar format -> `outputs`.",
    "oneOf": [
        {"required": ["predictions"], "properties": {"predictions": {"type": "array"}}},
        {"required": ["outputs"], "properties": {"outputs": {"type": ["array", "object"]}}},
    ],
}

MODEL_STATUS: Schema = {
    "type": "object",
    "required": ["model_version_status"],
    "properties": {
        "model_version_status": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["version", "state", "status"],
                "properties": {
                    "version": {"type": "string"},
                    "state": {"type": "string", "enum": ["AVAILABLE"]},
                    "status": {
                        "type": "object",
                        "properties": {"error_code": {"type": "string"}, "error_message": {"type": "string"}},
                    },
                },
            },
        }
    },
}

_TF_TENSOR_INFO: Schema = {
    "type": "object",
    "required": ["dtype", "tensor_shape", "name"],
    "properties": {
        "dtype": {"type": "string"},
        "name": {"type": "string"},
        "tensor_shape": {
            "type": "object",
            "properties": {
                "dim": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"size": {"type": "string"}, "name": {"type": "string"}}},
                },
                "unknown_rank": {"type": "boolean"},
            },
        },
    },
}
MODEL_METADATA_TF: Schema = {
    "type": "object",
    "required": ["model_spec", "metadata"],
    "properties": {
        "model_spec": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {
                "name": {"type": "string"},
                "signature_name": {"type": "string"},
                "version": {"type": "string"},
            },
        },
        "metadata": {
            "type": "object",
            "required": ["signature_def"],
            "properties": {
                "signature_def": {
                    "type": "object",
                    "properties": {
                        "signature_def": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["inputs", "outputs", "method_name"],
                                "properties": {
                                    "inputs": {"type": "object", "additionalProperties": _TF_TENSOR_INFO},
                                    "outputs": {"type": "object", "additionalProperties": _TF_TENSOR_INFO},
                                    "method_name": {"type": "string"},
                                },
                            },
                        }
                    },
                }
            },
        },
    },
}

MANIFEST: Schema = {
    "type": "object",
    "required": ["name", "version", "file", "sha256", "signatures"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "file": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "signatures": {"type": "object"},
    },
}

# Open Inference Protocol V2
_BINARY_SIZE: Schema = {
    "type": "integer",
    "minimum": 0,
    "description": "Binary tensor data extension: the tensor's bytes follow the JSON document (whose length the "
    "Inference-Header-Content-Length header gives), little-endian, row-major; BYTES elements each 4-byte-length-"
    "prefixed. Tensors with binary data come in the order of the tensors.",
}
INFER_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "additionalProperties": False,
    "description": "`data`, or `parameters.binary_data_size` and binary data after the JSON document.",
    "properties": {
        "name": {"type": "string", "description": "A model input, or the key field (a BYTES tensor of shape [N])."},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(set(DATATYPES.values()))},
        "parameters": {"type": "object", "properties": {"binary_data_size": _BINARY_SIZE}},
        "data": {
            "type": "array",
            "description": "Flat row-major or nested like `shape`; strings for the BYTES key tensor.",
            "items": {"anyOf": [TENSOR_VALUE, {"type": "string"}]},
        },
    },
}
INFER_REQUEST: Schema = {
    "type": "object",
    "required": ["inputs"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": ["string", "null"]},
        "model_name": {
            "type": ["string", "null"],
            "description": "Sent by some clients (kserve); must be the model of the path when present.",
        },
        "parameters": {
            "type": ["object", "null"],
            "properties": {
                "signature_name": {"type": ["string", "null"], "description": "Default `serving_default`."},
                "binary_data_output": {
                    "type": "boolean",
                    "description": "Send every output as binary data unless its own `binary_data` says otherwise.",
                },
            },
        },
        "inputs": {"type": "array", "minItems": 1, "items": INFER_TENSOR},
        "outputs": {
            "type": ["array", "null"],
            "description": "Outputs to return, in this order; the key field may be named too.",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                },
            },
        },
    },
}
INFER_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "description": "`data`, or `parameters.binary_data_size` with the bytes after the JSON document.",
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"type": "string", "enum": sorted(set(DATATYPES.values()))},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "parameters": {"type": "object", "properties": {"binary_data_size": _BINARY_SIZE}},
                    "data": {"type": "array"},
                },
            },
        },
    },
}
_V2_TENSOR_META: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
SERVER_METADATA: Schema = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
MODEL_METADATA_V2: Schema = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _V2_TENSOR_META},
        "outputs": {"type": "array", "items": _V2_TENSOR_META},
        "parameters": {"type": "object"},
    },
}
LIVE: Schema = {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}
READY: Schema = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
MODEL_READY: Schema = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}

# Continued evaluation: ground truth by key
LABEL: Schema = {
    "type": "object",
    "required": ["key", "label"],
    "additionalProperties": False,
    "properties": {
        "key": {"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "integer"}]},
        "label": {"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "number"}]},
    },
}
_LABEL_LIST: Schema = {"type": "array", "minItems": 1, "maxItems": MAX_LABELS, "items": LABEL}
LABELS_REQUEST: Schema = {
    "anyOf": [
        _LABEL_LIST,
        {
            "type": "object",
            "required": ["labels"],
            "additionalProperties": False,
            "properties": {"labels": _LABEL_LIST},
        },
    ],
    "description": "All or nothing: one bad item refuses the request, naming every bad item.",
}
EDGE_RECORD: Schema = {
    "type": "object",
    "required": [
        "key",
        "edge_model",
        "edge_class_id",
        "edge_confidence",
        "cloud_model",
        "cloud_class_id",
        "cloud_confidence",
        "recorded_at",
    ],
    "description": "One answered escalation of an edge device: the edge model's answer next to the cloud's.",
    "properties": {
        "key": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]},
        "edge_model": {"type": "string", "minLength": 1, "description": "name@version of the edge model"},
        "edge_class_id": {"type": "integer", "minimum": 0},
        "edge_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "cloud_model": {"type": "string", "minLength": 1},
        "cloud_class_id": {"type": "integer", "minimum": 0},
        "cloud_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "recorded_at": {"type": "number", "description": "epoch seconds on the device"},
    },
}
_EDGE_LIST: Schema = {"type": "array", "minItems": 1, "maxItems": 1000, "items": EDGE_RECORD}
EDGE_AGREEMENTS_REQUEST: Schema = {
    "anyOf": [
        _EDGE_LIST,
        {
            "type": "object",
            "required": ["records"],
            "additionalProperties": False,
            "properties": {"records": _EDGE_LIST},
        },
    ],
    "description": "All or nothing: one bad record refuses the request, naming every bad record.",
}
EDGE_AGREEMENTS_RESPONSE: Schema = {
    "type": "object",
    "required": ["received"],
    "properties": {"received": {"type": "integer", "minimum": 1}},
}
LABELS_RESPONSE: Schema = {
    "type": "object",
    "required": ["received", "stored", "replaced_in_request"],
    "properties": {
        "received": {"type": "integer", "minimum": 1},
        "stored": {"type": "integer", "minimum": 0},
        "replaced_in_request": {"type": "integer", "minimum": 0},
    },
}

# Batch serving: job status and the cached predictions of cache=true jobs
_NULLABLE_NUMBER: Schema = {"type": ["number", "null"]}
BATCH_JOB: Schema = {
    "type": "object",
    "required": ["job_id", "state", "source", "shards", "counts", "output", "timings", "reasons"],
    "properties": {
        "job_id": {"type": "string", "description": "The object key without `incoming/`, suffix included."},
        "run": {"type": "integer", "minimum": 0, "description": "The job's current run: one per (re)start."},
        "state": {"type": "string", "enum": ["PLANNING", "RUNNING", "SUCCEEDED", "FAILED"]},
        "source": {"type": "string"},
        "etag": {"type": ["string", "null"]},
        "version_id": {"type": "string"},
        "model": {"type": ["string", "null"]},
        "signature": {"type": ["string", "null"]},
        "model_version": {"type": ["string", "null"]},
        "shards": {
            "type": "object",
            "required": ["total", "done", "failed"],
            "properties": {
                "total": {"type": ["integer", "null"]},
                "done": {"type": "integer"},
                "failed": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "output": {
            "type": "object",
            "required": ["manifest", "prefix"],
            "properties": {
                "manifest": {"type": "string", "description": "`_SUCCESS` or `_FAILED`: lists the run's objects."},
                "prefix": {"type": "string", "description": "The run's folder."},
                "ordered": {"type": "string"},
                "parts": {"type": "array", "items": {"type": "string"}},
                "errors": {"type": "array", "items": {"type": "string"}},
            },
        },
        "timings": {
            "type": "object",
            "properties": {
                "created_at": _NULLABLE_NUMBER,
                "planned_at": _NULLABLE_NUMBER,
                "finished_at": _NULLABLE_NUMBER,
                "elapsed_s": _NULLABLE_NUMBER,
                "worker_seconds": _NULLABLE_NUMBER,
            },
        },
        "reasons": {"type": "array", "items": {"type": "string"}},
        "published": {
            "type": "boolean",
            "description": "Status only: true once the run's `_SUCCESS`/`_FAILED` manifest is written (the state "
            "turns SUCCEEDED/FAILED just before).",
        },
    },
}
CACHED_PREDICTION: Schema = {
    "type": "object",
    "required": ["key", "model", "model_version", "job_id", "run"],
    "description": (
        "The key (with its JSON type), the model and version that computed it, the batch job and run, and the "
        "prediction's fields (as in `:predict`). After a promotion, `live_version` names the version now served "
        "and `stale` says whether this entry was written by an older one."
    ),
    "properties": {
        "key": {"type": ["string", "integer"]},
        "model": {"type": "string"},
        "model_version": {"type": ["string", "null"]},
        "job_id": {"type": "string"},
        "run": {"type": "integer"},
        "expires_at": {"type": "integer", "description": "Epoch seconds (CacheTtlSeconds after the write)."},
        "live_version": {"type": "string"},
        "stale": {"type": "boolean"},
    },
}


def fields(schema: Schema) -> frozenset[str]:
    """The property names an object schema allows."""
    return frozenset(schema["properties"])


def required(schema: Schema) -> frozenset[str]:
    """The property names an object schema requires."""
    return frozenset(schema.get("required", ()))


def copy_of(schema: Schema) -> Schema:
    """A deep copy, for documents that are edited (e.g. examples added) without touching these constants."""
    return copy.deepcopy(schema)
