"""Planning a batch job: cut a (streamed) file into shards at line boundaries and find repeated keys.

Pure Python over byte chunks, so the S3 adapter can stream an object of any size through it with bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from liteserve.batch.records import RowFormat
from liteserve.keys import Key
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
    valid: int = 0
    rejected: int = 0
    duplicates: dict[int, int] = field(default_factory=dict)  # line -> line of the key's first valid occurrence


def read_header(chunks: Iterator[bytes]) -> tuple[bytes, bytes]:
    """Split the first line (CSV header) off a chunk stream; returns (header line, rest of the first chunks)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        cut = buffer.find(b"\n")
        if cut >= 0:
            return bytes(buffer[: cut + 1]), bytes(buffer[cut + 1 :])
    return bytes(buffer), b""


def cut_shards(chunks: Iterable[bytes], shard_bytes: int, *, offset: int = 0, first_line: int = 1) -> Iterator[Shard]:
    """Yield shards of at least `shard_bytes` (the last may be smaller), each ending at a newline."""
    buffer = bytearray()
    index = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= shard_bytes:
            cut = buffer.find(b"\n", shard_bytes - 1)
            if cut < 0:
                break  # a line longer than the shard size: read on until it ends
            data = bytes(buffer[: cut + 1])
            del buffer[: cut + 1]
            yield _shard(index, offset, first_line, data)
            index, offset, first_line = index + 1, offset + len(data), first_line + data.count(b"\n")
    if buffer.strip():
        yield _shard(index, offset, first_line, bytes(buffer))


def _shard(index: int, offset: int, first_line: int, data: bytes) -> Shard:
    return Shard(
        index, offset, offset + len(data) - 1, first_line, data, lines=data.count(b"\n") + (not data.endswith(b"\n"))
    )


class KeyLedger:
    """First valid occurrence of every key in a file; later valid rows with the same key are duplicates."""

    def __init__(self) -> None:
        self._first: dict[Key, int] = {}

    def scan(self, shard: Shard, fmt: RowFormat, spec: TensorSpec) -> None:
        """Parse the shard like a worker will, and record its duplicates and counts on it."""
        rows, _ = fmt.parse(shard.data, shard.first_line, spec)
        first = self._first
        for line, key in zip(rows.lines, rows.keys, strict=True):
            seen = first.setdefault(key, line)
            if seen != line:
                shard.duplicates[line] = seen
        shard.valid = len(rows.lines) - len(shard.duplicates)
        shard.rejected = len(rows.errors) + len(shard.duplicates)

    def __len__(self) -> int:
        return len(self._first)
