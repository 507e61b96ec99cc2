"""No lost requests: retries before the first byte, outlier ejection, broken streams,
client disconnects, and holding requests while no replica is Ready."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from gwhelpers import CHAT, free_port, gateway, metric_value, scripted_upstreams, service

from tierserve.gateway import Backend, GatewayConfig
from tierserve.gateway.proxy import REPLICA_HEADER

STREAM = {**CHAT, "stream": True}


@pytest.mark.parametrize("mode", ["503", "500-empty"])
async def test_replica_fault_before_first_byte_is_retried_on_another_replica_and_ejects(
    mode: str,
) -> None:
    async with scripted_upstreams(2) as (bad, good):
        bad.mode = mode
        routes = [service(Backend("a-bad", bad.url), Backend("b-good", good.url))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert (r.status, r.headers[REPLICA_HEADER]) == (200, "b-good")
            # a-bad is ejected now: the next requests go straight to b-good.
            for _ in range(3):
                r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
                assert r.headers[REPLICA_HEADER] == "b-good"
            assert len(bad.seen) == 1
            text = await (await s.get(f"{gw.url}/metrics")).text()
            ns = {"namespace": "default", "service": "deepseek"}
            assert metric_value(text, "tierserve_gateway_retries_total", **ns, reason="5xx") == 1
            assert (
                metric_value(text, "tierserve_gateway_ejections_total", **ns, replica="a-bad") == 1
            )
            assert (
                metric_value(text, "tierserve_gateway_replica_ejected", **ns, replica="a-bad") == 1
            )


async def test_connection_refused_is_retried_and_streams_too() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with scripted_upstreams(1) as (good,):
        good.mode = "stream"
        routes = [service(Backend("a-dead", dead), Backend("b-good", good.url))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
            assert (r.status, r.headers[REPLICA_HEADER]) == (200, "b-good")
            assert (await r.read()).endswith(b"data: [DONE]\n\n")


async def test_without_retries_the_failure_reaches_the_client_as_openai_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with scripted_upstreams(1) as (bad,):
        bad.mode = "500"
        routes = [service(Backend("a-dead", dead), Backend("b-bad", bad.url, unit=1))]
        async with gateway(routes, GatewayConfig(retries=0)) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert r.status == 502
            assert (await r.json())["error"]["code"] == 502
            # a-dead is ejected: the next request goes to b-bad, whose 500 passes through.
            r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert r.status == 500 and (await r.json())["error"]["message"] == "boom"


async def test_stream_broken_after_first_byte_ends_with_sse_error_event() -> None:
    async with scripted_upstreams(2) as (breaks, other):
        breaks.mode = "break"
        routes = [service(Backend("a", breaks.url), Backend("b", other.url, unit=1))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
            assert r.status == 200
            text = (await asyncio.wait_for(r.read(), 5)).decode()
            events = [e for e in text.split("\n\n") if e]
            assert events[:2] == ['data: {"i": 0}', 'data: {"i": 1}']
            assert '"error"' in events[2] and events[-1] == "data: [DONE]"
            assert other.seen == []  # not retried once the client had bytes


async def test_stream_passes_chunks_through_as_they_come() -> None:
    async with scripted_upstreams(1) as (up,):
        up.mode, up.chunks, up.delay_s = "slow", 5, 0.1
        async with gateway([service(Backend("a", up.url))]) as gw, aiohttp.ClientSession() as s:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
            first = await r.content.readany()
            ttfc = loop.time() - t0
            assert first.startswith(b'data: {"i": 0}')
            assert ttfc < 0.09  # well before the second chunk (0.1 s later)
            assert r.headers["Content-Type"].startswith("text/event-stream")
            rest = await r.read()
            assert (first + rest).count(b"data: ") == 6


async def test_client_disconnect_cancels_the_upstream_request() -> None:
    async with scripted_upstreams(1) as (up,):
        up.mode, up.chunks, up.delay_s = "slow", 100, 0.05
        async with gateway([service(Backend("a", up.url))]) as gw:
            async with aiohttp.ClientSession() as s:
                r = await s.post(f"{gw.url}/v1/chat/completions", json=STREAM)
                await r.content.readany()
                r.close()  # drop the connection mid-stream
            for _ in range(40):
                if up.cancelled:
                    break
                await asyncio.sleep(0.05)
            assert up.cancelled == 1


async def test_held_request_is_sent_once_a_replica_becomes_ready() -> None:
    async with scripted_upstreams(1) as (up,):
        cold = service(Backend("r0", up.url, ready=False))  # cold-starting
        async with gateway([cold]) as gw, aiohttp.ClientSession() as s:
            req = asyncio.create_task(s.post(f"{gw.url}/v1/chat/completions", json=CHAT))
            await asyncio.sleep(0.2)
            assert not req.done()
            text = await (await s.get(f"{gw.url}/metrics")).text()
            ns = {"namespace": "default", "service": "deepseek"}
            assert metric_value(text, "tierserve_gateway_held_requests", **ns) == 1
            gw.table.set_routes([service(Backend("r0", up.url))])  # Ready
            r = await asyncio.wait_for(req, 5)
            assert r.status == 200 and len(up.seen) == 1
            text = await (await s.get(f"{gw.url}/metrics")).text()
            assert metric_value(text, "tierserve_gateway_held_requests", **ns) == 0
            assert metric_value(text, "tierserve_gateway_held_total", **ns, outcome="served") == 1


async def test_scale_from_zero_past_hold_timeout_is_503_with_retry_after() -> None:
    cfg = GatewayConfig(hold_timeout_s=0.2, retry_after_s=7)
    async with gateway([service()], cfg) as gw, aiohttp.ClientSession() as s:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        assert 0.2 <= loop.time() - t0 < 2
        assert r.status == 503 and r.headers["Retry-After"] == "7"
        assert (await r.json())["error"]["code"] == 503
