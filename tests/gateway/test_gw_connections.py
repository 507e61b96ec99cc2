"""Connections and sockets are bounded: client header, body and idle keep-alive
timeouts; the upstream keep-alive pool is capped and reaped (raw relay and aiohttp's
client alike); a pooled connection the replica closed is never used for a request.

No test measures speed: each sets a short limit and checks the outcome well within
a generous bound, with every other limit left long."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from gwhelpers import CHAT, HOST, gateway, metric_sum, scrape, scripted_upstreams, service

from tierserve.gateway import GATEWAY_STATE, Backend, GatewayConfig
from tierserve.gateway.connection import ClientConnection
from tierserve.gateway.pool import UpstreamPool
from tierserve.gateway.proxy import REPLICA_HEADER
from tierserve.gateway.upstream import origin_of

NS = {"namespace": "default", "service": "deepseek"}
BODY = json.dumps(CHAT).encode()
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s" % (
    HOST.encode(),
    len(BODY),
    BODY,
)
BOUND_S = 5.0
"""How long a test waits for what a 0.3 s limit should bring about."""


async def until(check: Callable[[], object], timeout_s: float = BOUND_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response with a Content-Length: its head and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND_S)
    m = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    assert m is not None, head
    return head + await asyncio.wait_for(reader.readexactly(int(m.group(1))), BOUND_S)


async def read_to_close(reader: asyncio.StreamReader, timeout_s: float = BOUND_S) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    got = b""
    async with asyncio.timeout(timeout_s):
        while chunk := await reader.read(65536):
            got += chunk
    return got


@contextlib.asynccontextmanager
async def connected(
    config: GatewayConfig,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async with (
        scripted_upstreams(1) as (up,),
        gateway([service(Backend("r0", up.url))], config) as gw,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
        try:
            yield reader, writer
        finally:
            writer.close()


# ---------------------------------------------------------------- client side


async def test_a_partial_head_gets_408_and_is_closed() -> None:
    async with connected(GatewayConfig(client_header_timeout_s=0.3)) as (reader, writer):
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        got = await read_to_close(reader)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    err = json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]
    assert (err["code"], err["type"]) == (408, "RequestTimeoutError")


async def test_a_head_trickled_byte_by_byte_is_cut_off() -> None:
    async with connected(GatewayConfig(client_header_timeout_s=0.3)) as (reader, writer):

        async def trickle() -> None:
            for byte in b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(trickle())
        try:
            got = await read_to_close(reader)
        finally:
            task.cancel()
    assert got.startswith(b"HTTP/1.1 408 ")


async def test_a_connection_that_sends_nothing_is_closed_silently() -> None:
    async with connected(GatewayConfig(client_header_timeout_s=0.3)) as (reader, _):
        assert await read_to_close(reader) == b""


async def test_a_stalled_body_gets_408_and_connection_close() -> None:
    async with connected(GatewayConfig(client_body_timeout_s=0.3)) as (reader, writer):
        writer.write(REQUEST[: -len(BODY) + 10])  # the head and 10 bytes of the body
        got = await read_to_close(reader)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 ") and b"\r\nConnection: close" in head
    assert json.loads(body)["error"]["param"] == "body"


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    async with connected(GatewayConfig(client_keepalive_s=0.3)) as (reader, writer):
        writer.write(REQUEST)
        got = await read_to_close(reader)  # the answer, then the close
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.count(b"HTTP/1.1 ") == 1


async def test_a_closed_connection_leaves_no_reference_cycle() -> None:
    """A client connection's objects are freed when it closes, by reference counting, not
    left for the cyclic GC: with 10,000 streams a worker's collections found 11 objects
    of every closed connection and took up to 190 ms of its event loop."""
    async with (
        scripted_upstreams(1) as (up,),
        gateway([service(Backend("r0", up.url))], GatewayConfig()) as gw,
    ):
        port = int(gw.url.rsplit(":", 1)[1])

        async def one_request() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
            writer.close()
            await writer.wait_closed()

        def open_on_gateway() -> list[ClientConnection]:
            return [
                o
                for o in gc.get_objects()
                if isinstance(o, ClientConnection) and o.transport is not None
            ]

        await one_request()  # anything created once (pools, caches) exists from here on
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await one_request()
            await until(lambda: not open_on_gateway())  # each saw its connection_lost
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            in_cycles = [o for o in gc.garbage if isinstance(o, ClientConnection)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert in_cycles == []


async def test_the_header_timeout_spares_idle_waits_and_slow_bodies() -> None:
    cfg = GatewayConfig(client_header_timeout_s=0.2, client_body_timeout_s=2.0)
    async with connected(cfg) as (reader, writer):
        writer.write(REQUEST)
        first = await read_response(reader)
        assert first.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.5)  # idle past the header timeout: keep-alive's business
        head = REQUEST[: -len(BODY)]
        writer.write(head)
        for i in range(0, len(BODY), 20):  # a body slower than the header timeout
            await asyncio.sleep(0.05)
            writer.write(BODY[i : i + 20])
        second = await read_response(reader)
        assert second.startswith(b"HTTP/1.1 200 "), second


async def test_a_body_drained_after_the_answer_is_not_taken_for_a_head() -> None:
    cfg = GatewayConfig(max_body_bytes=100, client_header_timeout_s=0.2, client_keepalive_s=1.0)
    async with connected(cfg) as (reader, writer):
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n")
        for _ in range(8):  # answered 413 at once; the body keeps coming past 0.2 s
            await asyncio.sleep(0.06)
            writer.write(b"x" * 50)
        got = await read_to_close(reader)
    assert got.startswith(b"HTTP/1.1 413 ") and got.count(b"HTTP/1.1 ") == 1, got


def test_limits_are_validated() -> None:
    from tierserve.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        GatewayConfig(
            client_header_timeout_s=0,
            client_body_timeout_s=-1,
            client_keepalive_s=0,
            upstream_keepalive_s=0,
            upstream_max_idle=-1,
        )
    for name in (
        "client_header_timeout_s",
        "client_body_timeout_s",
        "client_keepalive_s",
        "upstream_keepalive_s",
        "upstream_max_idle",
    ):
        assert f"gateway: {name}:" in str(info.value)


# ---------------------------------------------------------------- upstream side


@pytest.mark.parametrize("stream", [True, False], ids=["raw-relay", "aiohttp-client"])
async def test_idle_upstream_connections_are_capped_and_reaped(stream: bool) -> None:
    cfg = GatewayConfig(upstream_keepalive_s=0.3, upstream_max_idle=4)
    async with scripted_upstreams(1) as (up,):
        up.mode, up.chunks, up.delay_s = ("stream", 3, 0.02) if stream else ("ok", 0, 0.05)
        async with gateway([service(Backend("r0", up.url))], cfg) as gw:
            async with aiohttp.ClientSession() as s:

                async def one() -> None:
                    payload = {**CHAT, "stream": stream}
                    async with s.post(f"{gw.url}/v1/chat/completions", json=payload) as r:
                        assert r.status == 200
                        await r.read()

                await asyncio.gather(*(one() for _ in range(40)))  # 40 at once
            forwarder = gw.app[GATEWAY_STATE].forwarder
            origin = origin_of(up.url)
            assert forwarder is not None and origin is not None
            if stream:
                assert forwarder.upstreams.idle(origin) <= 4  # the cap
            await until(lambda: up.open_connections() == 0)  # then none past the idle limit
            assert forwarder.upstreams.idle_total() == 0


async def test_a_pooled_connection_the_replica_closed_is_not_reused() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    origin = origin_of(f"http://127.0.0.1:{port}")
    assert origin is not None
    pool = UpstreamPool(keepalive_s=60.0)
    try:
        conn = await pool.connect(origin, 5.0)
        server_side, _ = listener.accept()
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        server_side.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await until(lambda: conn.done)
        pool.release(origin, conn)
        assert pool.idle(origin) == 1
        server_side.close()  # the replica's keep-alive timer fired; the loop has not run
        fresh = await pool.connect(origin, 5.0)
        assert fresh is not conn and conn.closed
        fresh.close()
    finally:
        pool.close()
        listener.close()


async def test_a_replica_closing_a_reused_connection_costs_no_502() -> None:
    """The replica answers one request per connection, then closes the connection when
    the next request arrives (as if its keep-alive timer had fired just then): the
    gateway sends that request again on a new connection -- no 502, no ejection."""
    sse = b"data: {}\n\ndata: [DONE]\n\n"
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(sse), sse)
    )
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length: (\d+)", head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            writer.write(answer)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request: closed unanswered
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with gateway([service(Backend("r0", url))]) as gw, aiohttp.ClientSession() as s:
            for _ in range(5):
                async with s.post(
                    f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True}
                ) as r:
                    assert (r.status, r.headers[REPLICA_HEADER]) == (200, "r0")
                    assert await r.read() == sse
            text = await scrape(gw.url)
        assert metric_sum(text, "tierserve_gateway_ejections_total", **NS) == 0
        assert metric_sum(text, "tierserve_gateway_retries_total", **NS) == 0
        assert connections >= 5
    finally:
        server.close()
