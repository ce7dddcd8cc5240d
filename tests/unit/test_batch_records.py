"""Batch row parsing and shard planning: every line is either a valid row or an error with its line number."""

from __future__ import annotations

import orjson
import pytest
from liteserve.batch.plan import KeyLedger, cut_shards, read_header
from liteserve.batch.records import RowFormat
from liteserve.manifest import TensorSpec

SPEC = TensorSpec("x", "float32", (-1, 3))
JSONL = RowFormat("jsonl")


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)


def test_valid_rows_keep_order_and_line_numbers():
    data = jsonl({"key": "a", "x": [1, 2, 3]}, {"key": 7, "x": [0.5, 0, 1]})
    rows, values = JSONL.parse(data, 10, SPEC)
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
    rows, values = JSONL.parse(data, 1, SPEC)
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
    rows, values = JSONL.parse(b"\n".join(lines), 1, SPEC)
    bad = {i + 1 for i in range(0, 200, 7)}
    assert {e["line"] for e in rows.errors} == bad
    assert all(e["key"] == f"k{e['line'] - 1}" for e in rows.errors)
    assert len(rows.keys) + len(bad) == 200
    assert [v[0] for v in values.tolist()] == [int(k[1:]) for k in rows.keys]


def test_blank_lines_and_crlf():
    rows, _ = JSONL.parse(b'{"key":"a","x":[1,2,3]}\r\n\r\n{"key":"b","x":[1,2,3]}', 5, SPEC)
    assert rows.lines == [5, 7]
    assert rows.errors == []


def test_csv_rows():
    fmt = RowFormat("csv", header=("id", "f0", "key", "f2"))
    data = b"1,0.5,a,2\n2,x,b,2\n3,1,c\n4,nan,d,1\n,1,,1\n5,1,e,1e39\n6,0,f,1\n"
    rows, values = fmt.parse(data, 2, SPEC)
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
    ledger = KeyLedger()
    first, second = list(cut_shards([data], len(data) // 2))
    ledger.scan(first, JSONL, SPEC)
    ledger.scan(second, JSONL, SPEC)
    assert {**first.duplicates, **second.duplicates} == {4: 2}
    assert first.valid + second.valid == 2
    assert first.rejected + second.rejected == 2
    assert len(ledger) == 2
