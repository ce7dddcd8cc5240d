"""Planning a batch job: cut a (streamed) file into shards at line boundaries and find repeated keys.

Pure Python over byte chunks, so the S3 adapter can stream an object of any size through it with bounded memory.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from liteserve.batch.records import RowFormat
from liteserve.keys import Key
from liteserve.lines import MAX_LINE_BYTES
from liteserve.manifest import TensorSpec


@dataclass
class Shard:
    """A run of whole lines: byte range [start, end] (inclusive) in the (decompressed) file, first line number."""

    index: int
    start: int
    end: int
    first_line: int
    data: bytes = field(repr=False)
    lines: int = 0
    duplicates: dict[int, int] = field(default_factory=dict)  # line -> line of the key's first valid occurrence
    skipped: list[int] = field(default_factory=list)  # over-long lines just before this shard, not in its data


class LineTooLong(ValueError):
    """A line runs past MAX_LINE_BYTES: the file cannot be cut into rows with bounded memory."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"line {line} is longer than {limit} bytes (the planner's line limit): not a row per line")


def read_header(chunks: Iterator[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> tuple[bytes, bytes]:
    """Split the first line (CSV header) off a chunk stream; returns (header line, rest of the first chunks)."""
    buffer = bytearray()
    for chunk in chunks:
        scanned = len(buffer)
        buffer += chunk
        cut = buffer.find(b"\n", scanned)
        if cut >= 0:
            return bytes(buffer[: cut + 1]), bytes(buffer[cut + 1 :])
        if len(buffer) > max_line_bytes:
            raise LineTooLong(1, max_line_bytes)
    return bytes(buffer), b""


def cut_shards(
    chunks: Iterable[bytes],
    shard_bytes: int,
    *,
    offset: int = 0,
    first_line: int = 1,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Shard]:
    """Yield shards of at least `shard_bytes` (the last may be smaller), each ending at a newline.

    Memory stays below shard_bytes + max_line_bytes + one chunk: a line that crosses a shard's end and runs
    longer than `max_line_bytes` is not buffered but skipped to its newline, and its number is attached to the
    next shard (`Shard.skipped`; a last shard with no data carries it at the end of a file), so it becomes one bad
    line like an over-long line inside a shard, which the worker rejects.
    """
    buffer = bytearray()
    index = 0
    scanned = 0  # bytes of the buffer already searched for a line end (each byte is searched once)
    skipped: list[int] = []  # over-long lines not yet attached to a shard
    skipping = False  # discarding the rest of an over-long line up to its newline
    for chunk in chunks:
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                offset += len(chunk)
                continue
            skipping = False
            offset, first_line, chunk = offset + end + 1, first_line + 1, chunk[end + 1 :]
        buffer += chunk
        while len(buffer) >= shard_bytes:
            cut = buffer.find(b"\n", max(shard_bytes - 1, scanned))
            if cut >= 0:
                data = bytes(buffer[: cut + 1])
                del buffer[: cut + 1]
                scanned = 0
                yield _shard(index, offset, first_line, data, skipped)
                index, offset, first_line, skipped = index + 1, offset + len(data), first_line + data.count(b"\n"), []
                continue
            # a line that crosses the shard size: read on until it ends, within the line limit
            scanned = len(buffer)
            last = buffer.rfind(b"\n", 0, shard_bytes - 1)
            if len(buffer) - (last + 1) <= max_line_bytes:
                break
            if last >= 0:  # the whole lines before it make a (smaller) shard
                data = bytes(buffer[: last + 1])
                yield _shard(index, offset, first_line, data, skipped)
                index, offset, first_line, skipped = index + 1, offset + len(data), first_line + data.count(b"\n"), []
            skipped.append(first_line)
            offset += len(buffer) - (last + 1)
            buffer.clear()
            scanned = 0
            skipping = True
    if buffer.strip() or skipped:
        yield _shard(index, offset, first_line, bytes(buffer), skipped)


def _shard(index: int, offset: int, first_line: int, data: bytes, skipped: list[int]) -> Shard:
    lines = data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
    return Shard(index, offset, offset + len(data) - 1, first_line, data, lines=lines, skipped=skipped)


class KeyLedger:
    """First valid occurrence of every key in a file; later occurrences are duplicates (a worker drops those that are
    valid and reports the others with their own error).

    Keys are read without converting any input (`RowFormat.keys`), so a file without repeated keys is never parsed
    here. A key's first occurrence claims it provisionally; only when the key comes again does the claim's validity
    matter, and then the shard holding the claim is parsed in full, once: the current one from memory, an earlier one
    read again through `reread(index, start, end)`. Repeated keys therefore cost at most one more parse of the shards
    that hold their first occurrences, and the decisions are the ones a full parse of every row would make.
    """

    def __init__(
        self,
        fmt: RowFormat,
        inputs: Mapping[str, TensorSpec],
        reread: Callable[[int, int, int], bytes] | None = None,
    ):
        self.fmt, self.inputs, self._reread = fmt, inputs, reread
        self._first: dict[Key, int] = {}  # key -> claiming line << 1, | 1 once the claim is known to be valid
        self._shards: list[tuple[int, int, int]] = []  # (first line, start, end) by shard index
        self._parsed: set[int] = set()  # shards whose claims are settled: an unmarked claim there is invalid
        self._valid_here: set[int] = set()  # valid lines of the shard being scanned, once it has been parsed
        self.reparsed = 0  # earlier shards read and parsed again because a later key repeated one of theirs

    def scan(self, shard: Shard) -> None:
        """Record the shard's keys, and its duplicates on it (`Shard.duplicates`). Shards come in index order."""
        first = self._first
        repeats: list[tuple[int, Key]] = []
        for line, key in self.fmt.keys(shard.data, shard.first_line):
            claim = line << 1
            if first.setdefault(key, claim) != claim:
                repeats.append((line, key))
        self._shards.append((shard.first_line, shard.start, shard.end))
        here = len(self._shards) - 1
        self._valid_here = set()
        for line, key in repeats:
            claim = first[key]
            if not claim & 1:
                index = bisect_right(self._shards, (claim >> 1, _END)) - 1
                if index not in self._parsed:
                    self._parse(index, here, shard.data)
                claim = first[key]
            if claim & 1:
                shard.duplicates[line] = claim >> 1
            else:  # the earlier claim is invalid: this line claims the key (settled if this shard is parsed)
                first[key] = line << 1 | (line in self._valid_here)

    def _parse(self, index: int, here: int, current: bytes) -> None:
        first_line, start, end = self._shards[index]
        if index == here:
            data = current
        else:
            if self._reread is None:
                raise RuntimeError("a key repeats one of an earlier shard, and this ledger cannot read shards again")
            data = self._reread(index, start, end)
            self.reparsed += 1
        rows, _ = self.fmt.parse(data, first_line, self.inputs)
        first = self._first
        for line, key in zip(rows.lines, rows.keys, strict=True):
            if first.get(key) == line << 1:
                first[key] = line << 1 | 1
        self._parsed.add(index)
        if index == here:
            self._valid_here = set(rows.lines)

    def __len__(self) -> int:
        return len(self._first)


_END = 1 << 62  # sorts after any (first line, start, end) of a shard starting at the same line
