"""Host and model routing, balancing through the gateway, /v1/models, /health."""

from __future__ import annotations

import asyncio

import aiohttp
from gwhelpers import CHAT, HOST, gateway, scripted_upstreams, service

from tierserve.gateway import Backend, GatewayConfig, ServiceRoute
from tierserve.gateway.app import GATEWAY_STATE
from tierserve.gateway.proxy import REPLICA_HEADER


async def test_routes_by_host_header_before_model() -> None:
    async with scripted_upstreams(2) as (a, b):
        routes = [
            service(Backend("deepseek-0", a.url)),
            ServiceRoute(
                "default", "qwen", model_names=("qwen",), backends=(Backend("qwen-0", b.url),)
            ),
        ]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            # Host names the service (port and case ignored); the body's model does not matter.
            for host in (HOST, "DeepSeek-Default.example.com:80"):
                body = {**CHAT, "model": "qwen"}
                r = await s.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Host": host})
                assert r.status == 200
                assert r.headers[REPLICA_HEADER] == "deepseek-0"
            # No service Host: the model field decides.
            r = await s.post(f"{gw.url}/v1/completions", json={"model": "qwen", "prompt": "x"})
            assert (r.status, r.headers[REPLICA_HEADER]) == (200, "qwen-0")


async def test_unknown_model_is_404_in_openai_shape() -> None:
    async with (
        scripted_upstreams(1) as (a,),
        gateway([service(Backend("r0", a.url))]) as gw,
        aiohttp.ClientSession() as s,
    ):
        for stream in (False, True):
            r = await s.post(
                f"{gw.url}/v1/chat/completions",
                json={**CHAT, "model": "gpt-4o", "stream": stream},
            )
            assert r.status == 404
            assert r.content_type == "application/json"
            assert await r.json() == {
                "error": {
                    "message": "The model `gpt-4o` does not exist.",
                    "type": "NotFoundError",
                    "param": "model",
                    "code": 404,
                }
            }
        assert a.seen == []


async def test_no_model_with_one_service_goes_to_it_with_two_is_400() -> None:
    async with scripted_upstreams(2) as (a, b):
        body = {"messages": CHAT["messages"]}
        async with gateway([service(Backend("r0", a.url))]) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=body)
            assert r.status == 200
        two = [
            service(Backend("r0", a.url)),
            service(Backend("q0", b.url), name="qwen", models=("qwen",)),
        ]
        async with gateway(two) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json=body)
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "model"


async def test_least_outstanding_spreads_and_ties_go_to_idc() -> None:
    async with scripted_upstreams(2) as (cloud, idc):
        routes = [
            service(
                Backend("b-cloud", cloud.url, unit=1, tier="cloud"),
                Backend("a-idc", idc.url, unit=0, tier="idc"),
            )
        ]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            # One at a time: every tie (0 in flight each) goes to the IDC unit.
            for _ in range(3):
                r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
                assert r.headers[REPLICA_HEADER] == "a-idc"
            # Four slow requests at once: 2 + 2 (least outstanding).
            for f in (cloud, idc):
                f.delay_s = 0.2

            async def one() -> str:
                r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
                return r.headers[REPLICA_HEADER]

            got = await asyncio.gather(*(one() for _ in range(4)))
            assert sorted(got) == ["a-idc", "a-idc", "b-cloud", "b-cloud"]


async def test_round_robin_alternates_in_unit_order() -> None:
    async with scripted_upstreams(2) as (a, b):
        routes = [service(Backend("r1", b.url, unit=1), Backend("r0", a.url, unit=0))]
        cfg = GatewayConfig(policy="round_robin")
        async with gateway(routes, cfg) as gw, aiohttp.ClientSession() as s:
            got = []
            for _ in range(4):
                r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
                got.append(r.headers[REPLICA_HEADER])
            assert got == ["r0", "r1", "r0", "r1"]


async def test_terminating_replica_gets_no_new_requests_but_finishes_its_stream() -> None:
    async with scripted_upstreams(2) as (a, b):
        a.mode, a.delay_s, a.chunks = "slow", 0.05, 6
        async with gateway([service(Backend("r0", a.url))]) as gw, aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True})
            assert r.headers[REPLICA_HEADER] == "r0"
            # r0 starts terminating mid-stream; r1 becomes Ready.
            gw.table.set_routes([service(Backend("r0", a.url, ready=False), Backend("r1", b.url))])
            r2 = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            assert r2.headers[REPLICA_HEADER] == "r1"
            text = (await r.read()).decode()
            assert text.count("data: ") == 7 and text.endswith("data: [DONE]\n\n")


async def test_models_lists_every_service_and_health_is_200() -> None:
    async with scripted_upstreams(1) as (a,):
        routes = [service(Backend("r0", a.url)), service(name="qwen", models=("qwen", "qwen2"))]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            r = await s.get(f"{gw.url}/v1/models")
            body = await r.json()
            assert body["object"] == "list"
            assert [m["id"] for m in body["data"]] == ["deepseek-r1", "qwen", "qwen2"]
            assert (await s.get(f"{gw.url}/health")).status == 200
            r = await s.get(f"{gw.url}/nope")
            assert r.status == 404 and "error" in await r.json()


async def test_a_newly_ready_replica_is_slow_started() -> None:
    """r0 has served alone past the window with four slow requests in flight; r1 then
    becomes Ready and four more arrive at once. Slow-started, r1 weighs 10 % and r0
    takes them (5..8 in flight against r1's 10); without slow start r1 takes all four."""
    clock = [0.0]

    async def burst(cfg: GatewayConfig) -> list[str]:
        async with scripted_upstreams(2) as (a, b):
            a.delay_s = b.delay_s = 0.5
            async with (
                gateway([service(Backend("r0", a.url))], cfg, now=lambda: clock[0]) as gw,
                aiohttp.ClientSession() as s,
            ):

                async def one() -> str:
                    r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
                    assert r.status == 200
                    return r.headers[REPLICA_HEADER]

                first = [asyncio.create_task(one()) for _ in range(4)]
                while gw.app[GATEWAY_STATE].balancer.in_flight.get("r0", 0) < 4:
                    await asyncio.sleep(0.01)
                clock[0] += 60  # r0 is long past the window; r1 becomes Ready now
                gw.table.set_routes([service(Backend("r0", a.url), Backend("r1", b.url))])
                got = await asyncio.gather(*(one() for _ in range(4)))
                assert await asyncio.gather(*first) == ["r0"] * 4
                return sorted(got)

    assert await burst(GatewayConfig(slow_start_s=10)) == ["r0"] * 4
    assert await burst(GatewayConfig(slow_start_s=0)) == ["r1"] * 4
