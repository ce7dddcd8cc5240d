"""Open Inference Protocol (KServe V2) REST codec: server/model metadata, readiness and `infer`.

Spec: https://github.com/kserve/open-inference-protocol. Keyed prediction: a `BYTES` input named after the key
field (default `key`, shape [N]) never reaches the model and comes back as a `BYTES` output of the same name.
The signature is chosen by the request parameter `signature_name` (default `serving_default`).

Binary tensor data extension (the default of tritonclient's and kserve's HTTP clients): an input may carry
`parameters.binary_data_size` instead of `data`, its bytes following the JSON document (whose length the
`Inference-Header-Content-Length` header gives); outputs are sent the same way when asked for with
`parameters.binary_data` (per output) or `binary_data_output` (request). Any mix of JSON and binary tensors works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from liteserve import __version__
from liteserve.errors import BadRequest, PayloadTooLarge
from liteserve.keys import Key, check_keys
from liteserve.manifest import ManifestSource, SignatureSource, SignatureSpec, TensorSpec
from liteserve.protocols import labels, schemas
from liteserve.protocols.schemas import DATATYPES
from liteserve.tensors import from_buffer, from_flat

_REQUEST_FIELDS = schemas.fields(schemas.INFER_REQUEST)
_INPUT_FIELDS = schemas.fields(schemas.INFER_TENSOR)
_INPUT_REQUIRED = schemas.required(schemas.INFER_TENSOR)
# Binary tensor data extension: the request/response header giving the JSON part's length; the rest of the body is
# the tensors' bytes, in the order of the tensors that carry parameters.binary_data_size.
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data"]
_NO_OUTPUTS: frozenset[str] = frozenset()
# Little-endian, row-major, no padding (the extension's layout); BYTES are 4-byte-length-prefixed elements.
_BINARY_DTYPES = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us of every warm request here
class InferCall:
    """A decoded, validated infer request."""

    signature: SignatureSpec
    inputs: dict[str, np.ndarray]
    keys: list[Key] | None
    key_field: str
    request_id: str | None = None
    requested: list[str] = field(default_factory=list)
    binary_outputs: frozenset[str] = frozenset()  # outputs (the key field included) to send as binary data
    binary_inputs: bool = False  # some input came as binary data


def decode_infer(
    doc: Any,
    model: SignatureSource,
    *,
    key_field: str,
    max_instances: int,
    check_bools: bool = True,
    binary: bytes = b"",
) -> InferCall:
    """Validate an `infer` body and turn it into input batches. `binary` is what followed the JSON document
    (binary tensor data extension). Raises BadRequest/PayloadTooLarge."""
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with 'inputs'")
    unknown = sorted(doc.keys() - _REQUEST_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} in inference request")
    model_name = doc.get("model_name")
    if model_name is not None and model_name != model.name:
        raise BadRequest(f"model_name {model_name!r} does not match the model of the path, {model.name!r}")
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
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise BadRequest("parameters.binary_data_output must be true or false")
    sig = model.signature(signature_name)
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    keys: list[Key] | None = None
    offset = 0
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not tensor.keys() >= _INPUT_REQUIRED:
            raise BadRequest(
                f"inputs[{index}]: a tensor needs 'name', 'shape', 'datatype' and 'data'"
                " (or parameters.binary_data_size and binary data after the JSON)"
            )
        extra = sorted(tensor.keys() - _INPUT_FIELDS)
        if extra:
            raise BadRequest(f"inputs[{index}]: unknown field(s) {extra}")
        name = tensor["name"]
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{index}]: 'name' must be a string, got {type(name).__name__}")
        if "data" in tensor and tensor.get("parameters") is None:
            chunk = None  # the common JSON tensor, without a call
        else:
            chunk, offset = _binary_chunk(tensor, index, binary, offset)
        if name in inputs or (name == key_field and keys is not None):
            raise BadRequest(f"inputs[{index}]: input '{name}' given twice")
        if name == key_field and name not in sig.inputs:
            keys = _decode_keys(tensor, index, chunk)
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
        if chunk is None:
            inputs[name] = from_flat(tensor["data"], shape, spec, check_bools=check_bools)
        elif expected in _BINARY_DTYPES:
            inputs[name] = from_buffer(chunk, _BINARY_DTYPES[expected], shape, spec)
        else:
            raise BadRequest(f"inputs[{index}]: input '{name}': binary data for {expected} model inputs is unsupported")
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary)} bytes of binary data follow the JSON, but the inputs' binary_data_size add up to {offset}"
        )
    missing = sorted(sig.inputs.keys() - inputs.keys())
    if missing:
        raise BadRequest(f"missing input(s) {missing} for signature '{sig.name}'")
    sizes = {len(arr) for arr in inputs.values()}
    if len(sizes) > 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}")
    if keys is not None and len(keys) != sizes.pop():
        raise BadRequest(f"input '{key_field}' has {len(keys)} keys for {len(next(iter(inputs.values())))} instances")
    requested, explicit = _requested_outputs(doc.get("outputs"), sig, model, key_field, keys is not None)
    # Per output parameters.binary_data wins; binary_data_output is the default of the others.
    binary_outputs = _NO_OUTPUTS
    if binary_default or explicit:
        emitted = [*(requested or sig.outputs), *([key_field] if keys is not None else [])]
        binary_outputs = frozenset(n for n in emitted if explicit.get(n, binary_default))
    return InferCall(sig, inputs, keys, key_field, request_id, requested, binary_outputs, bool(binary))


def _binary_chunk(tensor: dict[str, Any], index: int, binary: bytes, offset: int) -> tuple[bytes | None, int]:
    """The tensor's bytes when it is sent as binary data (None for JSON `data`), and the next tensor's offset."""
    params = tensor.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"inputs[{index}]: 'parameters' must be an object")
    size = (params or {}).get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise BadRequest(
                f"inputs[{index}]: a tensor needs 'name', 'shape', 'datatype' and 'data'"
                " (or parameters.binary_data_size and binary data after the JSON)"
            )
        return None, offset
    name = tensor["name"]
    if "data" in tensor:
        raise BadRequest(f"inputs[{index}]: input '{name}' has both 'data' and parameters.binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequest(f"inputs[{index}]: input '{name}': binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise BadRequest(
            f"inputs[{index}]: input '{name}' declares binary_data_size {size} at offset {offset}, but only "
            f"{len(binary)} bytes of binary data follow the JSON"
        )
    return binary[offset : offset + size], offset + size


def _decode_keys(tensor: dict[str, Any], index: int, chunk: bytes | None) -> list[Key]:
    name = tensor["name"]
    if tensor["datatype"] != "BYTES":
        raise BadRequest(f"inputs[{index}]: key input '{name}' must have datatype BYTES")
    shape = tensor["shape"]
    data = tensor.get("data") if chunk is None else _bytes_elements(chunk, name, index)
    if not isinstance(data, list) or not isinstance(shape, list) or len(shape) != 1 or shape[0] != len(data):
        raise BadRequest(f"inputs[{index}]: key input '{name}' must have shape [N] and N strings")
    if not all(isinstance(k, str) for k in data):
        raise BadRequest(f"inputs[{index}]: keys of a BYTES input must be strings")
    return check_keys(data)


def _bytes_elements(chunk: bytes, name: str, index: int) -> list[str]:
    """A binary BYTES tensor: each element a 4-byte little-endian length, then that many bytes (UTF-8 here)."""
    out, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise BadRequest(f"inputs[{index}]: input '{name}': binary BYTES data ends inside a length prefix")
        size = int.from_bytes(chunk[pos : pos + 4], "little")
        pos += 4
        if pos + size > len(chunk):
            raise BadRequest(f"inputs[{index}]: input '{name}': element {len(out)} runs past its binary_data_size")
        try:
            out.append(chunk[pos : pos + size].decode())
        except UnicodeDecodeError:
            raise BadRequest(f"inputs[{index}]: input '{name}': element {len(out)} is not UTF-8 text") from None
        pos += size
    return out


def _requested_outputs(
    outputs: Any, sig: SignatureSpec, model: Any, key_field: str, keyed: bool
) -> tuple[list[str], dict[str, bool]]:
    """Requested output names (the key field, or `class_label` of a model with labels, among them if asked for) and
    their explicit binary_data flags."""
    if outputs is None:
        return [], {}
    offered = [*sig.outputs, *([labels.CLASS_LABEL] if labels.source(model, sig.name) else [])]
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in outputs]
    if key_field in names and key_field not in sig.outputs and not keyed:
        raise BadRequest(f"output '{key_field}' is the key field: send a BYTES input '{key_field}' to get it back")
    unknown = sorted(set(names) - set(offered) - {key_field})
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; signature '{sig.name}' has {offered}")
    binary: dict[str, bool] = {}
    for o in outputs:
        params = o.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest(f"output '{o['name']}': 'parameters' must be an object")
        if "classification" in params:
            raise BadRequest(f"output '{o['name']}': the classification extension is not supported; use :classify")
        if "binary_data" in params:
            if not isinstance(params["binary_data"], bool):
                raise BadRequest(f"output '{o['name']}': parameters.binary_data must be true or false")
            binary[o["name"]] = params["binary_data"]
    return names, binary


def encode_infer(
    call: InferCall, model: SignatureSource, outputs: dict[str, np.ndarray], chunks: list[bytes] | None = None
) -> dict[str, Any]:
    """The inference response document (numpy arrays inside; serialize with orjson's numpy support). With `chunks`,
    the outputs of `call.binary_outputs` carry parameters.binary_data_size instead of data and their bytes are
    appended to `chunks` (see `encode_binary`)."""
    names = call.requested or list(outputs)
    if call.keys is not None and call.key_field not in names:  # the key comes back unasked, first
        names = [call.key_field, *names]
    tensors = []
    for name in names:
        if name == call.key_field and name not in outputs:
            tensor: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [len(call.keys)], "data": call.keys}
        else:
            tensor = _tensor(name, call.signature.outputs.get(name, labels.SPEC), outputs[name])
        if chunks is not None and name in call.binary_outputs:
            chunk = _to_binary(tensor)
            del tensor["data"]
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if call.request_id is not None:
        response["id"] = call.request_id
    response["parameters"] = {"signature_name": call.signature.name}
    response["outputs"] = tensors
    return response


def encode_binary(call: InferCall, model: SignatureSource, outputs: dict[str, np.ndarray]) -> tuple[bytes, int]:
    """The whole response body with binary outputs: the JSON document, then each binary output's bytes.
    Returns (body, length of the JSON part) for the Inference-Header-Content-Length header."""
    chunks: list[bytes] = []
    head = orjson.dumps(encode_infer(call, model, outputs, chunks), option=orjson.OPT_SERIALIZE_NUMPY)
    return head + b"".join(chunks), len(head)


def _to_binary(tensor: dict[str, Any]) -> bytes:
    data = tensor["data"]
    if tensor["datatype"] == "BYTES":
        encoded = [str(item).encode() for item in data]
        return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    return np.ascontiguousarray(data, dtype=_BINARY_DTYPES[tensor["datatype"]]).tobytes()


def _tensor(name: str, spec: TensorSpec, value: np.ndarray) -> dict[str, Any]:
    data = value.reshape(-1)
    return {
        "name": name,
        "datatype": DATATYPES.get(spec.dtype, "BYTES"),
        "shape": list(value.shape),
        "data": data.tolist() if data.dtype.kind in "OSU" else data,  # orjson writes numeric arrays only
    }


def server_metadata() -> dict[str, Any]:
    """`GET /v2` body."""
    return {"name": "liteserve", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(model: ManifestSource) -> dict[str, Any]:
    """`GET /v2/models/{name}` body: the default signature's tensors, plus every signature under `parameters`."""
    sig = model.signature(None)
    parameters: dict[str, Any] = {
        "signatures": {
            name: {"inputs": [_meta(t) for t in s.inputs.values()], "outputs": [_meta(t) for t in s.outputs.values()]}
            for name, s in model.manifest.signatures.items()
        }
    }
    described = labels.describe(model)
    if described is not None:  # the class names, and the `class_label` output that carries them on request
        parameters["labels"] = described
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "tensorflow_lite",
        "inputs": [_meta(t) for t in sig.inputs.values()],
        "outputs": [_meta(t) for t in sig.outputs.values()],
        "parameters": parameters,
    }


def _meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": DATATYPES.get(spec.dtype, "BYTES"), "shape": list(spec.shape)}
