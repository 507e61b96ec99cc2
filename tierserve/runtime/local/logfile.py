"""A replica's log file, read for the API: all of it, its last lines, or a chunk from an
offset (``logs -f``), never cutting a UTF-8 character in two."""

from __future__ import annotations

import os
from typing import Any

LOG_CHUNK_BYTES = 2**20
"""The most of a log one ``offset`` answer sends."""


def read_log(
    path: str, tail: int | None, offset: int | None, chunk_bytes: int = LOG_CHUNK_BYTES
) -> tuple[bytes, int]:
    """(bytes to send, offset just past them) of the log at ``path`` ("" if none yet)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; a missing log is empty
    except FileNotFoundError:
        return b"", 0
    with f:
        size = os.fstat(f.fileno()).st_size
        if offset is not None:
            start = offset if offset <= size else 0  # past the end: the log was cut
            f.seek(start)
            chunk = f.read(min(size - start, chunk_bytes))
            chunk = chunk[: _whole_utf8(chunk)] if len(chunk) == chunk_bytes else chunk
            return chunk, start + len(chunk)
        if tail is None:
            return f.read(size), size
        return _last_lines(f, size, tail), size


def _whole_utf8(chunk: bytes) -> int:
    """How much of ``chunk`` ends on a character boundary (a chunk may cut one)."""
    for back in range(1, min(4, len(chunk)) + 1):
        byte = chunk[-back]
        if byte < 0x80:
            return len(chunk)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(chunk) if need <= back else len(chunk) - back
    return len(chunk)


def _last_lines(f: Any, size: int, lines: int, block: int = 65536) -> bytes:
    """The last ``lines`` lines of the file ``f`` of ``size`` bytes, reading from the end."""
    if lines == 0:
        return b""
    data, pos = b"", size
    # One more newline than lines: the one before the first line sent (a final newline
    # ends the last line rather than starting an empty one).
    while pos > 0 and data.count(b"\n", 0, len(data) - 1) < lines:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    cut_at = len(data) - 1
    for _ in range(lines):
        cut_at = data.rfind(b"\n", 0, cut_at)
        if cut_at < 0:
            return data
    return data[cut_at + 1 :]
