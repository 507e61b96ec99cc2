"""HTTP/1.1 response framing of the raw upstream path (pure): heads, chunked bodies fed
at every byte boundary, Content-Length and close-delimited bodies, keep-alive reuse."""

from __future__ import annotations

import pytest

from tierserve.gateway.framing import (
    ChunkedBody,
    CloseBody,
    FramingError,
    LengthBody,
    ResponseHead,
    body_decoder,
    parse_head,
    reusable,
)


def head(*headers: tuple[str, str], status: int = 200, version: int = 1) -> ResponseHead:
    return ResponseHead((1, version), status, "OK", headers)


def feed_split(body: ChunkedBody, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at ``cuts`` and return the payload decoded."""
    out = b""
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        out += b"".join(body.feed(data[a:b]))
    return out


# (name, wire bytes, payload, bytes past the body)
CHUNKED_OK = [
    ("one SSE event a chunk", b'f\r\ndata: {"i":0}\n\n\r\n0\r\n\r\n', b'data: {"i":0}\n\n', b""),
    ("several chunks", b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n", b"abcd", b""),
    (
        "hex in either case",
        b"A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        b"0123456789abcdefghijk",
        b"",
    ),
    ("extension ignored", b"3;name=v\r\nabc\r\n0\r\n\r\n", b"abc", b""),
    ("space before extension", b"3 ;x\r\nabc\r\n0\r\n\r\n", b"abc", b""),
    ("trailers ignored", b"2\r\nhi\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", b"hi", b""),
    ("empty body", b"0\r\n\r\n", b"", b""),
    ("next response kept", b"2\r\nhi\r\n0\r\n\r\nHTTP/1.1", b"hi", b"HTTP/1.1"),
    ("leading zeros", b"0002\r\nhi\r\n0\r\n\r\n", b"hi", b""),
]


@pytest.mark.parametrize(
    ("name", "wire", "payload", "rest"), CHUNKED_OK, ids=[c[0] for c in CHUNKED_OK]
)
def test_chunked_body_decodes_at_every_split(
    name: str, wire: bytes, payload: bytes, rest: bytes
) -> None:
    # Whole, then cut once at every offset, then byte by byte: the same payload each time.
    splits: list[list[int]] = [[], *([i] for i in range(1, len(wire))), list(range(1, len(wire)))]
    for cuts in splits:
        body = ChunkedBody()
        assert feed_split(body, wire, cuts) == payload, cuts
        assert body.done and body.rest == rest, cuts


def test_chunked_body_hands_out_a_partial_chunk_at_once() -> None:
    body = ChunkedBody()
    assert body.feed(b"a\r\n0123") == [b"0123"]  # no waiting for the rest of the chunk
    assert body.feed(b"456789\r") == [b"456789"]
    assert body.feed(b"\n0\r\n") == [] and not body.done
    assert body.feed(b"\r\n") == [] and body.done


CHUNKED_BAD = [
    ("not hex", b"xyz\r\nabc\r\n"),
    ("0x prefix", b"0x3\r\nabc\r\n"),
    ("sign", b"+3\r\nabc\r\n"),
    ("underscore", b"1_0\r\n"),
    ("empty size", b"\r\nabc\r\n"),
    ("too long a size", b"1" * 17 + b"\r\n"),
    ("no CRLF after payload", b"3\r\nabcX\r\n"),
    ("bare LF after payload", b"3\r\nabc\n0\r\n\r\n"),
    ("endless size line", b"1" * 9000),
]


@pytest.mark.parametrize(("name", "wire"), CHUNKED_BAD, ids=[c[0] for c in CHUNKED_BAD])
def test_chunked_body_refuses_bad_framing(name: str, wire: bytes) -> None:
    with pytest.raises(FramingError):
        ChunkedBody().feed(wire)
    body = ChunkedBody()  # and byte by byte
    with pytest.raises(FramingError):
        for i in range(len(wire)):
            body.feed(wire[i : i + 1])


def test_length_body_stops_at_its_length() -> None:
    body = LengthBody(5)
    assert body.feed(b"abc") == [b"abc"] and not body.done
    assert body.feed(b"deHTTP") == [b"de"] and body.done and body.rest == b"HTTP"
    assert LengthBody(0).done


def test_close_body_takes_everything() -> None:
    body = CloseBody()
    assert body.feed(b"abc") == [b"abc"] and not body.done and body.ends_at_close


HEADS = [
    (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A:  b \r\n\r\nrest",
        (200, "OK", (("Content-Type", "text/event-stream"), ("X-A", "b"))),
    ),
    (b"HTTP/1.0 404 Not Found\r\n\r\n", (404, "Not Found", ())),
    (b"HTTP/1.1 500\r\nA: 1\r\nA: 2\r\n\r\n", (500, "", (("A", "1"), ("A", "2")))),
]


@pytest.mark.parametrize(("wire", "expected"), HEADS)
def test_parse_head(wire: bytes, expected: tuple[int, str, tuple[tuple[str, str], ...]]) -> None:
    parsed = parse_head(wire)
    assert parsed is not None
    h, size = parsed
    assert (h.status, h.reason, h.headers) == expected
    assert wire[size:] in (b"", b"rest")
    assert parse_head(wire[: wire.index(b"\r\n\r\n") + 3]) is None  # incomplete


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: \x00\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: " + b"x" * 70000,
    ],
)
def test_parse_head_refuses_bad_heads(wire: bytes) -> None:
    with pytest.raises(FramingError):
        parse_head(wire)


DECODERS = [
    ("chunked", head(("Transfer-Encoding", "chunked")), ChunkedBody),
    ("chunked last of several", head(("Transfer-Encoding", "gzip, Chunked")), ChunkedBody),
    ("te without chunked: until close", head(("Transfer-Encoding", "gzip")), CloseBody),
    (
        "te wins over length",
        head(("Transfer-Encoding", "chunked"), ("Content-Length", "3")),
        ChunkedBody,
    ),
    ("length", head(("Content-Length", "3")), LengthBody),
    ("equal lengths", head(("Content-Length", "3"), ("content-length", "3")), LengthBody),
    ("neither: until close", head(), CloseBody),
    ("204 has none", head(("Transfer-Encoding", "chunked"), status=204), LengthBody),
]


@pytest.mark.parametrize(("name", "h", "kind"), DECODERS, ids=[d[0] for d in DECODERS])
def test_body_decoder(name: str, h: ResponseHead, kind: type) -> None:
    assert isinstance(body_decoder(h), kind)


@pytest.mark.parametrize(
    "h",
    [
        head(("Content-Length", "3"), ("Content-Length", "4")),
        head(("Content-Length", "-1")),
        head(("Content-Length", "0x3")),
    ],
)
def test_body_decoder_refuses_bad_lengths(h: ResponseHead) -> None:
    with pytest.raises(FramingError):
        body_decoder(h)


def done(
    body: ChunkedBody | LengthBody | CloseBody, wire: bytes
) -> ChunkedBody | LengthBody | CloseBody:
    body.feed(wire)
    return body


REUSE = [
    ("chunked, read whole", head(), done(ChunkedBody(), b"0\r\n\r\n"), True),
    ("length, read whole", head(), done(LengthBody(2), b"hi"), True),
    ("not read whole", head(), done(ChunkedBody(), b"2\r\nhi\r\n"), False),
    ("bytes past the body", head(), done(LengthBody(2), b"hiX"), False),
    ("until close", head(), CloseBody(), False),
    ("Connection: close", head(("Connection", "close")), done(LengthBody(2), b"hi"), False),
    ("HTTP/1.0", head(version=0), done(LengthBody(2), b"hi"), False),
    (
        "HTTP/1.0 keep-alive",
        head(("Connection", "keep-alive"), version=0),
        done(LengthBody(2), b"hi"),
        True,
    ),
    (
        "both framings",
        head(("Transfer-Encoding", "chunked"), ("Content-Length", "5")),
        done(ChunkedBody(), b"0\r\n\r\n"),
        False,
    ),
]


@pytest.mark.parametrize(("name", "h", "body", "ok"), REUSE, ids=[r[0] for r in REUSE])
def test_reusable(
    name: str, h: ResponseHead, body: ChunkedBody | LengthBody | CloseBody, ok: bool
) -> None:
    assert reusable(h, body) is ok
