"""Forwarding one request to a replica: retries, streaming pass-through, failures.

- Non-streamed answers are read whole from the replica, then sent (so any
  failure before that is retryable).
- SSE answers (``text/event-stream``) are passed through chunk by chunk as the
  replica writes them; the client's response starts only once the replica's first
  chunk arrived, so a replica that dies before its first byte is retried too.
- A connection failure, connect timeout or 5xx before the client got a byte is
  retried on another replica (``retries`` times) and ejects the replica
  (outlier detection). After the first byte, a broken stream ends with an SSE
  error event and ``[DONE]``, never a hang.
- The client disconnecting cancels the handler (the runner sets
  ``handler_cancellation``), which closes the upstream connection, which cancels
  the request in the engine.
- Streamed requests (``"stream": true``) from HTTP/1.1 clients to ``http://``
  replicas go through the raw client of ``upstream.py``, which relays the SSE body
  without a coroutine per chunk; everything else goes through aiohttp's client.
  Both paths answer alike (same headers, retries, errors and metrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from yarl import URL

from tierserve.gateway.balancer import Balancer
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.errors import error_response, sse_error_event
from tierserve.gateway.metrics import GatewayMetrics
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.gateway.upstream import (
    Origin,
    UpstreamConnection,
    UpstreamPool,
    origin_of,
    request_head,
)

log = logging.getLogger(__name__)

# Hop-by-hop and framing headers the gateway sets itself.
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)
REPLICA_HEADER = "X-Tierserve-Replica"


@dataclass(frozen=True, slots=True)
class _Failure:
    """A retryable failure before any byte reached the client."""

    reason: str  # connect | 5xx | timeout
    response: web.Response
    retryable: bool = True
    """A timeout already used the request's whole time: not retried."""


def _response_headers(items: Iterable[tuple[str, str]], backend: Backend) -> dict[str, str]:
    headers = {k: v for k, v in items if k.lower() not in _DROP}
    headers[REPLICA_HEADER] = backend.replica
    return headers


def _is_sse(content_type: str) -> bool:
    return content_type.startswith("text/event-stream")


async def start_raw_chunked_body(
    resp: web.StreamResponse, request: web.Request
) -> tuple[asyncio.Transport | None, AbstractStreamWriter]:
    """Send ``resp``'s head, chunked, and return the client transport that body bytes
    already framed as whole chunks may be written to directly (``None`` if the client
    is gone), and the writer to drain it with.

    The one place that steps around aiohttp's writer: it relies on the head being on the
    wire once this returns (``write(b"")`` flushes a head aiohttp would otherwise hold
    back for the first body bytes) and on aiohttp framing only what goes through it --
    further ``write``s as whole chunks, and ``write_eof``'s last chunk ``0\\r\\n\\r\\n``.
    tests/gateway/test_gw_raw_stream.py checks the bytes on the wire.
    """
    resp.enable_chunked_encoding()
    writer = await resp.prepare(request)
    assert writer is not None
    await resp.write(b"")
    return request.transport, writer


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: GatewayConfig,
        balancer: Balancer,
        metrics: GatewayMetrics,
        now: Callable[[], float],
        keepalive_s: float = 4.0,
    ) -> None:
        self.session = session
        self.config = config
        self.balancer = balancer
        self.metrics = metrics
        self.now = now
        self.timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s, sock_connect=config.connect_timeout_s
        )
        # Parsing a URL costs more than the rest of the routing choice: parse each
        # (replica, path) once. Bounded: few replicas times few API paths.
        self._urls: dict[tuple[str, str], URL] = {}
        self.upstreams = UpstreamPool(keepalive_s)
        self._origins: dict[str, Origin | None] = {}

    def upstream_headers(self, request: web.Request) -> dict[str, str]:
        # The gateway parsed the body as JSON, so say so even if the client did not.
        headers = {"Content-Type": "application/json"}
        accept = request.headers.get("Accept")
        if accept:
            headers["Accept"] = accept
        if not self.config.api_keys:  # the client's key is for the engine, not for us
            auth = request.headers.get("Authorization")
            if auth:
                headers["Authorization"] = auth
        rid = request.headers.get("X-Request-Id")
        if rid:
            headers["X-Request-Id"] = rid
        return headers

    async def forward(
        self,
        request: web.Request,
        route: ServiceRoute,
        body: bytes,
        t0: float,
        *,
        stream: bool = False,
    ) -> web.StreamResponse:
        """Send to the best replica, retrying on another one before the first byte
        (``stream``: the client asked for SSE, which takes the raw relay when it can)."""
        headers = self.upstream_headers(request)
        raw = stream and request.version == aiohttp.HttpVersion11
        tried: set[str] = set()
        failure: _Failure | None = None
        backend: Backend | None = None
        for attempt in range(self.config.retries + 1):
            backend = self.balancer.pick(route, frozenset(tried))
            if backend is None:
                break
            if attempt:
                assert failure is not None
                self.metrics.retried(route.namespace, route.name, failure.reason)
            tried.add(backend.replica)
            self.balancer.started(backend.replica)
            try:
                origin = self._origin(backend) if raw else None
                if origin is not None:
                    result = await self._attempt_raw(
                        request, route, backend, origin, body, headers, t0
                    )
                else:
                    result = await self._attempt(request, route, backend, body, headers, t0)
            finally:
                self.balancer.finished(backend.replica)
            if not isinstance(result, _Failure):
                return result
            failure = result
            self._eject(route, backend, failure.reason)
            if not failure.retryable:
                break
        tier = backend.tier if backend is not None else "none"
        if failure is None:  # the route had no Ready replica left to try
            resp = error_response(
                503,
                f"No Ready replica of `{route.key}`.",
                headers={"Retry-After": str(self.config.retry_after_s)},
            )
        else:
            resp = failure.response
        self.metrics.finished(
            route.namespace,
            route.name,
            tier,
            resp.status,
            None,
            asyncio.get_running_loop().time() - t0,
        )
        return resp

    def _eject(self, route: ServiceRoute, backend: Backend, reason: str) -> None:
        backoff = self.balancer.outliers.failed(backend.replica, self.now())
        self.metrics.ejected(route.namespace, route.name, backend.replica)
        log.warning(
            "replica %s of %s ejected for %.1f s (%s)", backend.replica, route.key, backoff, reason
        )

    async def _attempt(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        body: bytes,
        headers: dict[str, str],
        t0: float,
    ) -> web.StreamResponse | _Failure:
        key = (backend.url, request.raw_path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[key] = URL(backend.url + request.raw_path, encoded=True)
        try:
            up = await self.session.request(
                request.method, url, data=body, headers=headers, timeout=self.timeout
            )
        except aiohttp.ConnectionTimeoutError:
            return self._unreachable(backend, "did not accept a connection")
        except TimeoutError:
            return self._timed_out(backend)
        except aiohttp.ClientError as exc:
            return self._unreachable(backend, f"failed: {exc!r}")
        try:
            if _is_sse(up.headers.get("Content-Type", "")):
                return await self._stream(request, route, backend, up, t0)
            try:
                data = await up.read()
            except TimeoutError:
                return self._timed_out(backend)
            except aiohttp.ClientError as exc:
                return self._unreachable(backend, f"broke: {exc!r}")
            return self._whole(route, backend, up.status, up.headers.items(), data, t0)
        finally:
            up.close()  # no-op after a full read; aborts the engine's request otherwise

    def _whole(
        self,
        route: ServiceRoute,
        backend: Backend,
        status: int,
        headers: Iterable[tuple[str, str]],
        data: bytes,
        t0: float,
    ) -> web.Response | _Failure:
        """A response read whole: passed on, or a retryable 5xx."""
        resp = web.Response(body=data, status=status, headers=_response_headers(headers, backend))
        if status >= 500:
            return _Failure("5xx", resp)
        self.balancer.outliers.succeeded(backend.replica)
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(
            route.namespace,
            route.name,
            backend.tier,
            status,
            elapsed,
            elapsed,
            replica=backend.replica,
        )
        return resp

    async def _stream(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        up: aiohttp.ClientResponse,
        t0: float,
    ) -> web.StreamResponse | _Failure:
        loop = asyncio.get_running_loop()
        content = up.content
        try:
            first = await content.readany()
        except TimeoutError:
            return self._timed_out(backend)
        except aiohttp.ClientError as exc:
            return self._unreachable(backend, f"broke: {exc!r}")
        if up.status >= 500:
            return _Failure("5xx", self._bad_gateway(backend, f"answered {up.status}"))
        ttfb = loop.time() - t0
        resp = web.StreamResponse(
            status=up.status, headers=_response_headers(up.headers.items(), backend)
        )
        await resp.prepare(request)
        chunk = first
        try:
            while chunk:
                await resp.write(chunk)
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    return await self._broken(resp, route, backend, exc, ttfb, t0)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away: closing ``up`` cancels upstream
            return self._client_gone(resp, route, backend, ttfb, t0)
        return self._streamed(resp, route, backend, up.status, ttfb, t0)

    def _origin(self, backend: Backend) -> Origin | None:
        if backend.url in self._origins:
            return self._origins[backend.url]
        if len(self._origins) > 4096:
            self._origins.clear()
        origin = self._origins[backend.url] = origin_of(backend.url)
        return origin

    async def _attempt_raw(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        origin: Origin,
        body: bytes,
        headers: dict[str, str],
        t0: float,
    ) -> web.StreamResponse | _Failure:
        """``_attempt`` through the raw client: the same outcomes, a cheaper SSE relay."""
        head = request_head(request.method, request.raw_path, origin, headers, len(body))
        if head is None:  # pragma: no cover - aiohttp's server refuses such header values
            return await self._attempt(request, route, backend, body, headers, t0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout_s
        try:
            conn = await self.upstreams.connect(origin, self.config.connect_timeout_s)
        except TimeoutError:
            return self._unreachable(backend, "did not accept a connection")
        except OSError as exc:
            return self._unreachable(backend, f"failed: {exc!r}")
        try:
            conn.send(head + body)
            try:
                async with asyncio.timeout_at(deadline):
                    while not conn.started and conn.error is None:
                        await conn.wait()
                    up = conn.head
                    sse = (
                        up is not None
                        and _is_sse(up.get("Content-Type"))
                        and up.status not in (204, 304)  # bodiless
                    )
                    while not sse and conn.error is None and not conn.done:
                        await conn.wait()  # anything else is read whole, as through aiohttp
            except TimeoutError:
                return self._timed_out(backend)
            if conn.error is not None or up is None:
                return self._unreachable(backend, f"broke: {conn.error!r}")
            if not sse:
                return self._whole(route, backend, up.status, up.headers, conn.take(), t0)
            if up.status >= 500:
                return _Failure("5xx", self._bad_gateway(backend, f"answered {up.status}"))
            return await self._relay(
                request, route, backend, conn, up.status, up.headers, t0, deadline
            )
        finally:
            self.upstreams.release(origin, conn)

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
        """Pass a started SSE body through until it ends (as ``_stream``)."""
        loop = asyncio.get_running_loop()
        ttfb = loop.time() - t0
        resp = web.StreamResponse(status=status, headers=_response_headers(headers, backend))
        transport, writer = await start_raw_chunked_body(resp, request)
        broke: BaseException | None = None
        try:
            if transport is None:
                raise ConnectionResetError("the client went away")
            conn.relay_to(transport)
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
            broke = broke or conn.error
            if broke is not None:
                return await self._broken(resp, route, backend, broke, ttfb, t0)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away: closing ``conn`` cancels upstream
            return self._client_gone(resp, route, backend, ttfb, t0)
        return self._streamed(resp, route, backend, status, ttfb, t0)

    async def _broken(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        exc: BaseException,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        """The client already has bytes: end the stream with an SSE error event."""
        self._eject(route, backend, "stream broke")
        code = 504 if isinstance(exc, TimeoutError) else 502
        await resp.write(sse_error_event(code, f"Replica {backend.replica} stream broke: {exc!r}"))
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(route.namespace, route.name, backend.tier, code, ttfb, elapsed)
        await resp.write_eof()
        return resp

    def _client_gone(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(route.namespace, route.name, backend.tier, 499, ttfb, elapsed)
        return resp

    def _streamed(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        status: int,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        self.balancer.outliers.succeeded(backend.replica)
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(
            route.namespace, route.name, backend.tier, status, ttfb, elapsed,
            replica=backend.replica,
        )  # fmt: skip
        return resp

    def _bad_gateway(self, backend: Backend, what: str) -> web.Response:
        return error_response(502, f"Replica {backend.replica} {what}.")

    def _unreachable(self, backend: Backend, what: str) -> _Failure:
        """The replica refused, dropped or broke the connection: 502, retryable."""
        return _Failure("connect", self._bad_gateway(backend, what))

    def _timed_out(self, backend: Backend) -> _Failure:
        """The request's whole time is used up: 504, never retried."""
        response = error_response(
            504,
            f"Replica {backend.replica} did not answer within {self.config.request_timeout_s:g} s.",
        )
        return _Failure("timeout", response, retryable=False)
