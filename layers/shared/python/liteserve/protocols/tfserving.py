"""TensorFlow Serving REST API codec (predict in row and columnar format, model status, metadata).

Spec: https://www.tensorflow.org/tfx/serving/api_rest. Keyed prediction is an extension: in row format an instance
object may carry the key field next to its inputs; in columnar format `inputs` may hold a list of keys under it.
String inputs take plain strings or `{"b64": "..."}` (bytes); string outputs come back as strings, or as
`{"b64": "..."}` when their name ends in `_bytes` or they are not UTF-8. `:classify` and `:regress` take the JSON
`examples` format (with an optional `context`) on a signature with class scores / one regression value, and answer
`{"results": ...}` in TF Serving's shapes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

from liteserve.errors import BadRequest, PayloadTooLarge
from liteserve.keys import Key, check_keys
from liteserve.manifest import ManifestSource, SignatureSource, SignatureSpec, TensorSpec
from liteserve.protocols import labels, schemas
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
_EXAMPLES_TOP_LEVEL = schemas.fields(schemas.examples_request(max_instances=1))  # signature_name, context, examples
_SCORE_NAMES = ("scores", "probabilities")  # preferred class-score outputs when a signature has several candidates


@dataclass(frozen=True)
class PredictCall:
    """A decoded, validated predict request."""

    signature: SignatureSpec
    inputs: dict[str, np.ndarray]
    keys: list[Key] | None
    columnar: bool
    key_field: str
    output_filter: list[str] | None = None

    @property
    def output_names(self) -> list[str]:
        """The outputs the response carries, in order."""
        return self.output_filter or list(self.signature.outputs)


def decode_predict(
    doc: Any, model: SignatureSource, *, key_field: str, max_instances: int, check_bools: bool = True
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
    output_filter = _output_filter(doc.get("output_filter"), sig, model)
    if "instances" in doc:
        rows, keys = _split_rows(doc["instances"], sig, key_field, max_instances)
        columnar = False
    else:
        rows, keys = _split_columns(doc["inputs"], sig, key_field, max_instances)
        columnar = True
    inputs = {
        name: _text_batch(rows[name], spec, "instance")
        if spec.np_dtype.kind in "OSU"
        else to_batch(rows[name], spec, check_bools=check_bools)
        for name, spec in sig.inputs.items()
    }
    sizes = {len(arr) for arr in inputs.values()}
    if len(sizes) > 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}")
    return PredictCall(sig, inputs, keys, columnar, key_field, output_filter)


def _output_filter(value: Any, sig: SignatureSpec, model: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("output_filter must be a non-empty list of output names")
    offered = [*sig.outputs, *([labels.CLASS_LABEL] if labels.source(model, sig.name) else [])]
    unknown = [v for v in value if v not in offered]
    if unknown:
        raise BadRequest(f"output_filter: unknown output(s) {unknown}; signature '{sig.name}' offers {offered}")
    if len(set(value)) != len(value):
        raise BadRequest(f"output_filter names an output twice: {value}")
    return value


def select_outputs(call: PredictCall, model: Any, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs `call` asks for (`output_filter`, `class_label` computed), in its order; all of them by default."""
    if call.output_filter is None:
        return outputs
    outputs = labels.with_labels(model, call.signature.name, outputs, call.output_filter)
    return {name: outputs[name] for name in call.output_filter}


def _is_text(spec: TensorSpec) -> bool:
    return spec.np_dtype.kind in "OSU"


def _batch(rows: Any, spec: TensorSpec, check_bools: bool, what: str) -> np.ndarray:
    if _is_text(spec):
        return _text_batch(rows, spec, what)
    return to_batch(rows, spec, what=what, check_bools=check_bools)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _text_batch(rows: Any, spec: TensorSpec, what: str) -> np.ndarray:
    """String inputs: plain strings (UTF-8) or {"b64": ...} (any bytes), nested like the input's shape."""
    if not isinstance(rows, list) or not rows:
        raise BadRequest(f"input '{spec.name}': expected a non-empty list of {what}s")
    values = [_bytes_of(row, f"{what} {i}: input '{spec.name}'") for i, row in enumerate(rows)]
    shape_error = BadRequest(f"input '{spec.name}': values do not have the model's shape {_dims(spec.shape)}")
    if not spec.feature_shape:
        if any(isinstance(v, list) for v in values):
            raise shape_error
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    try:
        arr = np.array(values, dtype=object)
    except ValueError:
        raise shape_error from None
    if arr.shape[1:] != spec.feature_shape:
        raise shape_error
    return arr


def _bytes_of(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return value.encode()
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRequest(f"{where}: 'b64' is not valid base64") from None
    if isinstance(value, list):
        return [_bytes_of(v, where) for v in value]
    raise BadRequest(f'{where}: expected a string or {{"b64": "..."}}, got {type(value).__name__}')


def _text_out(name: str, arr: np.ndarray) -> list[Any]:
    """A string output for JSON: str, or {"b64": ...} for `*_bytes` outputs and bytes that are not UTF-8."""

    def one(value: Any) -> Any:
        if isinstance(value, list):
            return [one(v) for v in value]
        if isinstance(value, str):
            return value
        if not name.endswith("_bytes"):
            try:
                return value.decode()
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode()}

    return one(arr.tolist())


def _jsonable(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """String outputs (which orjson cannot write from numpy) converted; the others as they are."""
    return {n: _text_out(n, a) if a.dtype.kind in "OSU" else a for n, a in outputs.items()}


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
    first = instances[0]
    if not isinstance(first, dict) or ("b64" in first and len(first) == 1):  # a bare value, or a bare {"b64"}
        if len(names) != 1:
            raise BadRequest(f"signature '{sig.name}' has several inputs {names}: instances must be objects")
        if any(isinstance(inst, dict) and not _is_b64(inst) for inst in instances):
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
    for arr in outputs.values():  # string outputs need converting for JSON; numeric ones go to orjson as they are
        if arr.dtype.kind in "OSU":
            outputs = _jsonable(outputs)
            break
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


def _rows(arr: Any) -> list[Any]:
    if isinstance(arr, list):  # string outputs, already converted
        return arr
    # Integer vectors become Python ints; float and 2-D outputs stay numpy (row views), which orjson writes in
    # float32's shortest form instead of float64's long digits.
    return arr.tolist() if arr.ndim == 1 and arr.dtype.kind in "iub" else list(arr)


@dataclass(frozen=True)
class ExamplesCall:
    """A decoded `:classify` / `:regress` request: the batches, the output that answers, keys for the log."""

    signature: SignatureSpec
    inputs: dict[str, np.ndarray]
    keys: list[Key] | None
    output: str


def decode_examples(
    doc: Any,
    model: SignatureSource,
    verb: str,
    *,
    key_field: str,
    max_instances: int,
    check_bools: bool = True,
    labels: list[str] | None = None,
) -> ExamplesCall:
    """Validate a `:classify` or `:regress` body (`examples`, optional `context` and `signature_name`); `labels`
    (the model's class names, if any) tell which output holds the class scores."""
    if not isinstance(doc, dict):
        raise BadRequest(f"request body must be a JSON object with 'examples' for :{verb}")
    unknown = sorted(doc.keys() - _EXAMPLES_TOP_LEVEL)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; :{verb} takes 'signature_name', 'context' and 'examples'")
    signature_name = doc.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise BadRequest("signature_name must be a string")
    sig = model.signature(signature_name)
    output = classification_output(sig, labels or []) if verb == "classify" else regression_output(sig)
    examples = _check_count(doc.get("examples"), "examples", max_instances)
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise BadRequest("'context' must be an object of features shared by every example")
    names = list(sig.inputs)
    columns: dict[str, list] = {name: [] for name in names}
    keys: list[Any] = []
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise BadRequest(f"example {index}: expected an object of features, got {type(example).__name__}")
        both = sorted(example.keys() & context.keys())
        if both:
            raise BadRequest(f"example {index}: feature(s) {both} also in 'context'; give each in one place")
        features = {**context, **example}
        missing = sorted(set(names) - features.keys())
        extra = sorted(features.keys() - {*names, key_field})
        if missing or extra:
            raise BadRequest(
                f"example {index}: missing feature(s) {missing}, unknown {extra}; inputs are {names},"
                f" key field '{key_field}'"
            )
        for name in names:
            columns[name].append(features[name])
        if key_field in features:
            keys.append(features[key_field])
    if keys and len(keys) != len(examples):
        raise BadRequest(f"either every example carries a '{key_field}' or none does")
    inputs = {name: _batch(columns[name], spec, check_bools, "example") for name, spec in sig.inputs.items()}
    return ExamplesCall(sig, inputs, check_keys(keys, "example") if keys else None, output)


def _describe(sig: SignatureSpec) -> str:
    return ", ".join(f"{n} {t.dtype}{_dims(t.shape)}" for n, t in sig.outputs.items())


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if d == -1 else str(d) for d in shape) + "]"


def classification_output(sig: SignatureSpec, labels: list[str]) -> str:
    """The output holding class scores: a float output of shape [N, classes], the one named `scores` or
    `probabilities` first; when the model names its classes, one with as many columns as it has labels."""
    candidates = [n for n, t in sig.outputs.items() if t.np_dtype.kind == "f" and len(t.shape) == 2]
    preferred = [n for n in candidates if n in _SCORE_NAMES]
    if labels and not preferred:
        candidates = [n for n in candidates if sig.outputs[n].shape[1] == len(labels)]
    if preferred or len(candidates) == 1:
        return (preferred or candidates)[0]
    classes = f" of {len(labels)} classes" if labels else ""
    raise BadRequest(
        f"signature '{sig.name}' is not a classification signature (it needs one float output of shape "
        f"[N, classes]{classes}, or one named {' or '.join(_SCORE_NAMES)}); its outputs are {_describe(sig)}"
    )


def regression_output(sig: SignatureSpec) -> str:
    """The output holding the regression value: the one float output of shape [N] or [N, 1]."""
    candidates = [n for n, t in sig.outputs.items() if t.np_dtype.kind == "f" and t.shape[1:] in ((), (1,))]
    if len(candidates) == 1:
        return candidates[0]
    raise BadRequest(
        f"signature '{sig.name}' is not a regression signature (it needs one float output of shape [N] or [N, 1]);"
        f" its outputs are {_describe(sig)}"
    )


def encode_classify(call: ExamplesCall, outputs: dict[str, np.ndarray], labels: list[str]) -> dict[str, Any]:
    """`{"results": [[[label, score], ...] per example]}`, every class in class order; the model's label names
    when it has one per class, otherwise the class ids as strings (as TF Serving answers)."""
    scores = outputs[call.output]
    names = labels if len(labels) == scores.shape[1] else [str(i) for i in range(scores.shape[1])]
    return {"results": [[[n, s] for n, s in zip(names, row, strict=True)] for row in scores.tolist()]}


def encode_regress(call: ExamplesCall, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """`{"results": [value per example]}`."""
    return {"results": outputs[call.output].reshape(-1).tolist()}


def model_status(model: SignatureSource) -> dict[str, Any]:
    """`GET /v1/models/{name}` body."""
    return {
        "model_version_status": [
            {"version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def model_metadata(model: ManifestSource) -> dict[str, Any]:
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
    metadata: dict[str, Any] = {"signature_def": {"signature_def": defs}}
    described = labels.describe(model)
    if described is not None:  # the class names, and the `class_label` output that carries them on request
        metadata["labels"] = described
    return {"model_spec": {"name": model.name, "signature_name": "", "version": model.version}, "metadata": metadata}


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    return {
        "dtype": _DT.get(spec.dtype, "DT_INVALID"),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False},
        "name": tensor_name,
    }
