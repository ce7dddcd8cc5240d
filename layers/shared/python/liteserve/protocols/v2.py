"""Open Inference Protocol (KServe V2) REST codec: server/model metadata, readiness and `infer`.

Spec: https://github.com/kserve/open-inference-protocol. Keyed prediction: a `BYTES` input named after the key
field (default `key`, shape [N]) never reaches the model and comes back as a `BYTES` output of the same name.
The signature is chosen by the request parameter `signature_name` (default `serving_default`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liteserve import __version__
from liteserve.errors import BadRequest, PayloadTooLarge
from liteserve.keys import Key, check_keys
from liteserve.manifest import SignatureSpec, TensorSpec
from liteserve.protocols import schemas
from liteserve.protocols.schemas import DATATYPES
from liteserve.runtime import Model
from liteserve.tensors import from_flat

_REQUEST_FIELDS = schemas.fields(schemas.INFER_REQUEST)
_INPUT_FIELDS = schemas.fields(schemas.INFER_TENSOR)
_INPUT_REQUIRED = schemas.required(schemas.INFER_TENSOR)


@dataclass(frozen=True)
class InferCall:
    """A decoded, validated infer request."""

    signature: SignatureSpec
    inputs: dict[str, np.ndarray]
    keys: list[Key] | None
    key_field: str
    request_id: str | None = None
    requested: list[str] = field(default_factory=list)


def decode_infer(doc: Any, model: Model, *, key_field: str, max_instances: int, check_bools: bool = True) -> InferCall:
    """Validate an `infer` body and turn it into input batches. Raises BadRequest/PayloadTooLarge."""
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with 'inputs'")
    unknown = sorted(doc.keys() - _REQUEST_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} in inference request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    parameters = doc.get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    signature_name = parameters.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise BadRequest("parameters.signature_name must be a string")
    sig = model.signature(signature_name)
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    keys: list[Key] | None = None
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not tensor.keys() >= _INPUT_REQUIRED:
            raise BadRequest(f"inputs[{index}]: a tensor needs 'name', 'shape', 'datatype' and 'data'")
        extra = sorted(tensor.keys() - _INPUT_FIELDS)
        if extra:
            raise BadRequest(f"inputs[{index}]: unknown field(s) {extra}")
        name = tensor["name"]
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{index}]: 'name' must be a string, got {type(name).__name__}")
        if name in inputs or (name == key_field and keys is not None):
            raise BadRequest(f"inputs[{index}]: input '{name}' given twice")
        if name == key_field and name not in sig.inputs:
            keys = _decode_keys(tensor, index)
            continue
        spec = sig.inputs.get(name)
        if spec is None:
            raise BadRequest(
                f"inputs[{index}]: unknown input '{name}'; signature '{sig.name}' takes {list(sig.inputs)}"
                f" (and an optional BYTES '{key_field}')"
            )
        expected = DATATYPES.get(spec.dtype, spec.dtype)
        if tensor["datatype"] != expected:
            raise BadRequest(
                f"inputs[{index}]: input '{name}' must have datatype {expected}, got {tensor['datatype']!r}"
            )
        shape = tensor["shape"]
        if isinstance(shape, list) and shape and isinstance(shape[0], int) and shape[0] > max_instances:
            raise PayloadTooLarge(f"{shape[0]} instances exceed the limit of {max_instances} per request")
        inputs[name] = from_flat(tensor["data"], shape, spec, check_bools=check_bools)
    missing = sorted(sig.inputs.keys() - inputs.keys())
    if missing:
        raise BadRequest(f"missing input(s) {missing} for signature '{sig.name}'")
    sizes = {len(arr) for arr in inputs.values()}
    if len(sizes) > 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}")
    if keys is not None and len(keys) != sizes.pop():
        raise BadRequest(f"input '{key_field}' has {len(keys)} keys for {len(next(iter(inputs.values())))} instances")
    requested = _requested_outputs(doc.get("outputs"), sig)
    return InferCall(sig, inputs, keys, key_field, request_id, requested)


def _decode_keys(tensor: dict[str, Any], index: int) -> list[Key]:
    if tensor["datatype"] != "BYTES":
        raise BadRequest(f"inputs[{index}]: key input '{tensor['name']}' must have datatype BYTES")
    data, shape = tensor["data"], tensor["shape"]
    if not isinstance(data, list) or not isinstance(shape, list) or len(shape) != 1 or shape[0] != len(data):
        raise BadRequest(f"inputs[{index}]: key input '{tensor['name']}' must have shape [N] and N strings")
    if not all(isinstance(k, str) for k in data):
        raise BadRequest(f"inputs[{index}]: keys of a BYTES input must be strings")
    return check_keys(data)


def _requested_outputs(outputs: Any, sig: SignatureSpec) -> list[str]:
    if outputs is None:
        return []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in outputs]
    unknown = sorted(set(names) - sig.outputs.keys())
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; signature '{sig.name}' has {list(sig.outputs)}")
    return names


def encode_infer(call: InferCall, model: Model, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inference response document (numpy arrays inside; serialize with orjson's numpy support)."""
    names = call.requested or list(outputs)
    tensors = [_tensor(name, call.signature.outputs[name], outputs[name]) for name in names]
    if call.keys is not None:
        tensors.insert(0, {"name": call.key_field, "datatype": "BYTES", "shape": [len(call.keys)], "data": call.keys})
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if call.request_id is not None:
        response["id"] = call.request_id
    response["parameters"] = {"signature_name": call.signature.name}
    response["outputs"] = tensors
    return response


def _tensor(name: str, spec: TensorSpec, value: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": DATATYPES.get(spec.dtype, "BYTES"),
        "shape": list(value.shape),
        "data": value.reshape(-1),
    }


def server_metadata() -> dict[str, Any]:
    """`GET /v2` body."""
    return {"name": "liteserve", "version": __version__, "extensions": []}


def model_metadata(model: Model) -> dict[str, Any]:
    """`GET /v2/models/{name}` body: the default signature's tensors, plus every signature under `parameters`."""
    sig = model.signature(None)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "tensorflow_lite",
        "inputs": [_meta(t) for t in sig.inputs.values()],
        "outputs": [_meta(t) for t in sig.outputs.values()],
        "parameters": {
            "signatures": {
                name: {
                    "inputs": [_meta(t) for t in s.inputs.values()],
                    "outputs": [_meta(t) for t in s.outputs.values()],
                }
                for name, s in model.manifest.signatures.items()
            }
        },
    }


def _meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": DATATYPES.get(spec.dtype, "BYTES"), "shape": list(spec.shape)}
