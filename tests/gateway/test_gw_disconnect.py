"""A client that goes away before its answer is complete counts under code 499, and the
replica's request is aborted (its connection closed): streamed through the raw relay,
streamed through aiohttp's client (an HTTP/1.0 client), not streamed, and held."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from gwhelpers import CHAT, HOST, gateway, metric_value, scrape, scripted_upstreams, service

from tierserve.gateway import GATEWAY_STATE, Backend

NS = {"namespace": "default", "service": "deepseek"}


def request(payload: dict[str, object], version: str = "1.1") -> bytes:
    body = json.dumps(payload).encode()
    head = f"POST /v1/chat/completions HTTP/{version}\r\nHost: {HOST}\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def until(check: Callable[[], object], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def count_499(url: str, tier: str, timeout_s: float = 5.0) -> float:
    """The 499 count once it moved (or after ``timeout_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        text = await scrape(url)
        n = metric_value(text, "tierserve_gateway_requests_total", **NS, tier=tier, code="499")
        if n or loop.time() > deadline:
            return n
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("stream", "version"),
    [(True, "1.1"), (True, "1.0"), (False, "1.1")],
    ids=["raw-relay", "aiohttp-stream", "not-streamed"],
)
async def test_client_gone_mid_request_is_499_and_aborts_the_replica(
    stream: bool, version: str
) -> None:
    async with scripted_upstreams(1) as (up,):
        if stream:
            up.mode, up.chunks, up.delay_s = "slow", 200, 0.05
        else:
            up.delay_s = 30.0  # answers only after the client has gone
        async with gateway([service(Backend("r0", up.url))]) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request({**CHAT, "stream": stream}, version))
            if stream:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert b" 200 " in head.split(b"\r\n")[0]
                assert b"data: " in await asyncio.wait_for(reader.read(1024), 5)
            else:
                await until(lambda: up.seen)
            writer.close()  # gone before the answer is complete
            await until(lambda: up.cancelled == 1)  # the replica's request was aborted
            assert await count_499(gw.url, "idc") == 1
            text = await scrape(gw.url)
            assert (
                metric_value(text, "tierserve_gateway_replica_in_flight", **NS, replica="r0") == 0
            )
            assert metric_value(text, "tierserve_gateway_ejections_total", **NS, replica="r0") == 0


async def test_client_gone_while_held_is_499() -> None:
    async with gateway([service(Backend("r0", "http://127.0.0.1:9", ready=False))]) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(CHAT))
        held = gw.app[GATEWAY_STATE].metrics.held
        await until(lambda: held.get("default/deepseek") == 1)
        writer.close()
        assert await count_499(gw.url, "none") == 1
        text = await scrape(gw.url)
        assert metric_value(text, "tierserve_gateway_held_requests", **NS) == 0
