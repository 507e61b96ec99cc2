"""A client cannot eject healthy replicas: a 500 that carries a body (the request caused
it) passes through unchanged -- no retry, no ejection -- on both forwarding paths, while
replica faults (a dead replica, 503, a 500 without a body) are still retried and eject."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from gwhelpers import CHAT, free_port, gateway, metric_sum, metric_value, scrape, service

from tierserve.gateway import Backend
from tierserve.gateway.proxy import REPLICA_HEADER

NS = {"namespace": "default", "service": "deepseek"}
SURROGATE = b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": "\\ud800"}]}'
ENGINE_ERROR = {"error": {"message": "surrogates not allowed", "type": "InternalServerError"}}


@dataclass
class FragileEngine:
    """Answers like an engine that fails on a lone surrogate: 500 with an error body for
    such a request (as JSON, or as an SSE stream when ``sse_errors``), else a normal
    answer (a stream when the request asks for one)."""

    sse_errors: bool = False
    requests: int = 0
    url: str = ""
    seen: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests += 1
        stream = json.loads(raw).get("stream") is True
        failing = b"\\ud800" in raw
        if failing and not (stream and self.sse_errors):
            return web.json_response(ENGINE_ERROR, status=500)
        if not stream:
            return web.json_response({"object": "chat.completion", "choices": []})
        resp = web.StreamResponse(
            status=500 if failing else 200, headers={"Content-Type": "text/event-stream"}
        )
        await resp.prepare(request)
        payload = json.dumps(ENGINE_ERROR) if failing else '{"i": 0}'
        await resp.write(f"data: {payload}\n\ndata: [DONE]\n\n".encode())
        return resp


@contextlib.asynccontextmanager
async def fragile_engines(
    n: int, *, sse_errors: bool = False
) -> AsyncIterator[list[FragileEngine]]:
    engines = [FragileEngine(sse_errors) for _ in range(n)]
    runners = []
    for engine in engines:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", engine.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        engine.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        runners.append(runner)
    try:
        yield engines
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_a_500_with_a_body_passes_through_without_retries_or_ejections() -> None:
    async with fragile_engines(2) as (a, b):
        routes = [service(Backend("a", a.url), Backend("b", b.url, unit=1))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:

            async def one(i: int) -> None:
                body = SURROGATE if i % 2 else json.dumps(CHAT).encode()
                if i % 4 >= 2:  # a stream: the raw relay's path
                    body = body[:-1] + b', "stream": true}'
                async with s.post(
                    f"{gw.url}/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as r:
                    data = await r.read()
                    assert r.headers[REPLICA_HEADER] in ("a", "b")
                    if i % 2:
                        assert r.status == 500 and json.loads(data) == ENGINE_ERROR
                    else:
                        assert r.status == 200

            for start in range(0, 200, 20):
                await asyncio.gather(*(one(i) for i in range(start, start + 20)))
            text = await scrape(gw.url)
        assert a.requests + b.requests == 200  # each request went to exactly one replica
        assert metric_sum(text, "tierserve_gateway_retries_total", **NS) == 0
        assert metric_sum(text, "tierserve_gateway_ejections_total", **NS) == 0
        assert metric_sum(text, "tierserve_gateway_replica_ejected", **NS) == 0
        assert metric_value(text, "tierserve_gateway_requests_total", **NS, code="500") == 100


async def test_a_streamed_500_with_a_body_is_relayed_as_it_is() -> None:
    async with fragile_engines(2, sse_errors=True) as (a, b):
        routes = [service(Backend("a", a.url), Backend("b", b.url, unit=1))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            body = SURROGATE[:-1] + b', "stream": true}'
            for _ in range(3):
                async with s.post(f"{gw.url}/v1/chat/completions", data=body) as r:
                    assert r.status == 500 and r.headers[REPLICA_HEADER] == "a"
                    assert b"surrogates not allowed" in await r.read()
            text = await scrape(gw.url)
        assert (a.requests, b.requests) == (3, 0)
        assert metric_sum(text, "tierserve_gateway_ejections_total", **NS) == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_dead_replica_is_still_retried_and_ejected(stream: bool) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with fragile_engines(1) as (good,):
        routes = [service(Backend("a-dead", dead), Backend("b", good.url, unit=1))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            for _ in range(3):  # the first finds a dead, then a is ejected
                async with s.post(
                    f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": stream}
                ) as r:
                    assert (r.status, r.headers[REPLICA_HEADER]) == (200, "b")
                    await r.read()
            text = await scrape(gw.url)
        assert good.requests == 3
        assert metric_value(text, "tierserve_gateway_ejections_total", **NS, replica="a-dead") == 1
        assert metric_value(text, "tierserve_gateway_retries_total", **NS, reason="connect") == 1
        assert metric_value(text, "tierserve_gateway_replica_ejected", **NS, replica="a-dead") == 1
        assert metric_value(text, "tierserve_gateway_ejections_total", **NS, replica="b") == 0
