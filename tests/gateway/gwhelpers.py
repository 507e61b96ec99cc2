"""Helpers for the gateway tests: engine processes, in-process emulators, a scripted
upstream, and an in-process gateway, all on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tierserve.engine.args import parse_args
from tierserve.engine.server import EmulatorState, build_app
from tierserve.gateway import (
    Backend,
    GatewayConfig,
    RouteTable,
    ServiceRoute,
    create_gateway_app,
    serve_app,
)

CHAT = {
    "model": "deepseek-r1",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Say this is a test!"}],
}
HOST = "deepseek-default.example.com"
EMU_ARGS = ["--served-model-name", "deepseek-r1", "--gpu", "V100-32G", "--model-profile", "tiny"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(
    *backends: Backend, name: str = "deepseek", models: tuple[str, ...] = ("deepseek-r1",)
) -> ServiceRoute:
    return ServiceRoute("default", name, model_names=models, backends=backends)


# ---------------------------------------------------------------- engines as processes


@dataclass
class EngineProcess:
    name: str
    port: int
    proc: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend(self, unit: int = 0, tier: str = "idc", ready: bool = True) -> Backend:
        return Backend(self.name, self.url, unit, tier, ready)

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)


async def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(f"{url}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"{url} not healthy in {timeout_s} s")
            await asyncio.sleep(0.05)


StartEngine = Callable[..., Awaitable[EngineProcess]]


@contextlib.asynccontextmanager
async def engine_processes() -> AsyncIterator[StartEngine]:
    """``tierserve engine emulate`` processes; every one is killed on exit."""
    procs: list[EngineProcess] = []

    async def start(name: str, *extra: str, time_scale: str = "0.05") -> EngineProcess:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tierserve.cli.main",
            "engine",
            "emulate",
            "/model/tiny",
            "--port",
            str(port),
            *EMU_ARGS,
            "--time-scale",
            time_scale,
            "--load-time-s",
            "0",
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        engine = EngineProcess(name, port, proc)
        procs.append(engine)
        return engine

    try:
        yield start
    finally:
        for e in procs:
            e.kill9()
        for e in procs:
            await e.proc.wait()


# ---------------------------------------------------------------- in-process emulators


@contextlib.asynccontextmanager
async def emulators() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """In-process emulators (fast); yields a starter returning the base URL."""
    servers: list[TestServer] = []

    async def start(*extra: str, time_scale: str = "0.01") -> str:
        cfg = parse_args(
            ["serve", "/model/tiny", "--port", "0", *EMU_ARGS, "--time-scale", time_scale, *extra]
        )
        server = TestServer(build_app(EmulatorState(cfg, lambda: None)), host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    try:
        yield start
    finally:
        for s in servers:
            await s.close()


# ---------------------------------------------------------------- scripted upstream


@dataclass
class Scripted:
    """A fake OpenAI upstream whose behaviour each test sets: ``mode`` is one of
    ``ok``, ``500`` (with an error body), ``500-empty`` (no body), ``503`` (with a
    body), ``stream``, ``break`` (stream then drop), ``slow`` (stream slowly)."""

    mode: str = "ok"
    chunks: int = 4
    delay_s: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    cancelled: int = 0
    url: str = ""
    runner: web.AppRunner | None = None

    def open_connections(self) -> int:
        """Client connections this upstream has open now."""
        server = self.runner.server if self.runner is not None else None
        return len(server.connections) if server is not None else 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        self.headers_seen.append(dict(request.headers))
        if self.mode in ("500", "503"):
            status = int(self.mode)
            err = {"message": "boom", "type": "InternalServerError", "param": None, "code": status}
            return web.json_response({"error": err}, status=status)
        if self.mode == "500-empty":
            return web.Response(status=500)
        if self.delay_s and self.mode == "ok":
            try:
                await asyncio.sleep(self.delay_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.mode == "ok":
            return web.json_response(
                {
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"content": "hi"}}],
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        try:
            for i in range(self.chunks):
                await resp.write(f'data: {{"i": {i}}}\n\n'.encode())
                if self.mode == "break" and i == 1:
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                await asyncio.sleep(self.delay_s)
            await resp.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return resp


@contextlib.asynccontextmanager
async def scripted_upstreams(n: int) -> AsyncIterator[list[Scripted]]:
    fakes = [Scripted() for _ in range(n)]
    runners: list[web.AppRunner] = []
    for fake in fakes:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake.handle)
        app.router.add_post("/v1/completions", fake.handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        fake.runner = runner
        runners.append(runner)
    try:
        yield fakes
    finally:
        for r in runners:
            await r.cleanup()


# ---------------------------------------------------------------- in-process gateway


@dataclass
class Gateway:
    url: str
    table: RouteTable
    app: web.Application


@contextlib.asynccontextmanager
async def gateway(
    routes: list[ServiceRoute],
    config: GatewayConfig | None = None,
    now: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Gateway]:
    table = RouteTable.of(routes)
    app = create_gateway_app(table, config or GatewayConfig(), now=now)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_app(app, "127.0.0.1", 0, on_ready=bound.set_result))
    port = await asyncio.wait_for(bound, 10)
    try:
        yield Gateway(f"http://127.0.0.1:{port}", table, app)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def scrape(url: str) -> str:
    """The gateway's ``/metrics`` page."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        return await r.text()
