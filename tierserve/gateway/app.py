"""The gateway's aiohttp application: OpenAI routes in front, replicas behind.

``create_gateway_app(table, config)`` is what the embedded control plane calls;
it keeps ``table`` and updates it with ``table.set_routes``. Routes:
``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``, ``GET /metrics``; anything else answers 404 in OpenAI's error
shape. Run it with ``tierserve.gateway.run.serve_app`` (which turns on handler
cancellation so a client disconnect cancels the upstream request).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tierserve.errors import NotFoundError, RetryLater
from tierserve.gateway.balancer import Balancer
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.errors import error_response, model_not_found, response_for
from tierserve.gateway.held import wait_until_ready
from tierserve.gateway.limits import check_api_key, parse_payload, read_body
from tierserve.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from tierserve.gateway.proxy import Forwarder
from tierserve.gateway.table import RouteTable, ServiceRoute
from tierserve.policy.outlier import OutlierDetector
from tierserve.policy.routing import routing_policy


@dataclass
class GatewayState:
    """What the handlers share; ``forwarder`` exists while the app runs."""

    table: RouteTable
    config: GatewayConfig
    balancer: Balancer
    metrics: GatewayMetrics
    now: Callable[[], float]
    started_s: int = field(default_factory=lambda: int(time.time()))
    forwarder: Forwarder | None = None
    arrivals: dict[tuple[str, str], int] = field(default_factory=dict)
    """Requests routed to each (namespace, service) since the gateway started."""

    # What the autoscaler reads of the gateway (``policy.signals.GatewayView``).

    def in_flight(self, replica: str) -> int:
        """Requests in flight to ``replica`` now."""
        return self.balancer.in_flight.get(replica, 0)

    def ttft_quantile(self, replica: str, q: float, window_s: float, now: float) -> float | None:
        """The ``q`` quantile of ``replica``'s TTFTs in the ``window_s`` before ``now``."""
        return self.metrics.ttft_quantile(replica, q, window_s, now)

    def arrived(self, namespace: str, service: str) -> int:
        """Requests routed to the service so far (a counter: the load is its rate)."""
        return self.arrivals.get((namespace, service), 0)

    def service_ttft_quantile(
        self, namespace: str, service: str, q: float, window_s: float, now: float
    ) -> float | None:
        """The ``q`` quantile of the service's TTFTs in the ``window_s`` before ``now``."""
        return self.metrics.service_ttft_quantile(namespace, service, q, window_s, now)


GATEWAY_STATE = web.AppKey("tierserve_gateway_state", GatewayState)


def create_gateway_app(
    table: RouteTable,
    config: GatewayConfig | None = None,
    *,
    now: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The gateway as an aiohttp app over ``table`` (``now``: monotonic seconds, injected)."""
    config = config or GatewayConfig()
    balancer = Balancer(
        routing_policy(config.policy, config.slow_start_s),
        OutlierDetector(config.eject_base_s, config.eject_max_s),
        now,
    )
    state = GatewayState(table, config, balancer, GatewayMetrics(table, balancer, now), now)
    # Bodies are size-checked by ``read_body``; aiohttp's own limit only backs it up.
    app = web.Application(client_max_size=config.max_body_bytes + 1)
    app[GATEWAY_STATE] = state
    app.cleanup_ctx.append(_upstream_session)
    app.router.add_post("/v1/chat/completions", _completions)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    state = app[GATEWAY_STATE]
    connector = aiohttp.TCPConnector(
        limit=0, keepalive_timeout=state.config.upstream_keepalive_s, ttl_dns_cache=300
    )
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    )
    forwarder = Forwarder(session, state.config, state.balancer, state.metrics, state.now)
    state.forwarder = forwarder
    yield
    state.forwarder = None
    forwarder.upstreams.close()
    await session.close()


def _route_for(
    table: RouteTable, host: str | None, payload: dict[str, Any]
) -> ServiceRoute | web.Response:
    """By ``Host`` first (``<name>-<namespace>.example.com``), else by ``model``."""
    route = table.by_host(host)
    if route is not None:
        return route
    model = payload.get("model")
    if model is None:
        if len(table.routes) == 1:  # one service: as a plain ``vllm serve`` would
            return table.routes[0]
        names = ", ".join(table.model_names()) or "none yet"
        return error_response(
            400,
            f"Field required: `model` (one of: {names}), or a service's Host header.",
            "model",
            "Bad Request",
        )
    route = table.by_model(model)
    if route is None:
        return response_for(model_not_found(model))
    return route


async def _completions(request: web.Request) -> web.StreamResponse:
    state = request.app[GATEWAY_STATE]
    config = state.config
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    denied = check_api_key(request, config.api_keys)
    if denied is not None:
        return denied
    body = await read_body(request, config.max_body_bytes, config.client_body_timeout_s)
    if isinstance(body, web.Response):
        return body
    payload = parse_payload(body)
    if isinstance(payload, web.Response):
        return payload
    route = _route_for(state.table, _host(request), payload)
    if isinstance(route, web.Response):
        return route
    key = (route.namespace, route.name)
    state.arrivals[key] = state.arrivals.get(key, 0) + 1
    state.metrics.arrived(*key)
    if not route.has_ready():
        try:
            held = await _hold(state, route)
        except asyncio.CancelledError:  # the client went away while held
            state.metrics.finished(route.namespace, route.name, "none", 499, None, loop.time() - t0)
            raise
        if isinstance(held, web.Response):
            state.metrics.finished(
                route.namespace, route.name, "none", held.status, None, loop.time() - t0
            )
            return held
        route = held
    forwarder = state.forwarder
    if forwarder is None:  # pragma: no cover - only between cleanup and shutdown
        return error_response(503, "The gateway is shutting down.")
    return await forwarder.forward(request, route, body, t0)


def _host(request: web.Request) -> str | None:
    """The host to route by: the target's authority for an absolute-form request
    (``POST http://host/v1/...``, which RFC 9112 section 3.2.2 says wins over ``Host``),
    else the ``Host`` header."""
    if request.raw_path.startswith("/"):
        return request.headers.get("Host")
    return request.url.host


async def _hold(state: GatewayState, route: ServiceRoute) -> ServiceRoute | web.Response:
    """Wait for a Ready replica (scale from zero / cold start), counted in metrics."""
    key, held = route.key, state.metrics.held
    held[key] = held.get(key, 0) + 1
    config = state.config
    try:
        ready = await wait_until_ready(
            state.table, key, config.hold_timeout_s, config.retry_after_s
        )
    except (RetryLater, NotFoundError) as exc:
        state.metrics.hold_ended(route.namespace, route.name, "timeout")
        return response_for(exc, config.retry_after_s)
    finally:
        held[key] -= 1
    state.metrics.hold_ended(route.namespace, route.name, "served")
    return ready


async def _models(request: web.Request) -> web.Response:
    state = request.app[GATEWAY_STATE]
    denied = check_api_key(request, state.config.api_keys)
    if denied is not None:
        return denied
    data = [
        {
            "id": name,
            "object": "model",
            "created": state.started_s,
            "owned_by": "tierserve",
            "root": name,
            "parent": None,
            "service": route.key,
        }
        for route in state.table.routes
        for name in route.model_names
    ]
    return web.Response(
        body=json.dumps({"object": "list", "data": data}).encode(),
        content_type="application/json",
    )


async def _health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY_STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, f"No route for {request.method} {request.path}.")
