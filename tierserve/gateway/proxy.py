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
- Requests from HTTP/1.1 clients to ``http://`` replicas, streamed or not, go
  through ``rawpath.RawClient``: a request head written in one piece on a pooled
  connection, an answer read whole or an SSE body relayed without a coroutine per
  chunk. HTTP/1.0 clients and ``https://`` replicas go through aiohttp's client
  (here), which costs more CPU per request (docs/gateway.md). Both paths answer
  alike (same headers, retries, errors and metrics): each attempt ends in an
  ``attempt.Tried`` (judged here) or a relayed stream (ended here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

from tierserve.gateway.attempt import (
    REPLICA_HEADER,
    Tried,
    bad_gateway,
    failed,
    is_sse,
    response_headers,
    timed_out,
    upstream_target,
    whole,
)
from tierserve.gateway.balancer import Balancer
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.errors import error_response, sse_error_event
from tierserve.gateway.metrics import GatewayMetrics
from tierserve.gateway.pool import UpstreamPool
from tierserve.gateway.rawpath import RawClient
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.policy.retry import (
    Attempt,
    AttemptDecision,
    Failure,
    Fault,
    decide_attempt,
    fault_of,
)

__all__ = ["REPLICA_HEADER", "Forwarder"]

log = logging.getLogger(__name__)


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
        self.raw = RawClient(config, self)

    @property
    def upstreams(self) -> UpstreamPool:
        """The raw path's keep-alive pool."""
        return self.raw.upstreams

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
    ) -> web.StreamResponse:
        """Send to the best replica, retrying on another one before the first byte.
        HTTP/1.1 clients take the raw path, streamed or not; an HTTP/1.0 client takes
        aiohttp's client, which can pass it an SSE body without chunked framing."""
        headers = self.upstream_headers(request)
        target = upstream_target(request)
        raw = request.version == aiohttp.HttpVersion11
        tried: set[str] = set()
        last: Tried | None = None
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
                    origin = self.raw.origin(backend) if raw else None
                    result = None
                    if origin is not None:
                        result = await self.raw.attempt(
                            request, route, backend, origin, target, body, headers, t0
                        )
                    if result is None:
                        result = await self._attempt(
                            request, route, backend, target, body, headers, t0
                        )
                finally:
                    self.balancer.finished(backend.replica)
                if not isinstance(result, Tried):
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
        streamed: bool = False,
    ) -> None:
        tier = backend.tier if backend is not None else "none"
        elapsed = asyncio.get_running_loop().time() - t0
        self.metrics.finished(
            route.namespace,
            route.name,
            tier,
            code,
            ttfb_s,
            elapsed,
            replica=replica,
            streamed=streamed,
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
    ) -> web.StreamResponse | Tried:
        url = self._url(backend, target)
        try:
            up = await self.session.request(
                request.method, url, data=body, headers=headers, timeout=self.timeout
            )
        except aiohttp.ConnectionTimeoutError:
            return failed(backend, Failure.CONNECT_TIMEOUT, "did not accept a connection")
        except TimeoutError:
            return timed_out(backend, self.config.request_timeout_s)
        except aiohttp.ClientConnectorError as exc:
            return failed(backend, Failure.CONNECT, f"failed: {exc!r}")
        except aiohttp.ClientError as exc:
            return failed(backend, Failure.DROPPED, f"failed: {exc!r}")
        try:
            if is_sse(up.headers.get("Content-Type", "")):
                return await self._stream(request, route, backend, up, t0)
            try:
                data = await up.read()
            except TimeoutError:
                return timed_out(backend, self.config.request_timeout_s)
            except aiohttp.ClientError as exc:
                return failed(backend, Failure.DROPPED, f"broke: {exc!r}")
            return whole(backend, up.status, up.headers.items(), data, t0)
        finally:
            up.close()  # no-op after a full read; aborts the engine's request otherwise

    async def _stream(
        self,
        request: web.Request,
        route: ServiceRoute,
        backend: Backend,
        up: aiohttp.ClientResponse,
        t0: float,
    ) -> web.StreamResponse | Tried:
        loop = asyncio.get_running_loop()
        content = up.content
        try:
            first = await content.readany()
        except TimeoutError:
            return timed_out(backend, self.config.request_timeout_s)
        except aiohttp.ClientError as exc:
            return failed(backend, Failure.DROPPED, f"broke: {exc!r}")
        attempt = Attempt(status=up.status, has_body=bool(first))
        if fault_of(attempt) is not None:
            return Tried(attempt, bad_gateway(backend, f"answered {up.status}"))
        ttfb = loop.time() - t0
        resp = web.StreamResponse(
            status=up.status, headers=response_headers(up.headers.items(), backend)
        )
        if request.version < aiohttp.HttpVersion11:
            # No chunked framing for HTTP/1.0: the body ends when the connection closes
            # (aiohttp would keep a keep-alive client's connection open, and it would hang).
            resp.force_close()
        await resp.prepare(request)
        chunk = first
        try:
            while chunk:
                await resp.write(chunk)
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    return await self.broken(resp, route, backend, exc, ttfb, t0)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away: closing ``up`` cancels upstream
            return self.client_gone(resp, route, backend, ttfb, t0)
        return self.streamed(resp, route, backend, up.status, ttfb, t0)

    # ------------------------------------------------------------ how streams end

    async def broken(
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

    def client_gone(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        self._finished(route, backend, 499, ttfb, t0)
        return resp

    def streamed(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        status: int,
        ttfb: float,
        t0: float,
    ) -> web.StreamResponse:
        self.balancer.outliers.succeeded(backend.replica)  # an answer (decided before relaying)
        self._finished(route, backend, status, ttfb, t0, backend.replica, streamed=True)
        return resp
