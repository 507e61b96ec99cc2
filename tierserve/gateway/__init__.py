"""The OpenAI-compatible gateway: host/model routing, tier-aware balancing, streaming,
retries, outlier ejection and holding requests during cold start.

What the control plane calls::

    table = RouteTable()
    app = create_gateway_app(table, GatewayConfig(hold_timeout_s=60))
    task = asyncio.create_task(serve_app(app, "127.0.0.1", 8000))
    table.set_routes([ServiceRoute("default", "deepseek", model_names=("deepseek-r1",),
                                   backends=(Backend("deepseek-predictor-0",
                                                     "http://127.0.0.1:8001"),))])

See docs/gateway.md.
"""

from tierserve.gateway.app import GATEWAY_STATE, GatewayState, create_gateway_app
from tierserve.gateway.config import DEFAULT_GATEWAY_PORT, GatewayConfig
from tierserve.gateway.routes import dump_routes, parse_routes, parse_routes_text
from tierserve.gateway.run import RouteSourceSpec, run_gateway, serve_app, serve_standalone
from tierserve.gateway.sources import (
    FileRouteSource,
    RouteSource,
    StaticRouteSource,
    UrlRouteSource,
    follow,
    refresh,
)
from tierserve.gateway.table import Backend, RouteTable, ServiceRoute

__all__ = [
    "DEFAULT_GATEWAY_PORT",
    "GATEWAY_STATE",
    "Backend",
    "FileRouteSource",
    "GatewayConfig",
    "GatewayState",
    "RouteSource",
    "RouteSourceSpec",
    "RouteTable",
    "ServiceRoute",
    "StaticRouteSource",
    "UrlRouteSource",
    "create_gateway_app",
    "dump_routes",
    "follow",
    "parse_routes",
    "parse_routes_text",
    "refresh",
    "run_gateway",
    "serve_app",
    "serve_standalone",
]
