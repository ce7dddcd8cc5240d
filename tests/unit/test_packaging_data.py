"""Packaging data readers (.npz / .jsonl / .csv) and binding data to a model's signatures, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from liteserve_dev.packaging import PackagingError
from liteserve_dev.packaging.datasets import MIN_ROWS, bind, label_indices, read

TWO_INPUTS = {
    "serving_default": {
        "inputs": {
            "image": {"dtype": "float32", "shape": [-1, 4, 4, 1]},
            "meta": {"dtype": "float32", "shape": [-1, 3]},
        },
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 2]}},
    }
}
FLAT = {
    "serving_default": {
        "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
        "outputs": {"y": {"dtype": "float32", "shape": [-1, 1]}},
    }
}
SCALAR = {
    "serving_default": {
        "inputs": {"x": {"dtype": "float32", "shape": [-1]}},
        "outputs": {"y": {"dtype": "float32", "shape": [-1]}},
    }
}
N = 30


def npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def jsonl(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def two_input_arrays(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"image": rng.random((n, 4, 4, 1)), "meta": rng.normal(size=(n, 3)), "label": rng.integers(0, 2, n)}


def test_npz_binds_every_input_with_the_signature_dtype_and_splits_the_label(tmp_path: Path) -> None:
    arrays = two_input_arrays()
    bound = bind(read(npz(tmp_path, **arrays)), TWO_INPUTS)
    assert set(bound.inputs) == {"image", "meta"} and bound.rows == N
    assert bound.inputs["image"].dtype == np.float32 and bound.inputs["image"].shape == (N, 4, 4, 1)
    np.testing.assert_allclose(bound.inputs["meta"], arrays["meta"].astype(np.float32))
    np.testing.assert_array_equal(bound.labels, arrays["label"])
    assert bound.feature_names == {"meta": ["meta_0", "meta_1", "meta_2"]}  # rank-4 image: no per-feature names
    assert bound.source == {"file": "data.npz", "format": "npz", "rows": N}


def test_jsonl_reads_one_field_per_input_ignores_the_key_and_takes_a_named_label(tmp_path: Path) -> None:
    rows = [{"key": f"k{i}", "x": [i, i + 1.5, -i], "target": i * 2.0} for i in range(N)]
    bound = bind(read(jsonl(tmp_path, rows), label_field="target"), FLAT)
    assert bound.inputs["x"].shape == (N, 3) and bound.inputs["x"][2].tolist() == [2.0, 3.5, -2.0]
    assert bound.labels.tolist() == [i * 2.0 for i in range(N)]


def test_csv_columns_feed_the_flat_input_and_become_its_feature_names(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("age,bmi,bp,label\n" + "".join(f"{i},{i / 10},{100 + i},{i % 2}\n" for i in range(N)))
    bound = bind(read(path), FLAT)
    assert bound.feature_names == {"x": ["age", "bmi", "bp"]}
    assert bound.inputs["x"][3].tolist() == pytest.approx([3.0, 0.3, 103.0])
    assert bound.labels.tolist()[:3] == ["0", "1", "0"]


def test_a_scalar_input_takes_one_number_per_row(tmp_path: Path) -> None:
    bound = bind(read(jsonl(tmp_path, [{"x": float(i)} for i in range(N)])), SCALAR)
    assert bound.inputs["x"].shape == (N,) and bound.feature_names == {"x": ["x"]}


@pytest.mark.parametrize(
    ("arrays", "signatures", "message"),
    [
        ({"image": two_input_arrays()["image"]}, TWO_INPUTS, "no data for input 'meta' (signature 'serving_default')"),
        ({**two_input_arrays(), "extra": np.zeros(N)}, TWO_INPUTS, "fields ['extra'] are not inputs"),
        ({**two_input_arrays(), "meta": np.zeros((N, 4))}, TWO_INPUTS, "input 'meta' has shape [30, 4]; signature"),
        ({**two_input_arrays(), "image": np.zeros((N, 4, 4))}, TWO_INPUTS, "input 'image' has shape [30, 4, 4]"),
        ({"x": np.where(np.arange(N * 3).reshape(N, 3) == 40, np.nan, 1.0)}, FLAT, "input 'x' row 13 holds NaN"),
        ({"x": np.ones((MIN_ROWS - 1, 3))}, FLAT, f"{MIN_ROWS - 1} rows; the baseline needs at least {MIN_ROWS}"),
        ({"x": np.ones((N, 3)), "y": np.ones(N + 1)}, FLAT, "different row counts"),
        ({"x": np.array([["a", "b", "c"]] * N)}, FLAT, "is <U1, not numeric"),
    ],
)
def test_bad_npz_data_gets_one_clear_error(tmp_path: Path, arrays: dict, signatures: dict, message: str) -> None:
    with pytest.raises(PackagingError) as err:
        bind(read(npz(tmp_path, **arrays)), signatures)
    assert message in str(err.value)


def test_fractions_are_refused_for_an_integer_input(tmp_path: Path) -> None:
    sigs = {"s": {"inputs": {"ids": {"dtype": "int32", "shape": [-1, 2]}}, "outputs": {}}}
    assert bind(read(npz(tmp_path, ids=np.ones((N, 2)) * 3)), sigs).inputs["ids"].dtype == np.int32
    with pytest.raises(PackagingError, match="'ids' is int32 but the data holds fractions"):
        bind(read(npz(tmp_path, ids=np.full((N, 2), 0.5))), sigs)


def test_two_signatures_disagreeing_on_an_input_are_refused(tmp_path: Path) -> None:
    other = {"inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}}, "outputs": {}}
    with pytest.raises(PackagingError, match="input 'x' is"):
        bind(read(npz(tmp_path, x=np.ones((N, 3)))), {**FLAT, "other": other})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"x": [1, 2, 3]}\nnot json\n', "data.jsonl line 2: not JSON"),
        ('{"x": [1, 2, 3]}\n[1, 2]\n', "line 2: expected a JSON object"),
        ('{"x": [1, 2, 3]}\n{"z": [1, 2, 3]}\n', "line 2: fields ['z'] differ from line 1's ['x']"),
        ('{"x": [1, 2, 3]}\n{"x": [1, 2]}\n', "field 'x' is ragged or not numeric"),
        ('{"x": [1, 2, 3], "label": 1}\n{"x": [1, 2, 3]}\n', "line 2: the label field is on some lines only"),
        ('{"x": [1, 2, "3"]}\n', "field 'x' is ragged or not numeric"),
        ("\n\n", "holds no rows"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    with pytest.raises(PackagingError) as err:
        read(path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "label_field", "message"),
    [
        ("a,b,c\n1,2,x\n", None, "data.csv line 2, column 'c': 'x' is not a number"),
        ("a,b,c\n1,2,\n", None, "column 'c': '' is not a number"),
        ("a,b,c\n1,2\n", None, "line 2: 2 values for 3 columns"),
        ("a,a,c\n1,2,3\n", None, "column names must be unique"),
        ("a,b,c\n1,2,3\n", "target", "no label column 'target'"),
        ("", None, "no header row"),
    ],
)
def test_bad_csv_names_line_and_column(tmp_path: Path, text: str, label_field: str | None, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    with pytest.raises(PackagingError) as err:
        read(path, label_field)
    assert message in str(err.value)


def test_csv_cannot_feed_a_model_with_several_inputs(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b,c\n" + "1,2,3\n" * N)
    with pytest.raises(PackagingError, match="CSV columns feed one flat input"):
        bind(read(path), TWO_INPUTS)
    with pytest.raises(PackagingError, match="3 feature columns"):
        bind(read(path), {"s": {"inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}}, "outputs": {}}})


def test_unknown_formats_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(PackagingError, match=r"expected one of \.npz, \.jsonl, \.csv"):
        read(tmp_path / "data.parquet")
    with pytest.raises(PackagingError, match="does not exist"):
        read(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PackagingError, match=r"not a readable numeric \.npz"):
        read(tmp_path / "bad.npz")


def test_label_indices_take_class_names_or_indices() -> None:
    names = ["cat", "dog", "owl"]
    assert label_indices(np.array(["dog", "owl", "cat"]), names).tolist() == [1, 2, 0]
    assert label_indices(np.array([2, 0]), names).tolist() == [2, 0]
    assert label_indices(np.array(["2", "1"]), names).tolist() == [2, 1]  # CSV text
    with pytest.raises(PackagingError, match="label 'emu' on row 1 is neither a class name nor an index < 3"):
        label_indices(np.array(["cat", "emu"]), names)
    with pytest.raises(PackagingError, match="label 3 on row 0"):
        label_indices(np.array([3]), names)
