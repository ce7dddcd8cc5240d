"""Reading keyed rows from JSONL or CSV bytes: valid rows become one batch, every bad line becomes an error record
naming its line number in the source file."""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from liteserve.errors import BadRequest
from liteserve.keys import Key, check_key
from liteserve.manifest import TensorSpec
from liteserve.tensors import cast_finite, problem, to_batch

MAX_LINE_BYTES = 1024 * 1024  # a keyed row is ~1 KB; a longer "line" is not a row (e.g. a file with no line ends)
_SUBBATCH = 1024  # rows converted in one numpy call
_SLOW_SPAN = 8  # spans this small are checked row by row


@dataclass
class Rows:
    """Valid rows of a chunk (in line order) and the errors of the others."""

    lines: list[int] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add_error(self, line: int, error: str, key: Any = None) -> None:
        """Record a rejected line (the key is kept when it could be read)."""
        record: dict[str, Any] = {"line": line}
        if key is not None and not isinstance(key, dict | list):
            record["key"] = key
        record["error"] = error
        self.errors.append(record)

    def drop(self, rejected: dict[int, str]) -> None:
        """Move the valid rows at the given line numbers to the errors, with the given reasons."""
        if not rejected:
            return
        kept = [i for i, line in enumerate(self.lines) if line not in rejected]
        for i, line in enumerate(self.lines):
            if line in rejected:
                self.add_error(line, rejected[line], self.keys[i])
        self.lines = [self.lines[i] for i in kept]
        self.keys = [self.keys[i] for i in kept]
        self.values = [self.values[i] for i in kept]
        self.errors.sort(key=lambda e: e["line"])


@dataclass(frozen=True)
class RowFormat:
    """How rows are laid out: 'jsonl' or 'csv', the key field and (JSONL) the input field."""

    kind: str
    key_field: str = "key"
    input_field: str = "x"
    header: tuple[str, ...] | None = None  # CSV only: the file's first line, split
    max_key_bytes: int | None = None  # keys longer than this (as JSON) are bad rows, e.g. when a store keys by them

    def parse(self, data: bytes, first_line: int, spec: TensorSpec) -> tuple[Rows, np.ndarray]:
        """Parse a chunk that starts at source line `first_line`; returns the rows and their input batch."""
        with _gc_paused():
            rows = (
                self._parse_jsonl(data, first_line, spec) if self.kind == "jsonl" else self._parse_csv(data, first_line)
            )
            return rows, _convert(rows, spec)

    def _parse_jsonl(self, data: bytes, first_line: int, spec: TensorSpec) -> Rows:
        rows = Rows()
        key_field, input_field = self.key_field, self.input_field
        lines, keys, values = rows.lines, rows.keys, rows.values  # this loop runs once per row of a file
        for offset, raw in enumerate(data.split(b"\n")):
            if not raw or raw.isspace():
                continue  # blank lines (e.g. the final newline) are not rows
            line = first_line + offset
            if len(raw) > MAX_LINE_BYTES:
                rows.add_error(line, line_too_long(line))
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                rows.add_error(line, f"not valid JSON: {exc}")
                continue
            if type(obj) is not dict:
                rows.add_error(line, f"expected a JSON object, got {type(obj).__name__}")
                continue
            key = obj.get(key_field)
            if key is None:
                rows.add_error(line, f"missing key field '{key_field}'")
                continue
            if not ((type(key) is str and key) or type(key) is int):  # the common case without a call
                try:
                    check_key(key, f"line {line}")
                except BadRequest as err:
                    rows.add_error(line, err.message, key)
                    continue
            if self.max_key_bytes is not None and (reason := self._key_too_long(key)):
                rows.add_error(line, reason)
                continue
            if input_field not in obj:
                rows.add_error(line, f"missing input field '{input_field}'", key)
                continue
            value = obj[input_field]
            if b"true" in raw or b"false" in raw:  # numpy would read a boolean as a number
                reason = problem(value, spec)
                if reason:
                    rows.add_error(line, f"input '{input_field}' {reason}", key)
                    continue
            lines.append(line)
            keys.append(key)
            values.append(value)
        return rows

    def keys(self, data: bytes, first_line: int) -> list[tuple[int, Key]]:
        """(line, key) of every line of a chunk whose key reads, without converting any input: what the planner
        needs to find repeated keys. A line that `parse` accepts is always here with the same key; a line left out
        is one `parse` rejects (a line here may still be rejected by `parse` for its input)."""
        return self._jsonl_keys(data, first_line) if self.kind == "jsonl" else self._csv_keys(data, first_line)

    def _jsonl_keys(self, data: bytes, first_line: int) -> list[tuple[int, Key]]:
        field = orjson.dumps(self.key_field)
        prefix = b"{" + field + b':"'
        start = len(prefix)
        # The fast path reads `{"key":"...` off the line's start. It is exact only when nothing can spell the key
        # field or a quote another way (no backslash in the chunk: no escapes) and the field's name occurs once on
        # the line (a JSON object with a repeated member keeps the last one).
        fast = b"\\" not in data
        out: list[tuple[int, Key]] = []
        append = out.append
        for offset, raw in enumerate(data.split(b"\n")):
            if fast and raw.startswith(prefix):
                end = raw.find(b'"', start)
                if end > start and raw.count(field) == 1:
                    with suppress(UnicodeDecodeError):  # not valid JSON, so not a row
                        append((first_line + offset, raw[start:end].decode()))
                    continue
            if not raw or raw.isspace():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if type(obj) is dict:
                key = obj.get(self.key_field)
                if (type(key) is str and key) or type(key) is int:
                    append((first_line + offset, key))
        return out

    def _csv_keys(self, data: bytes, first_line: int) -> list[tuple[int, Key]]:
        key_index = (self.header or ()).index(self.key_field)
        width = len(self.header or ())
        out: list[tuple[int, Key]] = []
        for line, cells in self._csv_lines(data, first_line):
            if type(cells) is list and len(cells) == width and cells[key_index]:
                out.append((line, cells[key_index]))
        return out

    def _csv_lines(self, data: bytes, first_line: int) -> Iterator[tuple[int, list[str] | str]]:
        """(line, cells) of every non-blank CSV line, or (line, error) for one that cannot be split into cells."""
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = None
        lines = data.split(b"\n") if text is None else text.split("\n")
        for offset, raw in enumerate(lines):
            line = first_line + offset
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode()
                except UnicodeDecodeError:
                    yield line, "not valid UTF-8"
                    continue
            raw = raw.rstrip("\r")
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES // 4 and len(raw.encode()) > MAX_LINE_BYTES:
                yield line, line_too_long(line)
                continue
            try:
                yield line, next(csv.reader(io.StringIO(raw)))
            except csv.Error as exc:
                yield line, f"not valid CSV: {exc}"

    def _parse_csv(self, data: bytes, first_line: int) -> Rows:
        rows = Rows()
        header = self.header or ()
        key_index = header.index(self.key_field)
        width = len(header)
        for line, cells in self._csv_lines(data, first_line):
            if isinstance(cells, str):
                rows.add_error(line, cells)
                continue
            if len(cells) != width:
                key = cells[key_index] if key_index < len(cells) and cells[key_index] else None
                rows.add_error(line, f"expected {width} columns, got {len(cells)}", key)
                continue
            key = cells[key_index]
            if not key:
                rows.add_error(line, f"empty key column '{self.key_field}'")
                continue
            if self.max_key_bytes is not None and (reason := self._key_too_long(key)):
                rows.add_error(line, reason)
                continue
            rows.lines.append(line)
            rows.keys.append(key)
            rows.values.append(cells[:key_index] + cells[key_index + 1 :])
        return rows

    def _key_too_long(self, key: Key) -> str | None:
        """Called only with `max_key_bytes` set (the callers test it first: this runs once per row)."""
        size = len(orjson.dumps(key))
        if size > self.max_key_bytes:  # type: ignore[operator]
            return f"key takes {size} bytes as JSON; the results cache keeps keys of at most {self.max_key_bytes} here"
        return None


def iter_lines(
    chunks: Iterable[bytes], first_line: int = 1, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its newline) for every line of a chunk stream; None for a line longer than
    `max_line_bytes`, which is skipped to its newline without being held (memory stays within the limit plus one
    chunk)."""
    buffer = bytearray()
    line = first_line
    skipping = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_line_bytes:
                        buffer.clear()
                        skipping = True
                break
            if skipping:
                yield line, None
                skipping = False
            else:
                buffer += chunk[start:end]
                yield line, (bytes(buffer) if len(buffer) <= max_line_bytes else None)
            buffer.clear()
            line += 1
            start = end + 1
    if skipping:
        yield line, None
    elif buffer:
        yield line, bytes(buffer)


def line_too_long(line: int) -> str:
    """The error of a line longer than MAX_LINE_BYTES, wherever it falls in a file."""
    return f"line {line} is longer than {MAX_LINE_BYTES} bytes (the line limit): not a row"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A shard allocates ~1 M small acyclic objects (rows of floats), and the cyclic collector would rescan them over
    and over while they are built: pausing it made planning a 300 000-row file 25-45 % faster."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _convert(rows: Rows, spec: TensorSpec) -> np.ndarray:
    """Stack the values into one batch; rows that do not convert move to the errors with the reason."""
    parts: list[np.ndarray] = []
    rejected: dict[int, str] = {}
    for start in range(0, len(rows.values), _SUBBATCH):
        _convert_span(rows, spec, start, min(start + _SUBBATCH, len(rows.values)), parts, rejected)
    rows.drop(rejected)
    if not parts:
        return np.empty((0, *spec.feature_shape), dtype=spec.dtype)
    return np.concatenate(parts)


def _convert_span(
    rows: Rows, spec: TensorSpec, start: int, end: int, parts: list[np.ndarray], rejected: dict[int, str]
) -> None:
    """Convert rows[start:end] in one numpy call; if that fails, halve the span until the bad rows are isolated
    (a few bad rows cost O(bad x log span) extra calls instead of one call per row)."""
    chunk = rows.values[start:end]
    try:
        parts.append(_to_array(chunk, spec))
        return
    except BadRequest:
        pass
    if end - start > _SLOW_SPAN:
        middle = (start + end) // 2
        _convert_span(rows, spec, start, middle, parts, rejected)
        _convert_span(rows, spec, middle, end, parts, rejected)
        return
    for i, value in enumerate(chunk):  # slow path: find the bad rows of this small span
        reason = _cells_problem(value, spec) if _is_cells(value) else problem(value, spec)
        if reason is None:
            parts.append(_to_array([value], spec))
        else:
            rejected[rows.lines[start + i]] = f"input '{spec.name}' {reason}"


def _is_cells(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], str)


def _to_array(chunk: list, spec: TensorSpec) -> np.ndarray:
    if not _is_cells(chunk[0]):
        return to_batch(chunk, spec, check_bools=False)
    try:  # CSV cells: numpy parses numeric strings itself, anything else is a ValueError
        arr = np.array(chunk, dtype=np.float64)
    except ValueError:
        raise BadRequest("a cell is not a number") from None
    if arr.shape[1:] != spec.feature_shape:
        raise BadRequest(f"expected {spec.feature_shape} values")
    return cast_finite(arr, spec)


def _cells_problem(cells: list[str], spec: TensorSpec) -> str | None:
    for cell in cells:
        try:
            float(cell)
        except ValueError:
            return f"has a cell that is not a number: {cell[:40]!r}"
    try:
        _to_array([cells], spec)
    except BadRequest as err:
        return err.message.split(f"input '{spec.name}' ", 1)[-1]
    return None
