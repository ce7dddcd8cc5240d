"""Calibration / baseline data: `.npz`, `.jsonl` and `.csv` readers and binding the data to a model's inputs.

A data set is read without knowing the model (`read`), then bound to the kept signatures' inputs (`bind`), which
checks names, shapes, dtypes and finiteness and says which input, row and field is wrong.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liteserve_dev.packaging import PackagingError

MIN_ROWS = 20  # fewer rows give no usable quantiles / histograms for the baseline
KEY_FIELD = "key"
LABEL_FIELD = "label"
FORMATS = (".npz", ".jsonl", ".csv")


@dataclass(frozen=True)
class Dataset:
    """Rows as read: one array per named field, or a table of named columns (CSV) that feeds one flat input."""

    source: dict[str, Any]
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    columns: list[str] | None = None  # CSV: the feature columns of `table`
    table: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def rows(self) -> int:
        """Number of rows."""
        if self.table is not None:
            return len(self.table)
        return len(next(iter(self.fields.values()))) if self.fields else 0


@dataclass(frozen=True)
class Bound:
    """A data set bound to the model: one validated array per input name (the input's dtype), labels, names."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    feature_names: dict[str, list[str]] = field(default_factory=dict)  # per rank-1/2 input
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Number of rows."""
        return len(next(iter(self.inputs.values())))


def read(path: str | Path, label_field: str | None = None) -> Dataset:
    """Read `.npz` (one array per input name), `.jsonl` (one field per input) or `.csv` (named numeric columns).

    A `key` field is ignored; the label field (`label_field`, else `label` when present) becomes `labels`.
    """
    p = Path(path)
    if not p.is_file():
        raise PackagingError(f"data file {str(p)!r} does not exist")
    kind = p.suffix.lower()
    if kind not in FORMATS:
        raise PackagingError(f"data file {p.name!r}: expected one of {', '.join(FORMATS)}")
    reader = {".npz": _read_npz, ".jsonl": _read_jsonl, ".csv": _read_csv}[kind]
    ds = reader(p, label_field)
    if ds.rows == 0:
        raise PackagingError(f"data file {p.name!r} holds no rows")
    return ds


def _split_label(fields: dict[str, Any], label_field: str | None, where: str) -> Any:
    name = label_field or LABEL_FIELD
    if name not in fields:
        if label_field is not None:
            raise PackagingError(f"{where}: no label field {label_field!r}; fields: {sorted(fields)}")
        return None
    return fields.pop(name)


def _read_npz(p: Path, label_field: str | None) -> Dataset:
    try:
        with np.load(p, allow_pickle=False) as z:
            fields = {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError) as e:  # not a zip, or object arrays (pickles are refused)
        raise PackagingError(f"data file {p.name!r} is not a readable numeric .npz: {e}") from None
    fields.pop(KEY_FIELD, None)
    labels = _split_label(fields, label_field, p.name)
    if not fields:
        raise PackagingError(f"data file {p.name!r} has no input arrays")
    counts = {k: (len(v) if v.ndim else 0) for k, v in fields.items()}
    if labels is not None:
        counts[label_field or LABEL_FIELD] = len(labels) if labels.ndim else 0
    if len(set(counts.values())) != 1:
        raise PackagingError(f"data file {p.name!r}: arrays have different row counts {counts}")
    for k, v in fields.items():
        if v.dtype.kind not in "biuf":
            raise PackagingError(f"data file {p.name!r}: array {k!r} is {v.dtype}, not numeric")
    return Dataset({"file": p.name, "format": "npz"}, fields=fields, labels=labels)


def _read_jsonl(p: Path, label_field: str | None) -> Dataset:
    values: dict[str, list[Any]] = {}
    names: list[str] | None = None
    labels: list[Any] = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise PackagingError(f"{p.name} line {n}: not JSON ({e.msg})") from None
            if not isinstance(doc, dict):
                raise PackagingError(f"{p.name} line {n}: expected a JSON object")
            doc.pop(KEY_FIELD, None)
            has_label = (label_field or LABEL_FIELD) in doc
            label = _split_label(doc, label_field, f"{p.name} line {n}")
            if names is not None and has_label != bool(labels):
                raise PackagingError(f"{p.name} line {n}: the label field is on some lines only")
            if has_label:
                labels.append(label)
            if names is None:
                names = sorted(doc)
            elif sorted(doc) != names:
                raise PackagingError(f"{p.name} line {n}: fields {sorted(doc)} differ from line 1's {names}")
            for k in names:
                values.setdefault(k, []).append(doc[k])
    if not names:
        return Dataset({"file": p.name, "format": "jsonl"})
    fields = {}
    for k, rows in values.items():
        try:
            arr = np.asarray(rows)
        except ValueError:
            arr = np.asarray([], dtype=object)
        if arr.dtype.kind not in "biuf" or len(arr) != len(rows):
            raise PackagingError(f"{p.name}: field {k!r} is ragged or not numeric on some line")
        fields[k] = arr
    return Dataset({"file": p.name, "format": "jsonl"}, fields=fields, labels=np.asarray(labels) if labels else None)


def _read_csv(p: Path, label_field: str | None) -> Dataset:
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise PackagingError(f"{p.name}: no header row of column names")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or "" in header:
            raise PackagingError(f"{p.name}: column names must be unique and non-empty, got {header}")
        label_name = label_field or LABEL_FIELD
        if label_field is not None and label_field not in header:
            raise PackagingError(f"{p.name}: no label column {label_field!r}; columns: {header}")
        features = [h for h in header if h not in (KEY_FIELD, label_name)]
        if not features:
            raise PackagingError(f"{p.name}: no feature columns")
        index = {h: i for i, h in enumerate(header)}
        rows, labels = [], []
        for n, rec in enumerate(reader, 2):
            if not rec:
                continue
            if len(rec) != len(header):
                raise PackagingError(f"{p.name} line {n}: {len(rec)} values for {len(header)} columns")
            rows.append([_number(rec[index[h]], p.name, n, h) for h in features])
            if label_name in index:
                labels.append(rec[index[label_name]].strip())
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))
    return Dataset(
        {"file": p.name, "format": "csv"}, columns=features, table=table, labels=np.asarray(labels) if labels else None
    )


def _number(text: str, file: str, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PackagingError(f"{file} line {line}, column {column!r}: {text!r} is not a number") from None


def bind(ds: Dataset, signatures: dict[str, dict[str, Any]], min_rows: int = MIN_ROWS) -> Bound:
    """Validate `ds` against the inputs of `signatures` (the manifest's signature block of the kept signatures).

    Every input of every signature must be fed, with the signature's trailing shape and a dtype it can take;
    no field may be left over; no value may be NaN or infinite.
    """
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for sig, block in sorted(signatures.items()):
        for name, spec in block["inputs"].items():
            if name in specs and specs[name][1] != spec:
                raise PackagingError(
                    f"input {name!r} is {spec} in signature {sig!r} but {specs[name][1]} in {specs[name][0]!r}"
                )
            specs.setdefault(name, (sig, spec))
    where = ds.source.get("file", "data")
    if ds.rows < min_rows:
        raise PackagingError(f"{where}: {ds.rows} rows; the baseline needs at least {min_rows}")
    names: dict[str, list[str]] = {}
    if ds.table is not None:
        fields = _table_fields(ds, specs, where)
        (only,) = fields
        names[only] = list(ds.columns or [])
    else:
        fields = dict(ds.fields)
        missing = [f"{n!r} (signature {s!r})" for n, (s, _) in specs.items() if n not in fields]
        if missing:
            raise PackagingError(f"{where}: no data for input {', '.join(missing)}; fields: {sorted(fields)}")
        extra = sorted(set(fields) - set(specs))
        if extra:
            raise PackagingError(f"{where}: fields {extra} are not inputs of the kept signatures ({sorted(specs)})")
    inputs = {}
    for name, (sig, spec) in specs.items():
        inputs[name] = _check_array(fields[name], name, sig, spec, where)
        if len(spec["shape"]) <= 2 and name not in names:
            width = 1 if len(spec["shape"]) == 1 else inputs[name].shape[1]
            names[name] = [name] if len(spec["shape"]) == 1 else [f"{name}_{j}" for j in range(width)]
    return Bound(inputs, ds.labels, names, {**ds.source, "rows": ds.rows})


def _table_fields(ds: Dataset, specs: dict[str, tuple[str, dict[str, Any]]], where: str) -> dict[str, np.ndarray]:
    cols = ds.columns or []
    if len(specs) != 1:
        raise PackagingError(f"{where}: CSV columns feed one flat input, the model has inputs {sorted(specs)}")
    ((name, (_, spec)),) = specs.items()
    shape = spec["shape"]
    if len(shape) == 1 and len(cols) == 1:
        return {name: ds.table[:, 0]}
    if len(shape) != 2:
        raise PackagingError(f"{where}: CSV columns feed a flat input; {name!r} has shape {shape}")
    if shape[1] > 0 and shape[1] != len(cols):
        raise PackagingError(f"{where}: {len(cols)} feature columns {cols} for input {name!r} of width {shape[1]}")
    return {name: ds.table}


def _check_array(arr: np.ndarray, name: str, sig: str, spec: dict[str, Any], where: str) -> np.ndarray:
    shape, dtype = spec["shape"], np.dtype(spec["dtype"])
    want = "[" + ", ".join("n" if i == 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(shape)) + "]"
    if arr.ndim != len(shape) or any(d >= 0 and a != d for a, d in zip(arr.shape[1:], shape[1:], strict=True)):
        raise PackagingError(
            f"{where}: input {name!r} has shape {list(arr.shape)}; signature {sig!r} expects {want} ({spec['dtype']})"
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise PackagingError(f"{where}: input {name!r} row {row} holds NaN or infinity")
    if dtype.kind in "iu":
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise PackagingError(f"{where}: input {name!r} is {spec['dtype']} but the data holds fractions")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise PackagingError(f"{where}: input {name!r} has values outside {spec['dtype']}")
    elif dtype.kind == "b" and arr.dtype.kind != "b":
        raise PackagingError(f"{where}: input {name!r} is bool; the data is {arr.dtype}")
    elif dtype.kind not in "fb":
        raise PackagingError(f"input {name!r}: dtype {spec['dtype']} is not supported")
    return np.ascontiguousarray(arr.astype(dtype, copy=False))


def label_indices(labels: np.ndarray, names: list[str], where: str = "data") -> np.ndarray:
    """Class indices of raw label values: a class name of `names` or an integer index into it."""
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, v in enumerate(labels.tolist()):
        if isinstance(v, str) and v in index:
            out[i] = index[v]
        elif isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() and 0 <= v < len(names):
            out[i] = int(v)
        elif isinstance(v, str) and _int_text(v) is not None and 0 <= _int_text(v) < len(names):  # CSV text
            out[i] = _int_text(v)
        else:
            raise PackagingError(f"{where}: label {v!r} on row {i} is neither a class name nor an index < {len(names)}")
    return out


def label_values(labels: np.ndarray, where: str = "data") -> np.ndarray:
    """Regression targets as float64 (finite)."""
    try:
        y = np.asarray(labels, dtype=np.float64)
    except ValueError:
        raise PackagingError(f"{where}: regression labels must be numbers") from None
    if not np.isfinite(y).all():
        raise PackagingError(f"{where}: regression labels hold NaN or infinity")
    return y


def _int_text(v: str) -> int | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if math.isfinite(f) and f.is_integer() else None
