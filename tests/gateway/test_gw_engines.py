"""End to end with emulator replicas as real processes: the openai client, hey, kill -9
of a replica under load, and the ``tierserve gateway`` command (one and two workers)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import openai
import pytest
from gwhelpers import CHAT, HOST, engine_processes, gateway, service, wait_healthy

from tierserve.gateway import dump_routes
from tierserve.gateway.proxy import REPLICA_HEADER


async def test_openai_client_chat_stream_and_models() -> None:
    async with engine_processes() as start:
        idc = await start("deepseek-predictor-0")
        cloud = await start("deepseek-predictor-1")
        await asyncio.gather(wait_healthy(idc.url), wait_healthy(cloud.url))
        routes = [service(idc.backend(0, "idc"), cloud.backend(1, "cloud"))]
        async with gateway(routes) as gw:
            client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="none", max_retries=0)
            try:
                chat = await client.chat.completions.create(
                    model="deepseek-r1",
                    messages=[{"role": "user", "content": "Say hi"}],
                    max_tokens=6,
                    seed=10,
                )
                assert chat.model == "deepseek-r1" and chat.choices[0].message.content
                assert chat.usage is not None and chat.usage.completion_tokens == 6
                stream = await client.chat.completions.create(
                    model="deepseek-r1",
                    messages=[{"role": "user", "content": "Say hi"}],
                    max_tokens=6,
                    seed=10,
                    stream=True,
                )
                parts = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
                assert "".join(parts) == chat.choices[0].message.content  # same seed, same text
                models = await client.models.list()
                assert [m.id for m in models.data] == ["deepseek-r1"]
                with pytest.raises(openai.NotFoundError):
                    await client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
                    )
            finally:
                await client.close()


@pytest.mark.skipif(shutil.which("hey") is None, reason="needs the hey binary (apt: hey)")
async def test_hey_with_host_header_gets_only_200s() -> None:
    async with engine_processes() as start:
        engines = [await start(f"deepseek-predictor-{i}") for i in range(2)]
        await asyncio.gather(*(wait_healthy(e.url) for e in engines))
        routes = [service(*(e.backend(i) for i, e in enumerate(engines)), models=())]
        async with gateway(routes) as gw:
            body = json.dumps({**CHAT, "max_tokens": 16, "seed": 10})
            proc = await asyncio.create_subprocess_exec(
                "hey",
                "-z",
                "5s",
                "-c",
                "5",
                "-m",
                "POST",
                "-host",
                HOST,
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
                f"{gw.url}/v1/chat/completions",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    assert list(codes) == ["200"], out
    assert int(codes["200"]) > 20, out
    assert "Error distribution" not in out, out


async def test_kill_9_one_of_two_replicas_under_load_loses_nothing() -> None:
    async with engine_processes() as start:
        a, b = await start("deepseek-predictor-0"), await start("deepseek-predictor-1")
        await asyncio.gather(wait_healthy(a.url), wait_healthy(b.url))
        async with gateway([service(a.backend(0), b.backend(0))]) as gw:
            statuses: list[int] = []
            served_by: set[str] = set()
            stop = asyncio.Event()

            async def client(s: aiohttp.ClientSession) -> None:
                while not stop.is_set():
                    async with s.post(
                        f"{gw.url}/v1/chat/completions", json={**CHAT, "max_tokens": 24}
                    ) as r:
                        await r.read()
                        statuses.append(r.status)
                        served_by.add(r.headers.get(REPLICA_HEADER, ""))

            async with aiohttp.ClientSession() as s:
                tasks = [asyncio.create_task(client(s)) for _ in range(8)]
                await asyncio.sleep(1.0)
                before = len(statuses)
                a.kill9()
                await asyncio.sleep(1.5)
                stop.set()
                await asyncio.gather(*tasks)
                metrics = await (await s.get(f"{gw.url}/metrics")).text()
    assert before > 10 and len(statuses) > before + 10
    assert set(statuses) == {200}, [x for x in statuses if x != 200]
    assert served_by == {"deepseek-predictor-0", "deepseek-predictor-1"}
    assert (
        'tierserve_gateway_ejections_total{namespace="default",replica="deepseek-predictor-0"'
        in metrics
    )


async def _start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierserve.cli.main",
        "gateway",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, line
    return proc, match.group(1)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 15)


@pytest.mark.parametrize("workers", [1, 2])
async def test_gateway_command_with_routes_file(tmp_path: Path, workers: int) -> None:
    async with engine_processes() as start:
        engine = await start("deepseek-predictor-0")
        await wait_healthy(engine.url)
        routes = tmp_path / "routes.json"
        routes.write_text(json.dumps(dump_routes([service(engine.backend(), models=("x",))])))
        proc, url = await _start_cli(
            "--routes", str(routes), "--workers", str(workers), "--routes-interval-s", "0.1"
        )
        try:
            async with aiohttp.ClientSession() as s:
                for _ in range(4 * workers):
                    r = await s.post(
                        f"{url}/v1/chat/completions", json=CHAT, headers={"Host": HOST}
                    )
                    assert r.status == 200, await r.text()
                    await r.read()
                r = await s.post(f"{url}/v1/chat/completions", json=CHAT)
                assert r.status == 404 and REPLICA_HEADER not in r.headers  # the gateway's 404
            # The routes file changes: the service now serves deepseek-r1; every worker sees it.
            routes.write_text(json.dumps(dump_routes([service(engine.backend())])))
            await asyncio.sleep(0.6)
            for _ in range(4 * workers):
                async with aiohttp.ClientSession() as fresh:  # a new connection each time
                    r = await fresh.post(f"{url}/v1/chat/completions", json=CHAT)
                    assert r.status == 200
        finally:
            assert await _stop(proc) == 0


async def test_gateway_command_rejects_bad_flags() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierserve.cli.main",
        "gateway",
        "--policy",
        "random",
        "--routes",
        "x.json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"policy" in err
