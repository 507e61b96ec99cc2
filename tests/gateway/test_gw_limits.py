"""Bad client input gets a 4xx in OpenAI's error body, never a 500; API keys; metrics."""

from __future__ import annotations

import aiohttp
import pytest
from gwhelpers import CHAT, gateway, metric_value, scripted_upstreams, service

from tierserve.errors import ValidationError
from tierserve.gateway import Backend, GatewayConfig

BAD_INPUTS = [
    # (body bytes, status, param)
    (
        b'{"model": "deepseek-r1", "messages": ',
        400,
        "body.37",
    ),  # malformed JSON (pydantic-like position)
    (b"\xff\xfe not utf-8", 400, "body.0"),
    (b"[1, 2]", 400, "body"),  # not an object
    (b'{"model": 7, "messages": []}', 400, "body.model"),
    (b"", 400, "body.0"),
    (b'{"model": "nope", "messages": []}', 404, "model"),
    (b"x" * 2048, 413, "body"),  # over max_body_bytes=1024
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_INPUTS)
async def test_bad_input_is_4xx_openai_error(body: bytes, status: int, param: str) -> None:
    async with scripted_upstreams(1) as (up,):
        cfg = GatewayConfig(max_body_bytes=1024)
        async with (
            gateway([service(Backend("r0", up.url))], cfg) as gw,
            aiohttp.ClientSession() as s,
        ):
            r = await s.post(
                f"{gw.url}/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            assert r.status == status
            err = (await r.json())["error"]
            assert set(err) == {"message", "type", "param", "code"}
            assert (err["code"], err["param"]) == (status, param)
        assert up.seen == []


async def test_chunked_body_over_the_limit_is_413() -> None:
    async def gen():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 512

    async with (
        gateway([service()], GatewayConfig(max_body_bytes=1024)) as gw,
        aiohttp.ClientSession() as s,
    ):
        r = await s.post(f"{gw.url}/v1/completions", data=gen())
        assert r.status == 413


async def test_api_keys_are_checked_and_not_forwarded() -> None:
    async with scripted_upstreams(1) as (up,):
        cfg = GatewayConfig(api_keys=("k1", "k2"))
        async with (
            gateway([service(Backend("r0", up.url))], cfg) as gw,
            aiohttp.ClientSession() as s,
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k1"}):
                r = await s.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers)
                assert r.status == 401
                assert (await r.json())["error"]["type"] == "AuthenticationError"
            assert (await s.get(f"{gw.url}/v1/models")).status == 401
            r = await s.post(
                f"{gw.url}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": "Bearer k2"},
            )
            assert r.status == 200
            assert "Authorization" not in up.headers_seen[-1]
            assert (await s.get(f"{gw.url}/health")).status == 200


async def test_without_gateway_keys_the_clients_key_goes_to_the_engine() -> None:
    async with scripted_upstreams(1) as (up,), gateway([service(Backend("r0", up.url))]) as gw:
        async with aiohttp.ClientSession() as s:
            await s.post(
                f"{gw.url}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": "Bearer engine-key"},
            )
        assert up.headers_seen[-1]["Authorization"] == "Bearer engine-key"


async def test_metrics_count_requests_by_service_tier_status_and_latency() -> None:
    async with scripted_upstreams(2) as (a, b):
        routes = [
            service(
                Backend("idc-0", a.url, unit=0, tier="idc"),
                Backend("cloud-0", b.url, unit=1, tier="cloud"),
            )
        ]
        async with gateway(routes) as gw, aiohttp.ClientSession() as s:
            for _ in range(3):
                await s.post(f"{gw.url}/v1/chat/completions", json=CHAT)
            await s.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "x"})
            r = await s.get(f"{gw.url}/metrics")
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        ns = {"namespace": "default", "service": "deepseek"}
        assert (
            metric_value(text, "tierserve_gateway_requests_total", **ns, tier="idc", code="200")
            == 3
        )
        assert (
            metric_value(
                text, "tierserve_gateway_time_to_first_byte_seconds_count", **ns, tier="idc"
            )
            == 3
        )
        assert (
            metric_value(text, "tierserve_gateway_request_duration_seconds_count", **ns, tier="idc")
            == 3
        )
        assert (
            metric_value(
                text, "tierserve_gateway_replica_in_flight", **ns, replica="cloud-0", tier="cloud"
            )
            == 0
        )
        assert "tierserve_gateway_service_in_flight" in text


def test_config_is_validated_with_field_names() -> None:
    with pytest.raises(ValidationError) as info:
        GatewayConfig(policy="random", retries=-1, max_body_bytes=0, api_keys=("",))
    text = str(info.value)
    for field in ("policy", "retries", "max_body_bytes", "api_keys"):
        assert f"gateway: {field}:" in text
