"""TensorFlow Serving REST API codec (predict in row and columnar format, model status, metadata).

Spec: https://www.tensorflow.org/tfx/serving/api_rest. Keyed prediction is an extension: in row format an instance
object may carry the key field next to its inputs; in columnar format `inputs` may hold a list of keys under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from liteserve.errors import BadRequest, PayloadTooLarge
from liteserve.keys import Key, check_keys
from liteserve.manifest import SignatureSpec, TensorSpec
from liteserve.protocols import schemas
from liteserve.runtime import Model
from liteserve.tensors import to_batch

_DT = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int64": "DT_INT64",
    "int32": "DT_INT32",
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "bool": "DT_BOOL",
    "object": "DT_STRING",
}
_TOP_LEVEL = schemas.fields(schemas.predict_request(max_instances=1))  # signature_name, instances, inputs


@dataclass(frozen=True)
class PredictCall:
    """A decoded, validated predict request."""

    signature: SignatureSpec
    inputs: dict[str, np.ndarray]
    keys: list[Key] | None
    columnar: bool
    key_field: str


def decode_predict(
    doc: Any, model: Model, *, key_field: str, max_instances: int, check_bools: bool = True
) -> PredictCall:
    """Validate a `:predict` body and turn it into input batches. Raises BadRequest/PayloadTooLarge."""
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with 'instances' or 'inputs'")
    unknown = doc.keys() - _TOP_LEVEL
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}; expected 'signature_name' and 'instances' or 'inputs'")
    if ("instances" in doc) == ("inputs" in doc):
        raise BadRequest("exactly one of 'instances' (row format) or 'inputs' (columnar format) is required")
    signature_name = doc.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise BadRequest("signature_name must be a string")
    sig = model.signature(signature_name)
    if "instances" in doc:
        rows, keys = _split_rows(doc["instances"], sig, key_field, max_instances)
        columnar = False
    else:
        rows, keys = _split_columns(doc["inputs"], sig, key_field, max_instances)
        columnar = True
    inputs = {name: to_batch(rows[name], spec, check_bools=check_bools) for name, spec in sig.inputs.items()}
    sizes = {len(arr) for arr in inputs.values()}
    if len(sizes) > 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}")
    return PredictCall(sig, inputs, keys, columnar, key_field)


def _check_count(instances: Any, what: str, max_instances: int) -> list:
    if not isinstance(instances, list) or not instances:
        raise BadRequest(f"'{what}' must be a non-empty list")
    if len(instances) > max_instances:
        raise PayloadTooLarge(f"{len(instances)} instances exceed the limit of {max_instances} per request")
    return instances


def _split_rows(
    instances: Any, sig: SignatureSpec, key_field: str, max_instances: int
) -> tuple[dict[str, list], list[Key] | None]:
    instances = _check_count(instances, "instances", max_instances)
    names = list(sig.inputs)
    if not isinstance(instances[0], dict):
        if len(names) != 1:
            raise BadRequest(f"signature '{sig.name}' has several inputs {names}: instances must be objects")
        if any(isinstance(inst, dict) for inst in instances):
            raise BadRequest("instances mix objects and bare values")
        return {names[0]: instances}, None
    keyed = key_field in instances[0]
    allowed = {*names, key_field} if keyed else set(names)
    columns: dict[str, list] = {name: [] for name in names}
    keys: list[Any] = []
    for index, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise BadRequest(f"instance {index}: expected an object like instance 0, got {type(inst).__name__}")
        if (key_field in inst) != keyed:
            raise BadRequest(
                f"instance {index}: either every instance carries a '{key_field}' or none does (instance 0 "
                f"{'does' if keyed else 'does not'})"
            )
        if inst.keys() != allowed:
            missing = sorted(allowed - inst.keys())
            extra = sorted(inst.keys() - allowed)
            raise BadRequest(
                f"instance {index}: "
                + "; ".join(
                    ([f"missing input(s) {missing}"] if missing else [])
                    + ([f"unknown field(s) {extra}; inputs are {names}, key field '{key_field}'"] if extra else [])
                )
            )
        for name in names:
            columns[name].append(inst[name])
        if keyed:
            keys.append(inst[key_field])
    return columns, check_keys(keys) if keyed else None


def _split_columns(
    inputs: Any, sig: SignatureSpec, key_field: str, max_instances: int
) -> tuple[dict[str, list], list[Key] | None]:
    names = list(sig.inputs)
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise BadRequest(f"signature '{sig.name}' has several inputs {names}: 'inputs' must be an object")
        return {names[0]: _check_count(inputs, "inputs", max_instances)}, None
    allowed = {*names, key_field}
    extra = sorted(inputs.keys() - allowed)
    missing = sorted(set(names) - inputs.keys())
    if extra or missing:
        raise BadRequest(f"'inputs': missing {missing}, unknown {extra}; inputs are {names}, key field '{key_field}'")
    columns = {name: _check_count(inputs[name], f"inputs.{name}", max_instances) for name in names}
    keys = None
    if key_field in inputs:
        keys = check_keys(_check_count(inputs[key_field], f"inputs.{key_field}", max_instances))
        batch = len(columns[names[0]])
        if len(keys) != batch:
            raise BadRequest(f"'inputs.{key_field}' has {len(keys)} keys for {batch} instances")
    return columns, keys


def encode_predict(call: PredictCall, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The response document (numpy arrays inside; serialize with orjson's numpy support)."""
    keys = call.keys
    if call.columnar:
        if keys is not None:
            return {"outputs": {call.key_field: keys, **outputs}}
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if keys is None and len(outputs) == 1:  # a single named output is unwrapped, as TF Serving does
        return {"predictions": next(iter(outputs.values()))}
    return {"predictions": instance_objects(outputs, keys, call.key_field)}


def instance_objects(
    outputs: dict[str, np.ndarray], keys: list[Key] | None = None, key_field: str = "key"
) -> list[dict]:
    """One object per instance: the key first (when keyed), then every named output."""
    names = list(outputs)
    columns = [_rows(arr) for arr in outputs.values()]
    if keys is not None:
        names.insert(0, key_field)
        columns.insert(0, keys)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _rows(arr: np.ndarray) -> list[Any]:
    # Integer vectors become Python ints; float and 2-D outputs stay numpy (row views), which orjson writes in
    # float32's shortest form instead of float64's long digits.
    return arr.tolist() if arr.ndim == 1 and arr.dtype.kind in "iub" else list(arr)


def model_status(model: Model) -> dict[str, Any]:
    """`GET /v1/models/{name}` body."""
    return {
        "model_version_status": [
            {"version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def model_metadata(model: Model) -> dict[str, Any]:
    """`GET /v1/models/{name}/metadata` body, with SignatureDefs in TF Serving's JSON form."""
    defs = {
        name: {
            "inputs": {n: _tensor_info(t, f"{name}_{n}:0") for n, t in sig.inputs.items()},
            "outputs": {
                n: _tensor_info(t, f"StatefulPartitionedCall:{i}") for i, (n, t) in enumerate(sig.outputs.items())
            },
            "method_name": "tensorflow/serving/predict",
        }
        for name, sig in model.manifest.signatures.items()
    }
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
        "metadata": {"signature_def": {"signature_def": defs}},
    }


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    return {
        "dtype": _DT.get(spec.dtype, "DT_INVALID"),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False},
        "name": tensor_name,
    }
