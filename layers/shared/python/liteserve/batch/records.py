"""Reading keyed rows from JSONL or CSV bytes: valid rows become one batch, every bad line becomes an error record
naming its line number in the source file."""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from liteserve.errors import BadRequest
from liteserve.keys import Key, check_key
from liteserve.lines import MAX_LINE_BYTES, line_too_long
from liteserve.manifest import TensorSpec
from liteserve.tensors import cast_finite, problem, to_batch

_SUBBATCH = 1024  # rows converted in one numpy call
_SLOW_SPAN = 8  # spans this small are checked row by row


@dataclass
class Rows:
    """Valid rows of a chunk (in line order), their values by input name, and the errors of the others."""

    lines: list[int] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)  # input name -> one value per valid row
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
        self.columns = {name: [col[i] for i in kept] for name, col in self.columns.items()}
        self.errors.sort(key=lambda e: e["line"])


@dataclass(frozen=True)
class RowFormat:
    """How rows are laid out: 'jsonl' or 'csv', the key field, and where each input of the signature is.

    JSONL: `fields` maps an input to the field holding it (`input-field`); an input not named there is read from the
    field of its own name. CSV: `columns` maps an input to its columns in `header` (by the manifest's feature names,
    see `csv_columns`); without it, every column but the key feeds the signature's one input, in file order.
    """

    kind: str
    key_field: str = "key"
    fields: tuple[tuple[str, str], ...] = ()  # JSONL: (input, field) pairs that differ from the input's name
    header: tuple[str, ...] | None = None  # CSV only: the file's first line, split
    max_key_bytes: int | None = None  # keys longer than this (as JSON) are bad rows, e.g. when a store keys by them
    columns: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # CSV: (input, header indexes) pairs

    def field_of(self, name: str) -> str:
        """The JSONL field holding input `name`."""
        return dict(self.fields).get(name, name)

    def parse(
        self, data: bytes, first_line: int, inputs: Mapping[str, TensorSpec]
    ) -> tuple[Rows, dict[str, np.ndarray]]:
        """Parse a chunk that starts at source line `first_line`; returns the rows and one batch per input."""
        with _gc_paused():
            rows = (
                self._parse_jsonl(data, first_line, inputs)
                if self.kind == "jsonl"
                else self._parse_csv(data, first_line, inputs)
            )
            names = {n: self.column_names(n) for n in inputs} if self.kind == "csv" else {}
            return rows, _convert(rows, inputs, self._where(inputs), names)

    def _where(self, inputs: Mapping[str, TensorSpec]) -> dict[str, str]:
        """How an error names an input's place in the row: its field, or its CSV columns."""
        if self.kind == "jsonl":
            return {
                n: f"input '{n}'" if self.field_of(n) == n else f"field '{self.field_of(n)}' (input '{n}')"
                for n in inputs
            }
        return {n: f"input '{n}'" for n in inputs}

    def _parse_jsonl(self, data: bytes, first_line: int, inputs: Mapping[str, TensorSpec]) -> Rows:
        rows = Rows()
        key_field = self.key_field
        rows.columns = {name: [] for name in inputs}
        where = self._where(inputs)
        # (field, spec, how errors name it, where its values go) per input
        places = [(self.field_of(n), spec, where[n], rows.columns[n].append) for n, spec in inputs.items()]
        lines, keys = rows.lines, rows.keys  # this loop runs once per row of a file
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
            missing = [src for src, _, _, _ in places if src not in obj]
            if missing:
                rows.add_error(line, f"missing input field{'s' if len(missing) > 1 else ''} {_names(missing)}", key)
                continue
            if b"true" in raw or b"false" in raw:  # numpy would read a boolean as a number
                reason = next(
                    (f"{name} {why}" for src, spec, name, _ in places if (why := problem(obj[src], spec))), None
                )
                if reason:
                    rows.add_error(line, reason, key)
                    continue
            lines.append(line)
            keys.append(key)
            for src, _, _, append in places:
                append(obj[src])
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

    def _parse_csv(self, data: bytes, first_line: int, inputs: Mapping[str, TensorSpec]) -> Rows:
        rows = Rows()
        header = self.header or ()
        key_index = header.index(self.key_field)
        width = len(header)
        if self.columns is None:  # every column but the key feeds the one input, in file order
            (name,) = inputs
            picks = [(name, None)]
        else:
            picks = [(name, list(indexes)) for name, indexes in self.columns]
        rows.columns = {name: [] for name, _ in picks}
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
            for name, indexes in picks:
                value = cells[:key_index] + cells[key_index + 1 :] if indexes is None else [cells[i] for i in indexes]
                rows.columns[name].append(value)
        return rows

    def column_names(self, name: str) -> list[str]:
        """CSV: the header's names of the columns that feed input `name`."""
        header = self.header or ()
        if self.columns is None:
            key_index = header.index(self.key_field)
            return [c for i, c in enumerate(header) if i != key_index]
        return [header[i] for i in dict(self.columns)[name]]

    def _key_too_long(self, key: Key) -> str | None:
        """Called only with `max_key_bytes` set (the callers test it first: this runs once per row)."""
        size = len(orjson.dumps(key))
        if size > self.max_key_bytes:  # type: ignore[operator]
            return f"key takes {size} bytes as JSON; the results cache keeps keys of at most {self.max_key_bytes} here"
        return None


def csv_columns(
    header: tuple[str, ...], key_field: str, inputs: Mapping[str, TensorSpec], feature_names: Mapping[str, list[str]]
) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """Which header columns feed which input (`RowFormat.columns`), by the manifest's feature names, in any order;
    other columns (e.g. a label) are ignored. A scalar input ([N]) without names is the column of its own name.
    None: the header names none of them and the signature has one flat input, fed by every other column in order.
    Raises ValueError naming the missing columns, or an input a CSV row cannot hold."""
    wanted: dict[str, list[str]] = {}
    for name, spec in inputs.items():
        if len(spec.feature_shape) > 1:
            raise ValueError(
                f"input '{name}' has shape {list(spec.shape)}: CSV columns feed only inputs of shape [N] or [N, k];"
                " send it as JSONL (one field per input)"
            )
        names = feature_names.get(name) or ([name] if not spec.feature_shape else None)
        width = spec.feature_shape[0] if spec.feature_shape else 1
        if names is not None and len(names) == width:
            wanted[name] = list(names)
    index = {column: i for i, column in enumerate(header) if column != key_field}
    found = {column for names in wanted.values() for column in names if column in index}
    if not found and len(inputs) == 1:
        return None
    unnamed = sorted(set(inputs) - set(wanted))
    if unnamed:
        raise ValueError(f"the manifest names no feature columns for input(s) {unnamed}: use JSONL")
    missing = {name: [c for c in names if c not in index] for name, names in wanted.items()}
    missing = {name: cols for name, cols in missing.items() if cols}
    if missing:
        text = "; ".join(f"input '{n}' needs column(s) {cols}" for n, cols in missing.items())
        raise ValueError(f"CSV header lacks the model's feature columns: {text}")
    return tuple((name, tuple(index[c] for c in names)) for name, names in wanted.items())


def input_fields(option: str, inputs: Mapping[str, TensorSpec]) -> tuple[tuple[str, str], ...]:
    """The `input-field` job option as (input, field) pairs: empty (each input in the field of its name), one field
    name (the signature's only input), or `input=field` pairs separated by commas. Raises ValueError."""
    option = option.strip()
    if not option:
        return ()
    if "=" not in option:
        if len(inputs) != 1:
            raise ValueError(
                f"input-field {option!r} names one field, but the signature has inputs {list(inputs)}: give"
                " `input=field` pairs (comma-separated), or leave it out to read each input from the field of its name"
            )
        return ((next(iter(inputs)), option),)
    pairs: dict[str, str] = {}
    for part in option.split(","):
        name, sep, field = (x.strip() for x in part.partition("="))
        if not sep or not name or not field:
            raise ValueError(f"input-field: {part.strip()!r} is not `input=field`")
        if name not in inputs:
            raise ValueError(f"input-field: {name!r} is not an input of the signature; its inputs are {list(inputs)}")
        if name in pairs:
            raise ValueError(f"input-field: input {name!r} is given twice")
        pairs[name] = field
    if len(set(pairs.values())) != len(pairs):
        raise ValueError(f"input-field: two inputs read the same field: {option!r}")
    return tuple(pairs.items())


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


def _convert(
    rows: Rows, inputs: Mapping[str, TensorSpec], where: dict[str, str], column_names: dict[str, list[str]]
) -> dict[str, np.ndarray]:
    """Stack each input's values into one batch; rows where any input does not convert move to the errors, with
    the first such input's reason, and leave every batch (so the batches stay aligned with `rows`)."""
    rejected: dict[int, str] = {}
    converted: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # input -> (batch of its good rows, good-row mask)
    for name, spec in inputs.items():
        values = rows.columns[name]
        parts: list[np.ndarray] = []
        bad: dict[int, str] = {}
        place = (where[name], column_names.get(name))
        for start in range(0, len(values), _SUBBATCH):
            _convert_span(values, rows.lines, spec, place, start, min(start + _SUBBATCH, len(values)), parts, bad)
        for line, reason in bad.items():
            rejected.setdefault(line, reason)
        good = np.fromiter((line not in bad for line in rows.lines), dtype=bool, count=len(rows.lines))
        batch = np.concatenate(parts) if parts else np.empty((0, *spec.feature_shape), dtype=spec.dtype)
        converted[name] = (batch, good)
    if not rejected:
        rows.columns = {}  # converted: the lists are no longer needed
        return {name: batch for name, (batch, _) in converted.items()}
    keep = np.fromiter((line not in rejected for line in rows.lines), dtype=bool, count=len(rows.lines))
    rows.drop(rejected)
    rows.columns = {}
    return {name: batch[keep[good]] for name, (batch, good) in converted.items()}


def _convert_span(
    values: list[Any],
    lines: list[int],
    spec: TensorSpec,
    place: tuple[str, list[str] | None],
    start: int,
    end: int,
    parts: list[np.ndarray],
    rejected: dict[int, str],
) -> None:
    """Convert values[start:end] in one numpy call; if that fails, halve the span until the bad rows are isolated
    (a few bad rows cost O(bad x log span) extra calls instead of one call per row)."""
    chunk = values[start:end]
    try:
        parts.append(_to_array(chunk, spec))
        return
    except BadRequest:
        pass
    if end - start > _SLOW_SPAN:
        middle = (start + end) // 2
        _convert_span(values, lines, spec, place, start, middle, parts, rejected)
        _convert_span(values, lines, spec, place, middle, end, parts, rejected)
        return
    for i, value in enumerate(chunk):  # slow path: find the bad rows of this small span
        reason = _cells_problem(value, spec, place[1]) if _is_cells(value) else problem(value, spec)
        if reason is None:
            parts.append(_to_array([value], spec))
        else:
            rejected[lines[start + i]] = f"{place[0]} {reason}"


def _is_cells(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], str)


def _to_array(chunk: list, spec: TensorSpec) -> np.ndarray:
    if not _is_cells(chunk[0]):
        return to_batch(chunk, spec, check_bools=False)
    try:  # CSV cells: numpy parses numeric strings itself, anything else is a ValueError
        arr = np.array(chunk, dtype=np.float64)
    except ValueError:
        raise BadRequest("a cell is not a number") from None
    if not spec.feature_shape and arr.shape[1:] == (1,):  # one column feeding a scalar input
        arr = arr.reshape(len(arr))
    if arr.shape[1:] != spec.feature_shape:
        raise BadRequest(f"expected {spec.feature_shape} values")
    return cast_finite(arr, spec)


def _cells_problem(cells: list[str], spec: TensorSpec, names: list[str] | None) -> str | None:
    low, high = spec.limits
    for i, cell in enumerate(cells):
        column = f"column '{names[i]}'" if names and i < len(names) else "a cell"
        try:
            number = float(cell)
        except ValueError:
            return f"{column} is not a number: {cell[:40]!r}"
        if not low <= number <= high:  # NaN fails both comparisons
            return f"{column} holds {cell[:40]!r}: NaN, Infinity or a value out of {spec.dtype} range"
    try:
        _to_array([cells], spec)
    except BadRequest as err:
        return err.message.split(f"input '{spec.name}' ", 1)[-1]
    return None


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)
