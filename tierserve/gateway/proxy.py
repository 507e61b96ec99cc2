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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from tierserve.gateway.balancer import Balancer
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.errors import error_response, sse_error_event
from tierserve.gateway.metrics import GatewayMetrics
from tierserve.gateway.table import Backend, ServiceRoute

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


def _response_headers(up: aiohttp.ClientResponse, backend: Backend) -> dict[str, str]:
    headers = {k: v for k, v in up.headers.items() if k.lower() not in _DROP}
    headers[REPLICA_HEADER] = backend.replica
    return headers


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
        self, request: web.Request, route: ServiceRoute, body: bytes, t0: float
    ) -> web.StreamResponse:
        """Send to the best replica, retrying on another one before the first byte."""
        headers = self.upstream_headers(request)
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
            return _Failure("connect", self._bad_gateway(backend, "did not accept a connection"))
        except TimeoutError:
            return _Failure("timeout", self._timed_out(backend), retryable=False)
        except aiohttp.ClientError as exc:
            return _Failure("connect", self._bad_gateway(backend, f"failed: {exc!r}"))
        try:
            if up.headers.get("Content-Type", "").startswith("text/event-stream"):
                return await self._stream(request, route, backend, up, t0)
            try:
                data = await up.read()
            except TimeoutError:
                return _Failure("timeout", self._timed_out(backend), retryable=False)
            except aiohttp.ClientError as exc:
                return _Failure("connect", self._bad_gateway(backend, f"broke: {exc!r}"))
            resp = web.Response(body=data, status=up.status, headers=_response_headers(up, backend))
            if up.status >= 500:
                return _Failure("5xx", resp)
            self.balancer.outliers.succeeded(backend.replica)
            elapsed = asyncio.get_running_loop().time() - t0
            self.metrics.finished(
                route.namespace,
                route.name,
                backend.tier,
                up.status,
                elapsed,
                elapsed,
                replica=backend.replica,
            )
            return resp
        finally:
            up.close()  # no-op after a full read; aborts the engine's request otherwise

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
            return _Failure("timeout", self._timed_out(backend), retryable=False)
        except aiohttp.ClientError as exc:
            return _Failure("connect", self._bad_gateway(backend, f"broke: {exc!r}"))
        if up.status >= 500:
            return _Failure("5xx", self._bad_gateway(backend, f"answered {up.status}"))
        ttfb = loop.time() - t0
        resp = web.StreamResponse(status=up.status, headers=_response_headers(up, backend))
        await resp.prepare(request)
        chunk = first
        try:
            while chunk:
                await resp.write(chunk)
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # The client already has bytes: end the stream with an error event.
                    self._eject(route, backend, "stream broke")
                    status = 504 if isinstance(exc, TimeoutError) else 502
                    await resp.write(
                        sse_error_event(status, f"Replica {backend.replica} stream broke: {exc!r}")
                    )
                    self.metrics.finished(
                        route.namespace, route.name, backend.tier, status, ttfb, loop.time() - t0
                    )
                    await resp.write_eof()
                    return resp
            await resp.write_eof()
        except ConnectionResetError:  # the client went away: closing ``up`` cancels upstream
            self.metrics.finished(
                route.namespace, route.name, backend.tier, 499, ttfb, loop.time() - t0
            )
            return resp
        self.balancer.outliers.succeeded(backend.replica)
        self.metrics.finished(
            route.namespace,
            route.name,
            backend.tier,
            up.status,
            ttfb,
            loop.time() - t0,
            replica=backend.replica,
        )
        return resp

    def _bad_gateway(self, backend: Backend, what: str) -> web.Response:
        return error_response(502, f"Replica {backend.replica} {what}.")

    def _timed_out(self, backend: Backend) -> web.Response:
        return error_response(
            504,
            f"Replica {backend.replica} did not answer within {self.config.request_timeout_s:g} s.",
        )
