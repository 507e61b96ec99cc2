"""HTTP/1.1 response framing for the raw upstream path: the head, then the body.

Pure: bytes in, values out, no I/O. ``parse_head(buf)`` reads a response head;
``body_decoder(head)`` picks how its body is delimited (RFC 9112 section 6.3):
``ChunkedBody`` (``Transfer-Encoding: chunked``), ``LengthBody``
(``Content-Length``) or ``CloseBody`` (until the connection closes). Each has
``feed(data) -> list[bytes]`` returning the payload found in ``data`` (slices;
framing dropped) as it arrives, byte by byte if need be; ``done`` once the body
ended, with any bytes past it in ``rest`` (a keep-alive connection is reusable
only when that is empty). Anything malformed raises ``FramingError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
"""A longer response head is refused (aiohttp's client allows 8190 a line, 32 KiB in all)."""
MAX_LINE_BYTES = 8190
"""Longest chunk-size or trailer line accepted (aiohttp's ``max_line_size``)."""

_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# chunk-size [ BWS ; chunk-ext ] -- the extension is allowed and ignored.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_NO_BODY = frozenset({204, 304})


class FramingError(ValueError):
    """The replica's response is not valid HTTP/1.1 framing."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    version: tuple[int, int]
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    """As received, in order (names as the replica spelled them)."""

    def get(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive), as aiohttp's ``get``."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def has(self, name: str) -> bool:
        name = name.lower()
        return any(k.lower() == name for k, _ in self.headers)

    @property
    def keep_alive(self) -> bool:
        connection = self.get("Connection").lower()
        if self.version == (1, 0):
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(buf: bytes | bytearray) -> tuple[ResponseHead, int] | None:
    """The response head at the start of ``buf`` and its length in bytes, or ``None``
    while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise FramingError(f"response head longer than {MAX_HEAD_BYTES} bytes")
        return None
    if end > MAX_HEAD_BYTES:
        raise FramingError(f"response head longer than {MAX_HEAD_BYTES} bytes")
    lines = bytes(buf[:end]).split(b"\r\n")
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise FramingError(f"bad status line {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        name, colon, value = raw.decode("utf-8", "surrogateescape").partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:  # also refuses obsolete line folding
            raise FramingError(f"bad header line {raw[:80]!r}")
        value = value.strip(" \t")
        if _CTL.search(value) is not None:
            raise FramingError(f"control character in header {name}")
        headers.append((name, value))
    head = ResponseHead(
        version=(1, int(m.group(1))),
        status=int(m.group(2)),
        reason=(m.group(3) or b"").decode("latin-1"),
        headers=tuple(headers),
    )
    return head, end + 4


class ChunkedBody:
    """``Transfer-Encoding: chunked``: chunk sizes, payload, CRLFs, last chunk, trailers."""

    ends_at_close = False

    def __init__(self) -> None:
        self.done = False
        self.rest = b""
        self._state = 0  # 0 size line, 1 payload, 2 CRLF after payload, 3 trailer line
        self._need = 0  # payload bytes (state 1) or CRLF bytes (state 2) still expected
        self._line = b""  # an incomplete size or trailer line, kept to the next feed

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.rest += data
            return []
        out: list[bytes] = []
        if self._line:
            data = self._line + data
            self._line = b""
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == 1:  # payload
                end = pos + self._need
                if end > n:
                    out.append(data[pos:])
                    self._need = end - n
                    return out
                out.append(data[pos:end])
                pos = end
                if data[pos : pos + 2] == b"\r\n":  # the usual case: CRLF in the same read
                    pos += 2
                    self._state = 0
                else:
                    self._state, self._need = 2, 2
            elif state == 0:  # chunk-size line
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep_line(data, pos)
                    return out
                line = data[pos:eol]
                if 0 < len(line) <= 16 and not line.strip(_HEX_DIGITS):  # the usual: digits
                    size = int(line, 16)
                else:  # extensions, whitespace, or bad
                    m = _CHUNK_SIZE.fullmatch(data, pos, eol)
                    if m is None:
                        raise FramingError(f"bad chunk size line {line[:40]!r}")
                    size = int(m.group(1), 16)
                pos = eol + 2
                if size:
                    self._state, self._need = 1, size
                else:
                    self._state = 3
            elif state == 2:  # CRLF split across reads
                take = min(self._need, n - pos)
                if data[pos : pos + take] != b"\r\n"[2 - self._need : 2 - self._need + take]:
                    raise FramingError("chunk payload not followed by CRLF")
                pos += take
                self._need -= take
                if not self._need:
                    self._state = 0
            else:  # trailer section, ignored; an empty line ends the body
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep_line(data, pos)
                    return out
                if eol == pos:
                    self.done = True
                    self.rest = data[eol + 2 :]
                    return out
                pos = eol + 2
        return out

    def _keep_line(self, data: bytes, pos: int) -> None:
        n = len(data) - pos
        if n > MAX_LINE_BYTES:
            raise FramingError(f"chunk line longer than {MAX_LINE_BYTES} bytes ({n})")
        self._line = data[pos:]


class LengthBody:
    """``Content-Length: n``."""

    ends_at_close = False

    def __init__(self, length: int) -> None:
        self._need = length
        self.done = length == 0
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.rest += data
            return []
        if len(data) < self._need:
            self._need -= len(data)
            return [data]
        take, self._need, self.done = self._need, 0, True
        self.rest = data[take:]
        return [data[:take]]


class CloseBody:
    """Neither chunked nor a length: the body is everything until the connection closes."""

    ends_at_close = True

    def __init__(self) -> None:
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        return [data]


Body = ChunkedBody | LengthBody | CloseBody


def body_decoder(head: ResponseHead) -> Body:
    """How ``head``'s body is delimited (a response to a POST)."""
    if head.status < 200 or head.status in _NO_BODY:
        return LengthBody(0)
    te = head.get("Transfer-Encoding")
    if te:
        if te.rsplit(",", 1)[-1].strip().lower() == "chunked":
            return ChunkedBody()
        return CloseBody()
    lengths = {v.strip() for k, v in head.headers if k.lower() == "content-length"}
    if lengths:
        if len(lengths) > 1 or not all(v.isdigit() and v.isascii() for v in lengths):
            raise FramingError(f"bad Content-Length {sorted(lengths)}")
        return LengthBody(int(lengths.pop()))
    return CloseBody()


def reusable(head: ResponseHead, body: Body) -> bool:
    """Whether the connection may carry another request once ``body`` was read."""
    return (
        head.keep_alive
        and body.done
        and not body.rest
        and not body.ends_at_close
        # Both framings at once is how requests get smuggled: never reuse such a connection.
        and not (head.has("Transfer-Encoding") and head.has("Content-Length"))
    )
