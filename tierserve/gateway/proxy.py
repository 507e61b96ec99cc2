"""Forwarding one request to a replica: retries, streaming pass-through, failures.

- Non-streamed answers are read whole from the replica, then sent (so any
  failure before that is retryable).
- SSE answers (``text/event-stream``) are passed through chunk by chunk as the
  replica writes them; the client's response starts only once the replica's first
  chunk arrived, so a replica that dies before its first byte is retried too.
- What an attempt means is ``tierserve.policy.retry.decide_attempt``'s: replica
  faults (connection failures, timeouts, 502/503/504, a 5xx without a body) count
  toward the replica's ejection and, before the client got a byte, are retried on
  another replica (``retries`` times, not after a request timeout); any other
  answer -- a 500 that carries a body included -- goes to the client unchanged and
  is not held against the replica. After the first byte, a broken stream ends with
  an SSE error event and ``[DONE]``, never a hang.
- The client disconnecting cancels the handler (the runner sets
  ``handler_cancellation``): the attempt's cleanup closes the upstream connection,
  which cancels the request in the engine, and the request counts as code 499.
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
from tierserve.policy.retry import (
    Attempt,
    AttemptDecision,
    Failure,
    Fault,
    decide_attempt,
    fault_of,
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
class _Tried:
    """An attempt whose answer has not reached the client: what it came to, and what
    the client gets unless it is retried."""

    attempt: Attempt
    response: web.Response
    ttfb_s: float | None = None
    """Arrival to the replica's answer (None when nothing arrived)."""


def _response_headers(items: Iterable[tuple[str, str]], backend: Backend) -> dict[str, str]:
    headers = {k: v for k, v in items if k.lower() not in _DROP}
    headers[REPLICA_HEADER] = backend.replica
    return headers


def _is_sse(content_type: str) -> bool:
    return content_type.startswith("text/event-stream")


def upstream_target(request: web.Request) -> str:
    """The request-target the replica gets: the client's own in origin form, and the
    path and query of an absolute-form target (``POST http://host/v1/...``)."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    return request.rel_url.raw_path_qs or "/"


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
        self.upstreams = UpstreamPool(config.upstream_keepalive_s, config.upstream_max_idle)
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
        target = upstream_target(request)
        raw = stream and request.version == aiohttp.HttpVersion11
        tried: set[str] = set()
        last: _Tried | None = None
        last_backend: Backend | None = None
        decision: AttemptDecision | None = None
        backend: Backend | None = None
        try:
            for attempt in range(self.config.retries + 1):
                backend = self.balancer.pick(route, frozenset(tried))
                if backend is None:
                    break
                if decision is not None and decision.fault is not None:
                    self.metrics.retried(route.namespace, route.name, decision.fault.metric_reason)
                tried.add(backend.replica)
                self.balancer.started(backend.replica)
                try:
                    origin = self._origin(backend) if raw else None
                    if origin is not None:
                        result = await self._attempt_raw(
                            request, route, backend, origin, target, body, headers, t0
                        )
                    else:
                        result = await self._attempt(
                            request, route, backend, target, body, headers, t0
                        )
                finally:
                    self.balancer.finished(backend.replica)
                if not isinstance(result, _Tried):
                    return result  # relayed: judged and counted as it ended
                last, last_backend = result, backend
                decision = self._judge(
                    route, backend, result.attempt, self.config.retries - attempt
                )
                if not decision.retry:
                    break
        except asyncio.CancelledError:  # the client went away; the attempt closed upstream
            self._finished(route, backend, 499, None, t0)
            raise
        if last is None:  # the route had no Ready replica left to try
            self._finished(route, None, 503, None, t0)
            return error_response(
                503,
                f"No Ready replica of `{route.key}`.",
                headers={"Retry-After": str(self.config.retry_after_s)},
            )
        answered = decision is not None and decision.fault is None
        replica = last_backend.replica if answered and last_backend is not None else ""
        self._finished(route, last_backend, last.response.status, last.ttfb_s, t0, replica)
        return last.response

    def _judge(
        self, route: ServiceRoute, backend: Backend, attempt: Attempt, retries_left: int
    ) -> AttemptDecision:
        """The policy's decision on ``attempt``, applied to the outlier detector."""
        decision = decide_attempt(attempt, retries_left)
        if decision.fault is None:
            self.balancer.outliers.succeeded(backend.replica)
        else:
            self._eject(route, backend, decision.fault)
        return decision

    def _eject(self, route: ServiceRoute, backend: Backend, fault: Fault) -> None:
        backoff = self.balancer.outliers.failed(backend.replica, self.now())
        self.metrics.ejected(route.namespace, route.name, backend.replica)
        log.warning(
            "replica %s of %s ejected for %.1f s (%s)", backend.replica, route.key, backoff, fault
        )

    def _finished(
        self,
        route: ServiceRoute,
        backend: Backend | None,
        code: int,
        ttfb_s: float | None,
        t0: float,
        replica: str = "",
    ) -> None:
        tier = backend.tier if backend is not None else "none"
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(
            route.namespace, route.name, tier, code, ttfb_s, elapsed, replica=replica
        )

    def _url(self, backend: Backend, target: str) -> URL:
        key = (backend.url, target)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[key] = URL(backend.url + target, encoded=True)
        return url

    async def _attempt(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        target: str,
        body: bytes,
        headers: dict[str, str],
        t0: float,
    ) -> web.StreamResponse | _Tried:
        url = self._url(backend, target)
        try:
            up = await self.session.request(
                request.method, url, data=body, headers=headers, timeout=self.timeout
            )
        except aiohttp.ConnectionTimeoutError:
            return self._failed(backend, Failure.CONNECT_TIMEOUT, "did not accept a connection")
        except TimeoutError:
            return self._timed_out(backend)
        except aiohttp.ClientConnectorError as exc:
            return self._failed(backend, Failure.CONNECT, f"failed: {exc!r}")
        except aiohttp.ClientError as exc:
            return self._failed(backend, Failure.DROPPED, f"failed: {exc!r}")
        try:
            if _is_sse(up.headers.get("Content-Type", "")):
                return await self._stream(request, route, backend, up, t0)
            try:
                data = await up.read()
            except TimeoutError:
                return self._timed_out(backend)
            except aiohttp.ClientError as exc:
                return self._failed(backend, Failure.DROPPED, f"broke: {exc!r}")
            return self._whole(backend, up.status, up.headers.items(), data, t0)
        finally:
            up.close()  # no-op after a full read; aborts the engine's request otherwise

    def _whole(
        self,
        backend: Backend,
        status: int,
        headers: Iterable[tuple[str, str]],
        data: bytes,
        t0: float,
    ) -> _Tried:
        """A response read whole: passed on as it is, unless it is retried."""
        resp = web.Response(body=data, status=status, headers=_response_headers(headers, backend))
        ttfb = asyncio.get_running_loop().time() - t0
        return _Tried(Attempt(status=status, has_body=bool(data)), resp, ttfb)

    async def _stream(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        up: aiohttp.ClientResponse,
        t0: float,
    ) -> web.StreamResponse | _Tried:
        loop = asyncio.get_running_loop()
        content = up.content
        try:
            first = await content.readany()
        except TimeoutError:
            return self._timed_out(backend)
        except aiohttp.ClientError as exc:
            return self._failed(backend, Failure.DROPPED, f"broke: {exc!r}")
        attempt = Attempt(status=up.status, has_body=bool(first))
        if fault_of(attempt) is not None:
            return _Tried(attempt, self._bad_gateway(backend, f"answered {up.status}"))
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
        target: str,
        body: bytes,
        headers: dict[str, str],
        t0: float,
    ) -> web.StreamResponse | _Tried:
        """``_attempt`` through the raw client: the same outcomes, a cheaper SSE relay."""
        head = request_head(request.method, target, origin, headers, len(body))
        if head is None:  # pragma: no cover - aiohttp's server refuses such header values
            return await self._attempt(request, route, backend, target, body, headers, t0)
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout_s
        conn: UpstreamConnection | None = None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    sent = await self._send_raw(backend, origin, head + body)
                    if isinstance(sent, _Tried):
                        return sent
                    conn = sent
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
                return self._failed(backend, Failure.DROPPED, f"broke: {conn.error!r}")
            if not sse:
                return self._whole(backend, up.status, up.headers, conn.take(), t0)
            attempt = Attempt(status=up.status, has_body=bool(conn.pieces))
            if fault_of(attempt) is not None:
                return _Tried(attempt, self._bad_gateway(backend, f"answered {up.status}"))
            return await self._relay(
                request, route, backend, conn, up.status, up.headers, t0, deadline
            )
        finally:
            if conn is not None:
                self.upstreams.release(origin, conn)

    async def _send_raw(
        self, backend: Backend, origin: Origin, data: bytes
    ) -> UpstreamConnection | _Tried:
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
                return self._failed(backend, Failure.CONNECT_TIMEOUT, "did not accept a connection")
            except OSError as exc:
                return self._failed(backend, Failure.CONNECT, f"failed: {exc!r}")
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
        timed_out = isinstance(exc, TimeoutError)
        failure = Failure.TIMEOUT if timed_out else Failure.DROPPED
        self._judge(route, backend, Attempt(failure=failure, client_has_bytes=True), 0)
        code = 504 if timed_out else 502
        await resp.write(sse_error_event(code, f"Replica {backend.replica} stream broke: {exc!r}"))
        await resp.write_eof()
        self._finished(route, backend, code, ttfb, t0)  # last: a cancel before it is a 499
        return resp

    def _client_gone(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        self._finished(route, backend, 499, ttfb, t0)
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
        self.balancer.outliers.succeeded(backend.replica)  # an answer (decided before relaying)
        self._finished(route, backend, status, ttfb, t0, backend.replica)
        return resp

    def _bad_gateway(self, backend: Backend, what: str) -> web.Response:
        return error_response(502, f"Replica {backend.replica} {what}.")

    def _failed(self, backend: Backend, failure: Failure, what: str) -> _Tried:
        """The replica refused, dropped or broke the connection: 502."""
        return _Tried(Attempt(failure=failure), self._bad_gateway(backend, what))

    def _timed_out(self, backend: Backend) -> _Tried:
        """The request's whole time is used up: 504 (never retried)."""
        response = error_response(
            504,
            f"Replica {backend.replica} did not answer within {self.config.request_timeout_s:g} s.",
        )
        return _Tried(Attempt(failure=Failure.TIMEOUT), response)
