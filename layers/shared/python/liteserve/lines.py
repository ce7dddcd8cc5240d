"""Lines of a byte stream (JSONL, CSV, label files), with one bound on a line's length wherever the file is read:
the batch planner and workers and the labels function refuse an over-long line the same way."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_LINE_BYTES = 1024 * 1024  # a keyed row is ~1 KB; a longer "line" is not a row (e.g. a file with no line ends)


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
