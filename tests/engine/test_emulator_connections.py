"""Connections as uvicorn handles them for vLLM: a client that goes away aborts its request,
and idle keep-alive connections are closed after ``--timeout-keep-alive`` seconds."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from emukit import StartEmulator
from prometheus_client.parser import text_string_to_metric_families

from tierserve.engine.args import parse_args

SAY = [{"role": "user", "content": "Say this is a test!"}]


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The samples of /metrics by name and labels, e.g. ``vllm:num_requests_running``."""
    text = await (await session.get(f"{url}/metrics")).text()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            reason = s.labels.get("finished_reason")
            out[s.name if reason is None else f"{s.name}{{{reason}}}"] = s.value
    return out


async def wait_for(
    session: aiohttp.ClientSession, url: str, name: str, value: float, timeout_s: float
) -> float:
    """Scrape until ``name`` reads ``value``; the wall seconds it took (AssertionError after
    ``timeout_s``)."""
    t0 = time.monotonic()
    while True:
        got = (await scrape(session, url)).get(name)
        if got == value:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{name} still {got} after {timeout_s} s (waiting for {value})")
        await asyncio.sleep(0.02)


async def test_a_client_that_disconnects_aborts_its_non_streamed_request(
    start_emulator: StartEmulator,
) -> None:
    # 2000 tokens of the 7B on a V100 (23 ms a step) at time scale 0.1: ~4.6 wall s to finish
    emu = await start_emulator(gpu="V100-32G", time_scale="0.1")
    body = (
        b'{"model":"deepseek-r1","max_tokens":2000,'
        b'"messages":[{"role":"user","content":"Say this is a test!"}]}'
    )
    _, writer = await asyncio.open_connection(emu.host, emu.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: emulator\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    async with aiohttp.ClientSession() as s:
        await wait_for(s, emu.url, "vllm:num_requests_running", 1, timeout_s=2)
        writer.close()  # the client gives up mid-request
        await writer.wait_closed()
        # vLLM aborts it: it leaves the batch at once, not when its 2000 tokens are done
        took = await wait_for(s, emu.url, "vllm:num_requests_running", 0, timeout_s=1)
        after = await scrape(s, emu.url)
    assert took < 1
    assert after["vllm:request_success_total{abort}"] == 1
    assert after["vllm:request_success_total{length}"] == 0
    assert after["vllm:generation_tokens_total"] < 2000
    assert emu.state.engine.num_running == emu.state.engine.num_waiting == 0


async def test_a_streaming_client_that_disconnects_aborts_too(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator(gpu="V100-32G", time_scale="0.1")
    async with aiohttp.ClientSession() as client, aiohttp.ClientSession() as s:
        r = await client.post(
            f"{emu.url}/v1/chat/completions",
            json={"model": "deepseek-r1", "messages": SAY, "max_tokens": 2000, "stream": True},
        )
        await r.content.readline()  # the first event: the request is running
        r.close()  # drop the connection
        await wait_for(s, emu.url, "vllm:num_requests_running", 0, timeout_s=1)
        assert (await scrape(s, emu.url))["vllm:request_success_total{abort}"] == 1


def test_idle_keep_alive_defaults_to_uvicorns_5_s() -> None:
    assert parse_args(["/m/x"]).timeout_keep_alive_s == 5.0
    assert parse_args(["/m/x", "--timeout-keep-alive", "0.5"]).timeout_keep_alive_s == 0.5


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator("--timeout-keep-alive", "0.3")
    reader, writer = await asyncio.open_connection(emu.host, emu.port)
    try:
        for _ in range(2):  # the connection is kept alive between requests ...
            writer.write(b"GET /health HTTP/1.1\r\nHost: emulator\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"content-length: 0" in head.lower()
            assert b"connection: close" not in head.lower()
        idle_from = time.monotonic()
        # ... and closed by the server once idle for 0.3 s: EOF, not a timeout
        rest = await asyncio.wait_for(reader.read(), timeout=5)
        idle_s = time.monotonic() - idle_from
    finally:
        writer.close()
    assert rest == b""
    assert 0.25 <= idle_s < 2.0
