"""Batch row parsing and shard planning: every line is either a valid row or an error with its line number."""

from __future__ import annotations

import random
import re

import orjson
import pytest
from liteserve.batch.plan import KeyLedger, cut_shards, read_header
from liteserve.batch.records import RowFormat, csv_columns, input_fields
from liteserve.manifest import Manifest, TensorSpec

from tests.support import MODEL_ROOT

SPEC = TensorSpec("x", "float32", (-1, 3))
INPUTS = {"x": SPEC}
JSONL = RowFormat("jsonl")


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)


def test_valid_rows_keep_order_and_line_numbers():
    data = jsonl({"key": "a", "x": [1, 2, 3]}, {"key": 7, "x": [0.5, 0, 1]})
    rows, batches = JSONL.parse(data, 10, INPUTS)
    values = batches["x"]
    assert rows.lines == [10, 11]
    assert rows.keys == ["a", 7]
    assert values.dtype.name == "float32"
    assert values.tolist() == [[1, 2, 3], [0.5, 0, 1]]
    assert rows.errors == []


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (orjson.dumps({"x": [1, 2, 3]}), "missing key field 'key'"),
        (orjson.dumps({"key": "", "x": [1, 2, 3]}), "key must not be empty"),
        (orjson.dumps({"key": 1.5, "x": [1, 2, 3]}), "key must be a string or an integer"),
        (orjson.dumps({"key": "b"}), "missing input field 'x'"),
        (orjson.dumps({"key": "b", "x": [1, 2]}), "input 'x' expected 3 values, got 2"),
        (orjson.dumps({"key": "b", "x": [1, "2", 3]}), "input 'x' expected a number, got str"),
        (orjson.dumps({"key": "b", "x": [1, True, 3]}), "input 'x' expected a number, got bool"),
        (orjson.dumps({"key": "b", "x": [1, None, 3]}), "input 'x' expected a number, got NoneType"),
        (b'{"key": "b", "x": [1, NaN, 3]}', "not valid JSON"),
        (orjson.dumps({"key": "b", "x": [1, 1e39, 3]}), "out of range"),
    ],
)
def test_each_bad_line_is_reported_and_neighbours_survive(line, error):
    data = jsonl({"key": "a", "x": [1, 2, 3]}, line, {"key": "c", "x": [3, 2, 1]})
    rows, batches = JSONL.parse(data, 1, INPUTS)
    values = batches["x"]
    assert rows.keys == ["a", "c"]
    assert rows.lines == [1, 3]
    assert values.shape == (2, 3)
    assert len(rows.errors) == 1
    assert rows.errors[0]["line"] == 2
    assert error in rows.errors[0]["error"]


def test_many_bad_rows_in_one_sub_batch():
    good = [{"key": f"k{i}", "x": [i, i, i]} for i in range(200)]
    lines = [orjson.dumps(r) for r in good]
    for i in range(0, 200, 7):
        lines[i] = orjson.dumps({"key": f"k{i}", "x": [i, "bad", i]})
    rows, batches = JSONL.parse(b"\n".join(lines), 1, INPUTS)
    values = batches["x"]
    bad = {i + 1 for i in range(0, 200, 7)}
    assert {e["line"] for e in rows.errors} == bad
    assert all(e["key"] == f"k{e['line'] - 1}" for e in rows.errors)
    assert len(rows.keys) + len(bad) == 200
    assert [v[0] for v in values.tolist()] == [int(k[1:]) for k in rows.keys]


def test_blank_lines_and_crlf():
    rows, _ = JSONL.parse(b'{"key":"a","x":[1,2,3]}\r\n\r\n{"key":"b","x":[1,2,3]}', 5, INPUTS)
    assert rows.lines == [5, 7]
    assert rows.errors == []


def test_csv_rows():
    fmt = RowFormat("csv", header=("id", "f0", "key", "f2"))
    data = b"1,0.5,a,2\n2,x,b,2\n3,1,c\n4,nan,d,1\n,1,,1\n5,1,e,1e39\n6,0,f,1\n"
    rows, batches = fmt.parse(data, 2, INPUTS)
    values = batches["x"]
    assert rows.keys == ["a", "f"]
    assert values.tolist() == [[1, 0.5, 2], [6, 0, 1]]
    errors = {e["line"]: e["error"] for e in rows.errors}
    assert set(errors) == {3, 4, 5, 6, 7}
    assert "not a number: 'x'" in errors[3]
    assert "expected 4 columns, got 3" in errors[4]
    assert "NaN" in errors[5]
    assert "empty key column 'key'" in errors[6]
    assert "out of" in errors[7]


def test_cut_shards_at_line_boundaries():
    data = jsonl(*[{"key": f"k{i}", "x": [i, i, i]} for i in range(100)])
    chunks = [data[i : i + 37] for i in range(0, len(data), 37)]
    shards = list(cut_shards(chunks, 300, offset=0, first_line=1))
    assert b"".join(s.data for s in shards) == data
    assert all(s.data.endswith(b"\n") for s in shards)
    assert [s.start for s in shards] == [sum(len(p.data) for p in shards[:i]) for i in range(len(shards))]
    assert all(data[s.start : s.end + 1] == s.data for s in shards)
    assert [s.first_line for s in shards] == [
        1 + sum(p.data.count(b"\n") for p in shards[:i]) for i in range(len(shards))
    ]
    assert all(len(s.data) >= 300 for s in shards[:-1])


def test_a_line_longer_than_a_shard_stays_whole():
    data = b"a" * 1000 + b"\n" + b"b\n"
    shards = list(cut_shards([data[:10], data[10:]], 100))
    assert [s.data for s in shards] == [b"a" * 1000 + b"\n", b"b\n"]


def test_csv_header_is_split_off():
    header, rest = read_header(iter([b"key,f0", b",f1\n1,2,3\n"]))
    assert header == b"key,f0,f1\n"
    assert rest == b"1,2,3\n"


def test_ledger_marks_later_valid_duplicates_only():
    data = jsonl(
        {"key": "a", "x": [1, 2]},  # invalid: does not claim 'a'
        {"key": "a", "x": [1, 2, 3]},  # first valid 'a' (line 2)
        {"key": "b", "x": [1, 2, 3]},
        {"key": "a", "x": [4, 5, 6]},  # duplicate of line 2
    )
    ledger = KeyLedger(JSONL, INPUTS)
    first, second = list(cut_shards([data], len(data) // 2))
    ledger.scan(first)
    ledger.scan(second)
    assert {**first.duplicates, **second.duplicates} == {4: 2}
    assert len(ledger) == 2


# Lines whose key a cheap reader could get wrong: escapes, repeated members, spacing, other key types, bad bytes.
ODD_LINES = [
    b'{"key":"a","x":[1,2,3]}',
    b'{"key": "a", "x": [1, 2, 3]}',
    b'{"\\u006bey":"b","x":[1,2,3]}',  # the field's name spelled with an escape
    b'{"key":"c","x":[1,2,3],"key":"a"}',  # a repeated member: the last one counts
    b'{"key":"a\\u0041","x":[1,2,3]}',  # an escape in the key: 'aA'
    b'{"key":"aA","x":[1,2,3]}',
    b'{"key":"","x":[1,2,3]}',
    b'{"key":7,"x":[1,2,3]}',
    b'{"key":"7","x":[1,2,3]}',
    b'{"key":true,"x":[1,2,3]}',
    b'{"key":"d","x":[1,2]}',
    b'{"key":"d","x":[1,2,3]}',
    b'{"key":"d"',
    b'{"key":"\xff","x":[1,2,3]}',
    b'{"x":[1,2,3],"key":"e"}',
    b'{"key":"e","note":"key","x":[1,2,3]}',
    b'{"key":"f","x":[1,true,3]}',
    b"[1,2,3]",
    b"   ",
]


def reference_duplicates(data: bytes, first_line: int = 1) -> dict[int, int]:
    """What the ledger must decide: parse every row, the first valid occurrence of a key wins."""
    rows, _ = JSONL.parse(data, first_line, INPUTS)
    first: dict = {}
    duplicates = {}
    for line, key in zip(rows.lines, rows.keys, strict=True):
        seen = first.setdefault(key, line)
        if seen != line:
            duplicates[line] = seen
    return duplicates


def test_keys_agree_with_the_full_parse_on_every_valid_line():
    for escapes in (False, True):  # a backslash anywhere in the chunk turns the fast path off
        lines = ODD_LINES if escapes else [line for line in ODD_LINES if b"\\" not in line]
        data = b"\n".join(lines) + b"\n"
        rows, _ = JSONL.parse(data, 1, INPUTS)
        keys = dict(JSONL.keys(data, 1))
        assert all(keys[line] == key for line, key in zip(rows.lines, rows.keys, strict=True))
        errors = {e["line"] for e in rows.errors}
        unkeyed = set(range(1, len(lines) + 1)) - set(keys) - {len(lines)}  # the last line is blank
        assert unkeyed <= errors  # a line without a key is always a bad line


def test_csv_keys_agree_with_the_full_parse():
    fmt = RowFormat("csv", header=("id", "f0", "key", "f2"))
    data = b'1,0.5,a,2\n2,x,b,2\n3,1,c\n4,1,"a",1\n,1,,1\n5,1,"d,e",1\r\n6,"1,2",f,1\n7,1,"g\n'
    rows, _ = fmt.parse(data, 2, INPUTS)
    keys = dict(fmt.keys(data, 2))
    assert [keys[line] for line in rows.lines] == rows.keys
    assert keys == {2: "a", 3: "b", 5: "a", 7: "d,e", 8: "f"}  # line 8 reads its key; its input is bad


def test_a_file_without_repeated_keys_is_never_parsed(monkeypatch):
    calls = []
    monkeypatch.setattr(RowFormat, "parse", lambda *args: calls.append(args))
    data = jsonl(*[{"key": f"k{i}", "x": [i, i, "bad" if i % 5 == 0 else i]} for i in range(50)])
    ledger = KeyLedger(JSONL, INPUTS, reread=lambda *_: pytest.fail("no shard is read again"))
    for shard in cut_shards([data], 200):
        ledger.scan(shard)
        assert shard.duplicates == {}
    assert calls == []
    assert len(ledger) == 50


def test_an_invalid_first_occurrence_in_an_earlier_shard_is_read_again_once():
    rows = [{"key": f"k{i}", "x": [i, i, i]} for i in range(40)]
    rows[2] = {"key": "k30", "x": [1, 2]}  # invalid first occurrence of k30 (line 3), in shard 0
    rows[5] = {"key": "k31", "x": [1, 2, 3]}  # valid first occurrence of k31 (line 6), in shard 0
    data = jsonl(*rows)
    shards = list(cut_shards([data], 200))
    assert 6 <= shards[0].lines < 31  # both first occurrences in shard 0, repeats later
    reads = []

    def reread(index: int, start: int, end: int) -> bytes:
        reads.append(index)
        return data[start : end + 1]

    ledger = KeyLedger(JSONL, INPUTS, reread)
    for shard in shards:
        ledger.scan(shard)
    found = {line: first for s in shards for line, first in s.duplicates.items()}
    assert found == {32: 6} == reference_duplicates(data)  # line 31 (k30) stays: line 3 was invalid
    assert reads == [0] and ledger.reparsed == 1


@pytest.mark.parametrize("seed", range(12))
def test_ledger_decides_as_a_full_parse_of_every_row(seed):
    rng = random.Random(seed)
    pool = [f"k{i}" for i in range(rng.choice((5, 30, 400)))]
    lines = []
    for _ in range(rng.randrange(50, 400)):
        roll = rng.random()
        if roll < 0.08:
            lines.append(rng.choice(ODD_LINES))
        else:
            x = [1, 2] if roll < 0.25 else [rng.random(), 1, 2]
            key = rng.choice(pool) if rng.random() < 0.7 else rng.randrange(5)
            lines.append(orjson.dumps({"key": key, "x": x}))
    data = b"\n".join(lines) + b"\n"
    chunks = [data[i : i + 97] for i in range(0, len(data), 97)]
    shards = list(cut_shards(chunks, rng.choice((64, 300, 2000)), first_line=1))
    ledger = KeyLedger(JSONL, INPUTS, lambda index, start, end: data[start : end + 1])
    for shard in shards:
        ledger.scan(shard)
    reference = reference_duplicates(data)
    valid = set(JSONL.parse(data, 1, INPUTS)[0].lines)
    found = {line: first for s in shards for line, first in s.duplicates.items()}
    # every repeat of a valid row is found and named by its first valid occurrence; the rest are invalid lines,
    # which a worker reports with their own error whatever the ledger says
    assert {line: first for line, first in found.items() if line in valid} == reference
    assert ledger.reparsed <= len(shards)


def test_record_inputs_reads_new_and_legacy_records() -> None:
    from liteserve.records import record_inputs

    assert record_inputs({"inputs": {"image": [[1]], "meta": [1, 2]}}, ["image", "meta"]) == {
        "image": [[1]],
        "meta": [1, 2],
    }
    assert record_inputs({"x": [1, 2]}, ["features"]) == {"features": [1, 2]}
    with pytest.raises(ValueError, match="signature has 2"):
        record_inputs({"x": [1, 2]}, ["image", "meta"])
    with pytest.raises(ValueError, match="no inputs"):
        record_inputs({"key": "k"}, ["x"])


# ---------------------------------------------------------------- several named inputs

TWO = {"image": TensorSpec("image", "float32", (-1, 2, 2, 1)), "meta": TensorSpec("meta", "float32", (-1, 3))}


def image(v: float) -> list:
    return [[[v], [v]], [[v], [v]]]


def test_jsonl_rows_with_two_named_inputs_keep_each_batch_aligned():
    data = jsonl(
        {"key": "a", "image": image(1), "meta": [1, 2, 3]},
        {"key": "b", "meta": [1, 2, 3]},  # missing image
        {"key": "c", "image": image(3), "meta": [3, 3]},  # meta too short
        {"key": "d", "image": image(4), "meta": [4, 5, 6], "label": "x"},  # extra fields are not inputs
        {"key": "e", "image": [[[1]]], "meta": [1, 2, "3"]},  # both bad: the first input's reason
        {"key": "f", "image": image(6), "meta": [6, True, 6]},
    )
    rows, batches = RowFormat("jsonl").parse(data, 1, TWO)
    assert rows.keys == ["a", "d"] and rows.lines == [1, 4]
    assert batches["image"].shape == (2, 2, 2, 1) and batches["image"][:, 0, 0, 0].tolist() == [1, 4]
    assert batches["meta"].tolist() == [[1, 2, 3], [4, 5, 6]]
    errors = {e["line"]: (e["key"], e["error"]) for e in rows.errors}
    assert errors[2] == ("b", "missing input field 'image'")
    assert errors[3] == ("c", "input 'meta' expected 3 values, got 2")
    assert errors[5][1].startswith("input 'image' expected 2 values")
    assert errors[6] == ("f", "input 'meta' expected a number, got bool True")


def test_input_field_option_maps_inputs_to_fields():
    assert input_fields("", TWO) == ()
    fmt = RowFormat("jsonl", fields=input_fields("image=img, meta = m", TWO))
    data = jsonl({"key": "a", "img": image(1), "m": [1, 2, 3]}, {"key": "b", "img": image(2), "meta": [1, 2, 3]})
    rows, batches = fmt.parse(data, 1, TWO)
    assert rows.keys == ["a"] and batches["meta"].tolist() == [[1, 2, 3]]
    assert rows.errors == [{"line": 2, "key": "b", "error": "missing input field 'm'"}]
    rows, _ = fmt.parse(jsonl({"key": "c", "img": image(1), "m": [1, 2]}), 7, TWO)
    assert rows.errors[0]["error"] == "field 'm' (input 'meta') expected 3 values, got 2"
    assert input_fields("pixels", INPUTS) == (("x", "pixels"),)  # one input: a bare field name
    for option, fragment in [
        ("img", "names one field, but the signature has inputs ['image', 'meta']"),
        ("image=img,other=o", "'other' is not an input"),
        ("image=", "is not `input=field`"),
        ("image=a,meta=a", "two inputs read the same field"),
    ]:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            input_fields(option, TWO)


DIABETES = ["age", "sex", "bmi", "bp"]
FEATURES = {"features": TensorSpec("features", "float32", (-1, 4))}


def test_csv_named_columns_in_any_order_with_extra_columns_ignored():
    header = ("bp", "target", "key", "sex", "age", "bmi")
    columns = csv_columns(header, "key", FEATURES, {"features": DIABETES})
    assert columns == (("features", (4, 3, 5, 0)),)
    fmt = RowFormat("csv", header=header, columns=columns)
    data = b"4,100,a,2,1,3\n8,100,b,6,5,x\n12,,c,10,9,11\nnan,1,d,1,1,1\n"
    rows, batches = fmt.parse(data, 2, FEATURES)
    assert rows.keys == ["a", "c"]
    assert batches["features"].tolist() == [[1, 2, 3, 4], [9, 10, 11, 12]]  # age, sex, bmi, bp
    assert rows.errors == [
        {"line": 3, "key": "b", "error": "input 'features' column 'bmi' is not a number: 'x'"},
        {"line": 5, "key": "d", "error": "input 'features' column 'bp' holds 'nan': NaN, Infinity or a value out of"
         " float32 range"},
    ]  # fmt: skip


def test_csv_columns_of_a_scalar_input_and_of_two_inputs():
    scalar = {"x": TensorSpec("x", "float32", (-1,))}
    columns = csv_columns(("note", "x", "key"), "key", scalar, {})
    rows, batches = RowFormat("csv", header=("note", "x", "key"), columns=columns).parse(b"n,1.5,a\nn,,b\n", 2, scalar)
    assert batches["x"].tolist() == [1.5] and rows.errors[0]["line"] == 3
    two = {"a": TensorSpec("a", "float32", (-1, 2)), "b": TensorSpec("b", "float32", (-1,))}
    header = ("b", "a1", "key", "a0")
    columns = csv_columns(header, "key", two, {"a": ["a0", "a1"]})
    rows, batches = RowFormat("csv", header=header, columns=columns).parse(b"3,2,k,1\n", 2, two)
    assert batches["a"].tolist() == [[1, 2]] and batches["b"].tolist() == [3]


def test_csv_columns_refusals_name_what_is_missing():
    assert csv_columns(("key", "f0", "f1", "f2", "f3"), "key", FEATURES, {"features": DIABETES}) is None  # by position
    with pytest.raises(ValueError, match=re.escape("input 'features' needs column(s) ['bp']")):
        csv_columns(("key", "age", "sex", "bmi", "target"), "key", FEATURES, {"features": DIABETES})
    with pytest.raises(ValueError, match=re.escape("input 'image' has shape [-1, 2, 2, 1]")):
        csv_columns(("key", "m0"), "key", TWO, {"meta": ["m0", "m1", "m2"]})
    with pytest.raises(ValueError, match=re.escape("no feature columns for input(s) ['a']")):
        csv_columns(
            ("key", "b"), "key", {"a": TensorSpec("a", "float32", (-1, 2)), "b": TensorSpec("b", "float32", (-1,))}, {}
        )


def test_manifest_feature_names_by_input():
    raw = orjson.loads((MODEL_ROOT / "digits" / "manifest.json").read_bytes())
    assert Manifest.from_dict(raw).feature_names["x"][:2] == ["px_0_0", "px_0_1"]  # the single flat input's names
    raw["signatures"]["serving_default"]["inputs"]["meta"] = {"dtype": "float32", "shape": [-1, 2]}
    raw["baseline"]["inputs"]["meta"] = {"kind": "features", "features": [{"name": "m0"}, {"name": "m1"}]}
    raw["baseline"]["inputs"]["image"] = {"kind": "tensor"}
    names = Manifest.from_dict(raw).feature_names
    assert names["meta"] == ["m0", "m1"] and names["x"][0] == "px_0_0" and "image" not in names
