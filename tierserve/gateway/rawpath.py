"""The raw HTTP/1.1 path for HTTP/1.1 clients, streamed or not: ``RawClient.attempt``
sends a request on ``upstream.py``'s keep-alive pool and relays an SSE answer straight
to the client's transport (see ``upstream.py`` for why); anything else it reads whole.

Outcomes are the aiohttp path's (``proxy.py``): a ``Tried`` before the client got a byte
(judged by the caller), else the relayed stream ended through ``StreamEnds``. A pooled
connection the replica closed before answering anything is replaced once by a new one
(its keep-alive timer won the race), which is neither a retry nor a fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter

from tierserve.gateway.attempt import (
    StreamEnds,
    Tried,
    bad_gateway,
    failed,
    is_sse,
    response_headers,
    timed_out,
    whole,
)
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.pool import UpstreamPool
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.gateway.upstream import Origin, UpstreamConnection, origin_of, request_head
from tierserve.policy.retry import Attempt, Failure, fault_of


class HeldHeadResponse(web.StreamResponse):
    """A ``StreamResponse`` whose head aiohttp holds back for the first body bytes, as
    it does for a ``web.Response``, so that both leave in one write. (aiohttp's own
    switch, ``_send_headers_immediately``; an aiohttp without it sends the head at
    ``prepare``: the same bytes, one write more.)"""

    _send_headers_immediately = False


async def start_raw_chunked_body(
    resp: web.StreamResponse, request: web.Request, first: bytes
) -> tuple[asyncio.Transport | None, AbstractStreamWriter]:
    """Send ``resp``'s head, chunked, with ``first`` as its first chunk (one write), and
    return the client transport that body bytes already framed as whole chunks may be
    written to directly (``None`` if the client is gone), and the writer to drain it with.

    The one place that steps around aiohttp's writer: it relies on the head being on the
    wire once this returns (aiohttp holds a head back for the first body bytes and sends
    both in one write; ``write(b"")`` sends it alone) and on aiohttp framing only what
    goes through it -- further ``write``s as whole chunks, and ``write_eof``'s last chunk
    ``0\\r\\n\\r\\n``. tests/gateway/test_gw_raw_stream.py checks the bytes on the wire.
    """
    resp.enable_chunked_encoding()
    writer = await resp.prepare(request)
    assert writer is not None
    await resp.write(first)
    return request.transport, writer


def may_end_outside(writer: AbstractStreamWriter) -> bool:
    """Whether the body's last chunk may be written past ``writer`` (then
    ``end_written_outside``): aiohttp's own chunked writer, not compressing, not ended,
    with the flag its ``write_eof`` returns early on (``_eof``). Another writer gets
    the last chunk through ``write_eof`` as before."""
    return (
        type(writer) is StreamWriter
        and writer.chunked
        and getattr(writer, "_compress", None) is None
        and getattr(writer, "_eof", None) is False
    )


async def end_written_outside(resp: web.StreamResponse, writer: AbstractStreamWriter) -> None:
    """The body's last chunk is on the wire already: mark ``writer`` ended so that
    ``write_eof`` (the response's bookkeeping, aiohttp's keep-alive) writes nothing more.
    tests/gateway/test_gw_raw_stream.py checks the wire has one last chunk."""
    writer._eof = True  # type: ignore[attr-defined]
    await resp.write_eof()


class RawClient:
    """Requests to ``http://`` replicas, on a pool of keep-alive connections."""

    def __init__(self, config: GatewayConfig, ends: StreamEnds) -> None:
        self.config = config
        self.ends = ends
        self.upstreams = UpstreamPool(config.upstream_keepalive_s, config.upstream_max_idle)
        self._origins: dict[str, Origin | None] = {}

    def origin(self, backend: Backend) -> Origin | None:
        """Where the raw client dials ``backend``; None when it does not speak its URL."""
        if backend.url in self._origins:
            return self._origins[backend.url]
        if len(self._origins) > 4096:
            self._origins.clear()
        origin = self._origins[backend.url] = origin_of(backend.url)
        return origin

    async def attempt(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        origin: Origin,
        target: str,
        body: bytes,
        headers: dict[str, str],
        t0: float,
    ) -> web.StreamResponse | Tried | None:
        """One attempt on ``backend``; None if the request cannot be written raw (a
        header value with a line break, which aiohttp's server refuses anyway)."""
        head = request_head(request.method, target, origin, headers, len(body))
        if head is None:  # pragma: no cover
            return None
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout_s
        conn: UpstreamConnection | None = None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    sent = await self._send(backend, origin, head + body)
                    if isinstance(sent, Tried):
                        return sent
                    conn = sent
                    up = conn.head
                    sse = (
                        up is not None
                        and is_sse(up.get("Content-Type"))
                        and up.status not in (204, 304)  # bodiless
                    )
                    while not sse and conn.error is None and not conn.done:
                        await conn.wait()  # anything else is read whole, as through aiohttp
            except TimeoutError:
                return timed_out(backend, self.config.request_timeout_s)
            if conn.error is not None or up is None:
                return failed(backend, Failure.DROPPED, f"broke: {conn.error!r}")
            if not sse:
                return whole(backend, up.status, up.headers, conn.take(), t0)
            attempt = Attempt(status=up.status, has_body=bool(conn.pieces))
            if fault_of(attempt) is not None:
                return Tried(attempt, bad_gateway(backend, f"answered {up.status}"))
            return await self._relay(
                request, route, backend, conn, up.status, up.headers, t0, deadline
            )
        finally:
            if conn is not None:
                self.upstreams.release(origin, conn)

    async def _send(
        self, backend: Backend, origin: Origin, data: bytes
    ) -> UpstreamConnection | Tried:
        """Send ``data`` and wait until the response started (its head and first payload,
        or its end) or broke. A pooled connection that broke before a single byte came
        back was closed by the replica while idle -- a race with its keep-alive timer,
        not a fault: the request goes once more, on a new connection."""
        pool = self.upstreams
        connect = pool.connect
        while True:
            try:
                conn = await connect(origin, self.config.connect_timeout_s)
            except TimeoutError:
                return failed(backend, Failure.CONNECT_TIMEOUT, "did not accept a connection")
            except OSError as exc:
                return failed(backend, Failure.CONNECT, f"failed: {exc!r}")
            try:
                conn.send(data)
                while not conn.started and conn.error is None:
                    await conn.wait()
            except BaseException:  # cancelled (client gone) or out of time: abort upstream
                conn.close()
                raise
            if conn.error is None or conn.received or not conn.reused:
                return conn
            conn.close()
            connect = pool.open

    async def _relay(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        conn: UpstreamConnection,
        status: int,
        headers: Iterable[tuple[str, str]],
        t0: float,
        deadline: float,
    ) -> web.StreamResponse:
        """Pass a started SSE body through until it ends. The head goes with what
        arrived so far in one write, and the body's last payload with the last chunk
        (``write_eof``): a stream that already ended is one write in all."""
        loop = asyncio.get_running_loop()
        ttfb = loop.time() - t0
        resp = HeldHeadResponse(status=status, headers=response_headers(headers, backend))
        broke: BaseException | None = None
        try:
            if conn.done:  # short answers, error streams: head, body and end at once
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                await resp.write_eof(conn.take())
                return self.ends.streamed(resp, route, backend, status, ttfb, t0)
            transport, writer = await start_raw_chunked_body(resp, request, conn.take())
            if transport is None:
                raise ConnectionResetError("the client went away")
            conn.relay_to(transport, ends=may_end_outside(writer))
            try:
                async with asyncio.timeout_at(deadline):
                    while not conn.client_gone:
                        if conn.need_drain:
                            await writer.drain()
                            conn.resume()
                        elif conn.error is not None or conn.done:
                            break
                        else:
                            await conn.wait()
            except TimeoutError as exc:
                broke = exc
            conn.detach()  # from here on only this handler writes to the client
            if conn.client_gone:
                raise ConnectionResetError("the client went away")
            if conn.ended:  # complete: the relay wrote the last payload with the last chunk
                await end_written_outside(resp, writer)
                return self.ends.streamed(resp, route, backend, status, ttfb, t0)
            broke = broke or conn.error
            if broke is not None:
                await resp.write(conn.take())  # what arrived before it broke
                return await self.ends.broken(resp, route, backend, broke, ttfb, t0)
            await resp.write_eof(conn.take())  # the last payload, with the last chunk
        except ConnectionResetError:  # the client went away: closing ``conn`` cancels upstream
            return self.ends.client_gone(resp, route, backend, ttfb, t0)
        return self.ends.streamed(resp, route, backend, status, ttfb, t0)
