"""The raw SSE relay (``upstream.py``) end to end: a replica that writes scripted bytes
(chunks cut at odd boundaries, closing mid-chunk, Content-Length or close-delimited
SSE, keep-alive or not), the bytes the client gets, and what happens upstream."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import uvloop
from aiohttp import web
from gwhelpers import CHAT, HOST, gateway, metric_value, scripted_upstreams, service

from tierserve.gateway import GATEWAY_STATE, Backend, GatewayConfig
from tierserve.gateway.proxy import REPLICA_HEADER
from tierserve.gateway.rawpath import end_written_outside, may_end_outside
from tierserve.gateway.upstream import UpstreamConnection, origin_of

STREAM = {**CHAT, "stream": True}
NS = {"namespace": "default", "service": "deepseek"}
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Engine: e1\r\n"
EVENTS = [b'data: {"i": %d, "pad": "%s"}\n\n' % (i, b"x" * (i * 7)) for i in range(6)] + [
    b"data: [DONE]\n\n"
]
PAYLOAD = b"".join(EVENTS)


def chunked(*events: bytes, end: bool = True) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + (b"0\r\n\r\n" if end else b"")


def cut(data: bytes, sizes: tuple[int, ...] = (1, 2, 3, 5, 7, 11, 13)) -> list[bytes]:
    """``data`` in pieces of odd sizes, cycling through ``sizes``."""
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        pieces.append(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return pieces


WAIT_EOF = "wait for the gateway to close"
CLOSE = "close"
Step = bytes | float | str


@dataclass
class RawReplica:
    """Answers every request on a connection with ``script``: bytes to write (each
    flushed on its own), pauses in seconds, ``WAIT_EOF`` or ``CLOSE``."""

    script: list[Step]
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    eof_seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
                body = await reader.readexactly(int(m.group(1)) if m else 0)
                self.requests.append(head + body)
                for step in self.script:
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    elif step == WAIT_EOF:
                        if await reader.read() == b"":
                            self.eof_seen.set()
                        return
                    elif step == CLOSE:
                        return
                    else:
                        assert isinstance(step, bytes)
                        writer.write(step)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof_seen.set()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_replica(*script: Step) -> AsyncIterator[RawReplica]:
    replica = RawReplica(list(script))
    server = await asyncio.start_server(replica.handle, "127.0.0.1", 0)
    replica.port = server.sockets[0].getsockname()[1]
    try:
        yield replica
    finally:
        server.close()


async def post_stream(url: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{url}/v1/chat/completions", json=STREAM)
        return r, await asyncio.wait_for(r.read(), 5)


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        return await (await s.get(f"{url}/metrics")).text()


async def test_chunks_cut_at_odd_byte_boundaries_arrive_whole_and_in_order() -> None:
    wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*EVENTS)
    steps: list[Step] = []
    for piece in cut(wire):
        steps += [piece, 0.001]
    async with raw_replica(*steps) as rep, gateway([service(Backend("r0", rep.url))]) as gw:
        r, body = await post_stream(gw.url)
        assert r.status == 200 and body == PAYLOAD
        assert r.headers[REPLICA_HEADER] == "r0" and r.headers["X-Engine"] == "e1"
        assert r.headers["Content-Type"] == "text/event-stream"
        text = await metrics(gw.url)
        assert metric_value(text, "tierserve_gateway_requests_total", **NS, code="200") == 1
        assert metric_value(text, "tierserve_gateway_time_to_first_byte_seconds_count", **NS) == 1
        assert len(gw.app[GATEWAY_STATE].metrics.recent_ttfb["r0"]) == 1


async def test_each_chunk_reaches_the_client_as_it_comes() -> None:
    wire: list[Step] = [
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    ]
    wire += [0.3, chunked(*EVENTS[1:])]
    async with (
        raw_replica(*wire) as rep,
        gateway([service(Backend("r0", rep.url))]) as gw,
        aiohttp.ClientSession() as s,
    ):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
        first = await r.content.readany()
        assert first == EVENTS[0] and loop.time() - t0 < 0.25
        assert first + await r.read() == PAYLOAD


@pytest.mark.parametrize("at_once", [False, True], ids=["paced", "ended-before-relay"])
async def test_wire_bytes_are_chunked_with_one_last_chunk(at_once: bool) -> None:
    """Pins down how ``start_raw_chunked_body`` steps around aiohttp's writer: the head
    first, then whole chunks, then exactly one ``0\\r\\n\\r\\n`` -- fails if aiohttp changes.
    (A stream that ended before the relay started goes as one write through aiohttp.)"""
    wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    script: list[Step] = (
        [wire + chunked(*EVENTS)]
        if at_once
        else [wire, chunked(*EVENTS[:3], end=False), 0.05, chunked(*EVENTS[3:])]
    )
    async with (
        raw_replica(*script) as rep,
        gateway([service(Backend("r0", rep.url))]) as gw,
    ):
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"model": "deepseek-r1", "stream": true}'
        for _ in range(2):  # the client's connection stays usable after a stream
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (HOST.encode(), len(body), body)
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\nTransfer-Encoding: chunked\r\n" in head
            assert b"Content-Length" not in head
            payload = b""
            while True:  # an independent chunked decoder
                size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                data = await reader.readexactly(size + 2)
                assert data.endswith(b"\r\n")
                if size == 0:
                    break
                payload += data[:-2]
            assert payload == PAYLOAD
        writer.close()
        assert rep.connections == 1  # and the replica's connection was kept alive


async def test_replica_closing_mid_chunk_ends_the_stream_with_an_sse_error_event() -> None:
    wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    async with (
        raw_replica(wire, 0.02, b"40\r\ndata: {partial", 0.02, CLOSE) as rep,
        gateway([service(Backend("r0", rep.url))]) as gw,
    ):
        r, body = await post_stream(gw.url)  # a clean end: aiohttp's client raises otherwise
        assert r.status == 200
        assert body.startswith(EVENTS[0] + b"data: {partial")
        events = body.split(b"\n\n")
        assert b'"error"' in events[-3] and b'"code": 502' in events[-3]
        assert events[-2:] == [b"data: [DONE]", b""]
        text = await metrics(gw.url)
        assert metric_value(text, "tierserve_gateway_requests_total", **NS, code="502") == 1
        assert metric_value(text, "tierserve_gateway_ejections_total", **NS, replica="r0") == 1


async def test_whole_request_timeout_mid_stream_is_a_504_event() -> None:
    wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    async with (
        raw_replica(wire, 3.0) as rep,
        gateway([service(Backend("r0", rep.url))], GatewayConfig(request_timeout_s=0.4)) as gw,
    ):
        _, body = await post_stream(gw.url)
        assert body.startswith(EVENTS[0]) and b'"code": 504' in body
        assert body.endswith(b"data: [DONE]\n\n")


async def test_client_disconnect_closes_the_replica_connection() -> None:
    wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    async with raw_replica(wire, WAIT_EOF) as rep, gateway([service(Backend("r0", rep.url))]) as gw:
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
            assert await r.content.readany() == EVENTS[0]
            r.close()  # drop the connection mid-stream
        await asyncio.wait_for(rep.eof_seen.wait(), 2)


async def test_replica_connections_are_kept_alive_unless_it_says_close() -> None:
    keep = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*EVENTS)
    close = SSE_HEAD + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*EVENTS)
    for wire, connections in ((keep, 1), (close, 3)):
        async with raw_replica(wire) as rep, gateway([service(Backend("r0", rep.url))]) as gw:
            for _ in range(3):
                _, body = await post_stream(gw.url)
                assert body == PAYLOAD
            assert rep.connections == connections
            forwarder = gw.app[GATEWAY_STATE].forwarder
            origin = origin_of(rep.url)
            assert forwarder is not None and origin is not None
            assert forwarder.upstreams.idle(origin) == (1 if connections == 1 else 0)


JSON_ANSWER = b'{"object": "chat.completion", "choices": [{"index": 0}]}'
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Engine: e1\r\n"


@pytest.mark.parametrize(
    ("wire", "connections"),
    [
        (JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(JSON_ANSWER) + JSON_ANSWER, 1),
        (
            JSON_HEAD
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked(JSON_ANSWER[:9], JSON_ANSWER[9:]),
            1,
        ),
        (JSON_HEAD + b"Connection: close\r\n\r\n" + JSON_ANSWER, 3),  # delimited by the close
        (JSON_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + JSON_ANSWER, 3),
    ],
    ids=["content-length", "chunked", "until-close", "http-1.0"],
)
async def test_a_non_streamed_answer_is_read_whole_on_the_raw_path(
    wire: bytes, connections: int
) -> None:
    steps: list[Step] = [*cut(wire, (30, 2, 9))]
    if connections > 1:
        steps.append(CLOSE)
    async with (
        raw_replica(*steps) as rep,
        gateway([service(Backend("r0", rep.url))]) as gw,
        aiohttp.ClientSession() as s,
    ):
        for _ in range(3):
            r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert (r.status, await r.read()) == (200, JSON_ANSWER)
            assert r.headers["Content-Length"] == str(len(JSON_ANSWER))
            assert (r.headers[REPLICA_HEADER], r.headers["X-Engine"]) == ("r0", "e1")
        assert rep.connections == connections  # kept alive unless the replica said close
        assert all(
            req.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") for req in rep.requests
        )


@pytest.mark.parametrize(
    "wire",
    [
        SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(PAYLOAD) + PAYLOAD,
        SSE_HEAD + b"Connection: close\r\n\r\n" + PAYLOAD,  # delimited by the close
    ],
    ids=["content-length", "until-close"],
)
async def test_sse_without_chunked_framing_passes_through(wire: bytes) -> None:
    steps: list[Step] = [*cut(wire, (40, 3, 17)), CLOSE]
    async with raw_replica(*steps) as rep, gateway([service(Backend("r0", rep.url))]) as gw:
        r, body = await post_stream(gw.url)
        assert (r.status, body) == (200, PAYLOAD)


async def test_replica_closing_before_its_content_length_is_an_sse_error() -> None:
    wire = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % (len(PAYLOAD) + 10) + PAYLOAD
    async with raw_replica(wire, CLOSE) as rep, gateway([service(Backend("r0", rep.url))]) as gw:
        _, body = await post_stream(gw.url)
        assert body.startswith(PAYLOAD) and b'"code": 502' in body


async def test_a_non_sse_answer_to_a_stream_request_is_passed_whole() -> None:
    err = b'{"error": {"message": "bad", "code": 400}}'
    wire = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    wire += b"Transfer-Encoding: chunked\r\n\r\n" + chunked(err[:10], err[10:])
    async with (
        raw_replica(*cut(wire, (9, 4))) as rep,
        gateway([service(Backend("r0", rep.url))]) as gw,
    ):
        r, body = await post_stream(gw.url)
        assert (r.status, body) == (400, err)
        assert r.headers["Content-Length"] == str(len(err))
        assert r.headers[REPLICA_HEADER] == "r0"


async def test_5xx_and_broken_heads_before_the_first_byte_are_retried() -> None:
    five = (
        b"HTTP/1.1 503 Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    sse_500 = b"HTTP/1.1 500 Oops\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    good = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*EVENTS)
    for bad in (five, sse_500, b"HTTP/1.1 20", b"nonsense\r\n\r\n"):
        async with (
            raw_replica(bad, CLOSE) as a,
            raw_replica(good) as b,
            gateway([service(Backend("a", a.url), Backend("b", b.url, unit=1))]) as gw,
        ):
            r, body = await post_stream(gw.url)
            assert (r.status, r.headers[REPLICA_HEADER], body) == (200, "b", PAYLOAD), bad
            assert len(a.requests) == 1


@pytest.mark.parametrize("mode", ["stream", "ok"])
async def test_replica_sees_the_same_request_headers_on_either_path(mode: str) -> None:
    # HTTP/1.1 clients take the raw path, streamed or not; HTTP/1.0 ones aiohttp's client.
    payload = STREAM if mode == "stream" else CHAT
    async with scripted_upstreams(1) as (up,):
        up.mode = mode
        headers = {
            "Accept": "text/event-stream" if mode == "stream" else "application/json",
            "X-Request-Id": "r-1",
            "Authorization": "Bearer k",
        }
        async with gateway([service(Backend("a", up.url))]) as gw:
            for version in (aiohttp.HttpVersion11, aiohttp.HttpVersion10):
                async with aiohttp.ClientSession(version=version) as s:
                    r = await s.post(f"{gw.url}/v1/chat/completions", json=payload, headers=headers)
                    body = await r.read()
                assert r.status == 200
                assert body.endswith(b"data: [DONE]\n\n" if mode == "stream" else b"}")
            forwarder = gw.app[GATEWAY_STATE].forwarder
            origin = origin_of(up.url)
            assert forwarder is not None and origin is not None
            assert forwarder.upstreams.idle(origin) == 1  # the first went the raw way
    raw, plain = ({k: v for k, v in h.items() if k != "Content-Length"} for h in up.headers_seen)
    assert raw == plain
    assert list(raw) == list(plain)  # in the same order too


class FakeTransport(asyncio.Transport):
    """A transport that records writes and reading pauses; its write buffer is set."""

    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.buffered = buffered
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_a_full_client_buffer_pauses_reading_from_the_replica() -> None:
    conn = UpstreamConnection(asyncio.get_running_loop())
    up, client = FakeTransport(), FakeTransport(buffered=70000)
    conn.connection_made(up)
    conn.send(b"POST / HTTP/1.1\r\n\r\n")
    conn.data_received(
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    )
    assert conn.started and conn.pieces == [EVENTS[0]]
    conn.relay_to(client)  # what had arrived goes at once, as one chunk
    assert client.written == [chunked(EVENTS[0], end=False)]
    assert conn.need_drain and not up.reading  # past the high-water mark
    client.buffered = 0
    conn.resume()
    assert not conn.need_drain and up.reading
    wire = chunked(EVENTS[1], end=False)
    conn.data_received(wire[:5])  # the size line and one byte of the payload
    conn.data_received(wire[5:])
    each_read = [chunked(EVENTS[1][:1], end=False), chunked(EVENTS[1][1:], end=False)]
    assert client.written[1:] == each_read  # what each read brought leaves at once
    conn.data_received(chunked(EVENTS[2]))  # the end: left to the handler's last chunk
    assert conn.done and client.written[3:] == [] and conn.pieces == [EVENTS[2]]
    conn.detach()
    assert conn.take() == EVENTS[2] and client.written[3:] == []


def relaying(ends: bool) -> tuple[UpstreamConnection, FakeTransport]:
    """A connection whose stream started with ``EVENTS[0]`` and is relayed to a client."""
    conn = UpstreamConnection(asyncio.get_running_loop())
    client = FakeTransport()
    conn.connection_made(FakeTransport())
    conn.send(b"POST / HTTP/1.1\r\n\r\n")
    conn.data_received(
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0], end=False)
    )
    assert conn.take() == EVENTS[0]  # what the handler sends with the head
    conn.relay_to(client, ends=ends)
    return conn, client


async def test_the_relay_writes_the_end_with_the_last_payload_in_one_write() -> None:
    """The end leaves from the read that brought it, not from the handler's next step
    (which a busy uvloop runs only after its whole poll phase)."""
    conn, client = relaying(ends=True)
    conn.data_received(chunked(EVENTS[1], end=False))
    conn.data_received(chunked(EVENTS[2], EVENTS[3]))
    joined = EVENTS[2] + EVENTS[3]
    assert client.written == [
        chunked(EVENTS[1], end=False),
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(joined), joined),  # one write
    ]
    assert conn.done and conn.ended and conn.take() == b""
    conn.detach()
    assert not conn.closed  # a whole body: the connection may be reused
    conn.recycle(0.0)
    assert not conn.ended


async def test_an_end_with_no_payload_is_the_last_chunk_alone() -> None:
    conn, client = relaying(ends=True)
    conn.data_received(chunked(EVENTS[1], end=False))
    conn.data_received(b"0\r\n\r\n")
    assert client.written == [chunked(EVENTS[1], end=False), b"0\r\n\r\n"]
    assert conn.ended


async def test_an_end_that_came_before_the_relay_leaves_when_it_starts() -> None:
    conn = UpstreamConnection(asyncio.get_running_loop())
    client = FakeTransport()
    conn.connection_made(FakeTransport())
    conn.send(b"POST / HTTP/1.1\r\n\r\n")
    conn.data_received(SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS[0]))
    conn.relay_to(client, ends=True)
    assert client.written == [chunked(EVENTS[0])] and conn.ended


async def test_without_ends_the_handler_writes_the_end() -> None:
    conn, client = relaying(ends=False)
    conn.data_received(chunked(EVENTS[1]))
    assert client.written == [] and conn.done and not conn.ended
    assert conn.take() == EVENTS[1]


async def test_an_end_for_a_client_that_left_is_not_written() -> None:
    conn, client = relaying(ends=True)
    client.is_closing = lambda: True  # type: ignore[method-assign]
    conn.data_received(chunked(EVENTS[1]))
    assert client.written == [] and conn.client_gone and not conn.ended


async def test_aiohttps_writer_lets_the_relay_write_the_end() -> None:
    """``may_end_outside`` holds for the writer aiohttp gives a chunked response (if an
    aiohttp upgrade changes that, this fails rather than the gateway quietly falling
    back to the handler's end), and ``end_written_outside`` then writes nothing."""
    from unittest import mock

    from aiohttp.http_writer import StreamWriter
    from aiohttp.test_utils import make_mocked_request

    transport = FakeTransport()
    protocol = mock.Mock(transport=transport, _drain_helper=mock.AsyncMock())
    request = make_mocked_request(
        "POST",
        "/v1/chat/completions",
        protocol=protocol,
        transport=transport,
        writer=StreamWriter(protocol, asyncio.get_running_loop()),
    )
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    writer = await resp.prepare(request)
    assert writer is not None and may_end_outside(writer)
    await resp.write(b"x")
    before = b"".join(transport.written)
    await end_written_outside(resp, writer)
    assert b"".join(transport.written) == before and not may_end_outside(writer)


def test_relay_on_uvloop() -> None:
    """The gateway's default loop when installed (its transports are not asyncio's)."""

    async def scenario() -> None:
        wire = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*EVENTS)
        async with (
            raw_replica(*cut(wire, (50, 1, 30))) as rep,
            gateway([service(Backend("r0", rep.url))]) as gw,
        ):
            for _ in range(2):
                r, body = await post_stream(gw.url)
                assert (r.status, body) == (200, PAYLOAD)
            assert rep.connections == 1

    uvloop.run(scenario())


def test_origin_of() -> None:
    o = origin_of("http://127.0.0.1:8001")
    assert o is not None and (o.host, o.port, o.host_header) == (
        "127.0.0.1",
        8001,
        "127.0.0.1:8001",
    )
    o = origin_of("http://engine")
    assert o is not None and (o.port, o.host_header) == (80, "engine")
    for other in ("https://engine:443", "http://u:p@engine:1", "http://engine:1/prefix"):
        assert origin_of(other) is None  # served by aiohttp's client
