"""Turning decoded JSON into validated numpy batches, with errors that name the offending instance."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from liteserve.errors import BadRequest
from liteserve.manifest import TensorSpec

_NUMERIC_KINDS = {"f": "fi", "i": "i", "u": "iu"}  # target dtype kind -> accepted source kinds


def to_batch(rows: Any, spec: TensorSpec, *, what: str = "instance", check_bools: bool = True) -> np.ndarray:
    """Stack per-instance values into one array of `spec`'s dtype and shape, or raise BadRequest.

    The fast path is one `np.asarray`; only when it fails (or `check_bools` asks for it) is every instance
    inspected, so that the error names the first bad one. `check_bools=False` is for callers that know the JSON
    text had no `true`/`false` token: numpy would otherwise silently read a boolean as 0.0/1.0.
    """
    if not isinstance(rows, list) or not rows:
        raise BadRequest(f"input '{spec.name}': expected a non-empty list of {what}s")
    if check_bools:
        _diagnose(rows, spec, what)
    try:
        arr = np.asarray(rows)
    except (ValueError, TypeError):  # ragged rows, or mixed types numpy cannot stack
        arr = None
    if arr is None or arr.shape[1:] != spec.feature_shape or arr.dtype.kind not in _accepted_kinds(spec):
        _diagnose(rows, spec, what)
        raise BadRequest(f"input '{spec.name}': cannot be read as {spec.dtype}{list(spec.shape)}")  # defensive
    return cast_finite(arr, spec, what)


def from_flat(data: Any, shape: Any, spec: TensorSpec, *, check_bools: bool = True) -> np.ndarray:
    """Build a batch from V2-style `data` (flat row-major or nested) and an explicit `shape`.

    `check_bools=False` skips the scan for booleans, which numpy would silently read as numbers.
    """
    _check_shape(shape, spec)
    if not isinstance(data, list):
        raise BadRequest(f"input '{spec.name}': data must be a list")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input '{spec.name}': data is ragged or holds mixed types") from None
    if arr.dtype.kind not in _accepted_kinds(spec) or (check_bools and _holds_bool(data)):
        raise BadRequest(f"input '{spec.name}': data must hold only numbers for {spec.dtype}")
    if arr.size != math.prod(shape):
        raise BadRequest(f"input '{spec.name}': {arr.size} values do not fill shape {shape}")
    arr = arr.reshape(shape)
    return cast_finite(arr, spec)


def _holds_bool(data: list) -> bool:
    stack = [data]
    while stack:
        for item in stack.pop():
            if isinstance(item, bool):
                return True
            if isinstance(item, list):
                stack.append(item)
    return False


def _accepted_kinds(spec: TensorSpec) -> str:
    return _NUMERIC_KINDS.get(spec.np_dtype.kind, spec.np_dtype.kind)


def cast_finite(arr: np.ndarray, spec: TensorSpec, what: str = "instance") -> np.ndarray:
    """Cast a numeric array to `spec`'s dtype; BadRequest names the first instance that is not finite or fits not."""
    low, high = spec.limits
    # Two reductions decide the common case; NaN fails both comparisons.
    if arr.size and not (arr.min() >= low and arr.max() <= high):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr < low) | (arr > high)
        index = int(np.argwhere(bad)[0][0])
        raise BadRequest(
            f"{what} {index}: input '{spec.name}' holds NaN, Infinity or a value out of {spec.dtype} range"
        )
    return arr.astype(spec.np_dtype, copy=False)


def problem(value: Any, spec: TensorSpec) -> str | None:
    """Why one instance's value does not fit `spec` (e.g. "expected 64 values, got 63"), or None if it does."""
    return _check_value(value, spec.feature_shape, spec.np_dtype.kind in "iu", spec.limits[1])


def _diagnose(rows: list, spec: TensorSpec, what: str) -> None:
    """Walk every instance and raise BadRequest for the first one that does not fit `spec`."""
    for index, row in enumerate(rows):
        reason = problem(row, spec)
        if reason:
            raise BadRequest(f"{what} {index}: input '{spec.name}' {reason}")


def _check_value(value: Any, shape: tuple[int, ...], integral: bool, limit: float) -> str | None:
    if not shape:
        if isinstance(value, bool) or not isinstance(value, Real):
            return f"expected a number, got {type(value).__name__} {_short(value)}"
        try:
            number = float(value)
        except OverflowError:
            return f"holds {_short(value)}, out of range"
        if not math.isfinite(number):
            return f"holds {value!r}; NaN and Infinity are not allowed"
        if abs(number) > limit:
            return f"holds {_short(value)}, out of range"
        if integral and not number.is_integer():
            return f"expected an integer, got {value!r}"
        return None
    if not isinstance(value, list):
        return f"expected a list of {shape[0]} values, got {type(value).__name__} {_short(value)}"
    if len(value) != shape[0]:
        return f"expected {shape[0]} values, got {len(value)}"
    for item in value:
        problem = _check_value(item, shape[1:], integral, limit)
        if problem:
            return problem
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if d == -1 else str(d) for d in shape) + "]"


def from_buffer(data: bytes, dtype: str, shape: Any, spec: TensorSpec) -> np.ndarray:
    """Build a batch from binary tensor data (`dtype` a numpy type string, e.g. "<f4") and an explicit `shape`;
    BadRequest names the input when the sizes do not add up."""
    _check_shape(shape, spec)
    itemsize = np.dtype(dtype).itemsize
    need = math.prod(shape) * itemsize
    if len(data) != need:
        raise BadRequest(
            f"input '{spec.name}': binary_data_size {len(data)} does not match shape {shape}"
            f" ({math.prod(shape)} values of {itemsize} bytes = {need})"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    return cast_finite(arr, spec)


def _check_shape(shape: Any, spec: TensorSpec) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"input '{spec.name}': shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) != len(spec.shape) or tuple(shape[1:]) != spec.feature_shape:
        raise BadRequest(f"input '{spec.name}': shape {shape} does not match the model's {_shape_text(spec.shape)}")
    if shape[0] == 0:
        raise BadRequest(f"input '{spec.name}': empty batch")
