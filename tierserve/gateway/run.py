"""Running the gateway: one process, or ``--workers N`` processes on one port (SO_REUSEPORT).

- ``serve_app(app, host, port)``: run an app until cancelled (the embedded
  control plane calls this with the app from ``create_gateway_app``).
- ``run_gateway(config, source, host, port, workers)``: the standalone gateway of
  ``tierserve gateway``. Each worker is its own process with its own event loop,
  its own route table fed by the ``RouteSourceSpec`` (file or URL) and its own
  metrics; the kernel spreads connections over the workers' listening sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tierserve.aio import loop_factory, tune_gc_for_serving
from tierserve.errors import ExternalError, FieldError, ValidationError
from tierserve.gateway.app import GATEWAY_STATE, create_gateway_app
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.connection import connection_factory
from tierserve.gateway.listener import Listener, bind_sockets
from tierserve.gateway.sources import (
    FileRouteSource,
    RouteSource,
    UrlRouteSource,
    follow,
    refresh,
)
from tierserve.gateway.table import RouteTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteSourceSpec:
    """Where a standalone gateway reads routes; picklable so each worker builds its own."""

    routes_file: str | None = None
    routes_url: str | None = None
    routes_token: str | None = None
    poll_interval_s: float = 1.0
    factory: Callable[[], RouteSource] | None = None
    """Builds another kind of source (``--discovery kubernetes``: the caller's, so the
    gateway needs no body); a picklable callable, one source per worker."""

    def __post_init__(self) -> None:
        given = [x for x in (self.routes_file, self.routes_url, self.factory) if x is not None]
        if len(given) != 1:
            raise ValidationError(
                "gateway",
                [FieldError("routes", "give exactly one of --routes, --routes-url or --discovery")],
            )
        if self.poll_interval_s <= 0:
            raise ValidationError(
                "gateway", [FieldError("poll_interval_s", f"{self.poll_interval_s} must be > 0")]
            )

    def build(self) -> RouteSource:
        if self.factory is not None:
            return self.factory()
        if self.routes_file is not None:
            return FileRouteSource(self.routes_file)
        assert self.routes_url is not None
        return UrlRouteSource(self.routes_url, self.routes_token)


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` (from ``create_gateway_app``) until cancelled; ``on_ready`` gets the
    bound port. Client connections are ``connection.ClientConnection``s with the app's
    ``GatewayConfig`` timeouts."""
    config = app[GATEWAY_STATE].config
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    listener: Listener | None = None
    try:
        assert runner.server is not None
        factory = connection_factory(
            runner.server,
            head_timeout_s=config.client_header_timeout_s,
            keepalive_timeout_s=config.client_keepalive_s,
        )
        sockets = bind_sockets(host, port, reuse_port=reuse_port, backlog=2048)
        listener = Listener(asyncio.get_running_loop(), factory, sockets)
        if on_ready is not None:
            on_ready(listener.port())
        await asyncio.Future()  # until cancelled
    finally:
        if listener is not None:
            await listener.close()  # no new connections; the runner closes the open ones
        await runner.cleanup()


async def serve_standalone(
    config: GatewayConfig,
    spec: RouteSourceSpec,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """A gateway fed by a routes file or URL (one worker)."""
    source = spec.build()
    table = RouteTable()
    await refresh(source, table)
    follower = asyncio.create_task(follow(source, table, spec.poll_interval_s))
    try:
        await serve_app(
            create_gateway_app(table, config), host, port, reuse_port=reuse_port, on_ready=on_ready
        )
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        close = getattr(source, "close", None)
        if close is not None:
            await close()


def _run_until_signal(
    main: Callable[[], asyncio.Future[None] | asyncio.Task[None]], loop_kind: str = "auto"
) -> None:
    async def runner() -> None:
        tune_gc_for_serving()
        task = main()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with asyncio.Runner(loop_factory=loop_factory(loop_kind)) as run:
        run.run(runner())


def _announce(host: str, port: int, workers: int, config: GatewayConfig) -> None:
    print(
        f"tierserve gateway listening on http://{host}:{port} "
        f"(workers={workers}, policy={config.policy})",
        flush=True,
    )


def _worker(
    config: GatewayConfig, spec: RouteSourceSpec, host: str, port: int, ready: Any, loop: str
) -> None:
    logging.basicConfig(level=logging.WARNING)
    _run_until_signal(
        lambda: asyncio.ensure_future(
            serve_standalone(
                config, spec, host, port, reuse_port=True, on_ready=lambda _: ready.set()
            )
        ),
        loop,
    )


def _reserve_port(host: str) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket: picks the port the workers share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def run_gateway(
    config: GatewayConfig,
    spec: RouteSourceSpec,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    loop: str = "auto",
) -> None:
    """Run until SIGINT/SIGTERM; prints the listening address once bound."""
    if workers < 1:
        raise ValidationError("gateway", [FieldError("workers", f"{workers} must be >= 1")])
    loop_factory(loop)  # validate before starting anything
    if workers == 1:
        _run_until_signal(
            lambda: asyncio.ensure_future(
                serve_standalone(
                    config, spec, host, port, on_ready=lambda p: _announce(host, p, 1, config)
                )
            ),
            loop,
        )
        return
    reserved = _reserve_port(host) if port == 0 else None
    if reserved is not None:
        port = reserved.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_worker, args=(config, spec, host, port, ready[i], loop), name=f"gateway-{i}"
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for i, event in enumerate(ready):  # announce only once every worker listens
        while not event.wait(0.2):
            if not procs[i].is_alive():
                raise ExternalError(f"gateway worker {i} exited with {procs[i].exitcode}")
    _announce(host, port, workers, config)

    def stop(signum: int, frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for p in procs:
            p.join()
    finally:
        if reserved is not None:
            reserved.close()
    codes = [p.exitcode for p in procs]
    if any(c not in (0, -signal.SIGTERM) for c in codes):
        print(f"gateway workers exited: {codes}", file=sys.stderr)
