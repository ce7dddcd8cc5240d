"""to_batch / from_flat: the fast path and the error that names the bad instance."""

import math

import numpy as np
import pytest
from liteserve.errors import BadRequest
from liteserve.manifest import TensorSpec
from liteserve.tensors import from_flat, to_batch

SPEC = TensorSpec("x", "float32", (-1, 4))


def test_rows_become_a_float32_batch():
    arr = to_batch([[0, 1, 2, 3], [0.5, 0.25, 1e-3, 7]], SPEC, check_bools=False)
    assert arr.dtype == np.float32
    assert arr.shape == (2, 4)
    np.testing.assert_allclose(arr[1], [0.5, 0.25, 1e-3, 7], rtol=1e-6)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0, 1, 2, 3], [0, 1, 2]], "instance 1: input 'x' expected 4 values, got 3"),
        ([[0, 1, 2, 3], [0, 1, 2, 3, 4]], "instance 1: input 'x' expected 4 values, got 5"),
        ([[0, 1, 2, 3], [0, "a", 2, 3]], "instance 1: input 'x' expected a number, got str 'a'"),
        ([[0, 1, 2, 3], [0, "1", 2, 3]], "instance 1: input 'x' expected a number, got str '1'"),
        ([[0, 1, 2, 3], [0, None, 2, 3]], "instance 1: input 'x' expected a number, got NoneType"),
        ([[0, 1, 2, 3], [0, True, 2, 3]], "instance 1: input 'x' expected a number, got bool True"),
        ([[0, 1, 2, 3], 5], "instance 1: input 'x' expected a list of 4 values, got int 5"),
        ([[0, 1, 2, 3], [[0], 1, 2, 3]], "instance 1: input 'x' expected a number, got list [0]"),
        ([[0, 1, 2, 3], [0, math.nan, 2, 3]], "instance 1: input 'x' holds nan"),
        ([[0, 1, 2, 3], [0, 1, math.inf, 3]], "instance 1: input 'x' holds inf"),
        ([[0, 1, 2, 3], [0, 1, 1e39, 3]], "instance 1: input 'x' holds 1e+39, out of range"),
        ([[0, 1, 2, 3], [0, 1, 10**400, 3]], "instance 1: input 'x' holds"),
    ],
)
def test_bad_instances_are_named(rows, message):
    with pytest.raises(BadRequest) as err:
        to_batch(rows, SPEC, check_bools=True)
    assert err.value.message.startswith(message)


@pytest.mark.parametrize(
    "rows",
    [
        [[0, 1, 2, 3], [0, 1, 2]],
        [[0, 1, 2, 3], [0, "a", 2, 3]],
        [[0, 1, 2, 3], [0, 1, math.nan, 3]],
        [[0, 1, 2, 3], [0, 1, 1e39, 3]],
        [[0, 1, 2, 3], [0, 1, 10**400, 3]],
        [[[0, 1, 2, 3]], [[0, 1, 2, 3]]],
    ],
)
def test_fast_path_still_names_the_instance(rows):
    """Without the bool pre-check the fast path must still find the bad instance."""
    with pytest.raises(BadRequest) as err:
        to_batch(rows, SPEC, check_bools=False)
    assert "instance 1:" in err.value.message or "instance 0:" in err.value.message


@pytest.mark.parametrize("rows", [[], None, {"x": 1}, "abc"])
def test_empty_or_not_a_list(rows):
    with pytest.raises(BadRequest, match="non-empty list"):
        to_batch(rows, SPEC)


def test_from_flat_reshapes_row_major():
    arr = from_flat(list(range(8)), [2, 4], SPEC)
    assert arr.shape == (2, 4)
    assert arr[1, 0] == 4


def test_from_flat_accepts_nested_data():
    assert from_flat([[1, 2, 3, 4]], [1, 4], SPEC).shape == (1, 4)


@pytest.mark.parametrize(
    ("data", "shape", "message"),
    [
        (list(range(7)), [2, 4], "7 values do not fill shape [2, 4]"),
        (list(range(8)), [2, 3], "does not match the model's [N, 4]"),
        (list(range(8)), [8], "does not match"),
        (list(range(8)), "2,4", "shape must be a list"),
        (list(range(8)), [2, -4], "non-negative"),
        ([], [0, 4], "empty batch"),
        ([1, 2, "x", 4], [1, 4], "only numbers"),
        ([1, 2, True, 4], [1, 4], "only numbers"),
        ([1, 2, math.inf, 4], [1, 4], "instance 0: input 'x' holds NaN, Infinity"),
        ("abcd", [1, 4], "data must be a list"),
    ],
)
def test_from_flat_errors(data, shape, message):
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_flat(data, shape, SPEC)


def test_integer_inputs():
    spec = TensorSpec("ids", "int32", (-1, 2))
    assert to_batch([[1, 2]], spec).dtype == np.int32
    with pytest.raises(BadRequest, match="expected an integer"):
        to_batch([[1, 2.5]], spec)
    with pytest.raises(BadRequest, match="out of range"):
        to_batch([[1, 2**40]], spec)
