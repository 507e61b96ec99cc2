"""Injected faults: start-up failure, crash, hang, slow GPU; and the real process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from emukit import SEED_ARGS, StartEmulator
from prometheus_client.parser import text_string_to_metric_families

from tierserve.engine.args import parse_args
from tierserve.engine.run import serve, startup_errors

CHAT = {
    "model": "deepseek-r1",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "Say this is a test!"}],
}


async def chat(session: aiohttp.ClientSession, url: str) -> int:
    r = await session.post(f"{url}/v1/chat/completions", json=CHAT)
    await r.read()
    return r.status


async def test_crash_after_n_requests_calls_the_crash_action(start_emulator: StartEmulator) -> None:
    emu = await start_emulator("--fault-crash-after", "2")
    async with aiohttp.ClientSession() as s:
        assert [await chat(s, emu.url) for _ in range(2)] == [200, 200]
        assert emu.crashes == 0
        await chat(s, emu.url)
    assert emu.crashes == 1


async def test_hang_after_n_requests_never_answers_but_health_does(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator("--fault-hang-after", "1")
    async with aiohttp.ClientSession() as s:
        assert await chat(s, emu.url) == 200
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(chat(s, emu.url), timeout=0.5)
        assert (await s.get(f"{emu.url}/health")).status == 200


async def _e2e_sum(session: aiohttp.ClientSession, url: str) -> float:
    text = await (await session.get(f"{url}/metrics")).text()
    for fam in text_string_to_metric_families(text):
        if fam.name == "vllm:e2e_request_latency_seconds":
            return next(s.value for s in fam.samples if s.name.endswith("_sum"))
    raise AssertionError("no e2e histogram")


@pytest.mark.parametrize("factor", [1.0, 4.0])
async def test_slow_factor_stretches_emulated_latency(
    start_emulator: StartEmulator, factor: float
) -> None:
    emu = await start_emulator(
        "--fault-slow-factor", str(factor), gpu="V100-32G", time_scale="0.05"
    )
    async with aiohttp.ClientSession() as s:
        assert await chat(s, emu.url) == 200
        e2e = await _e2e_sum(s, emu.url)
    # 10 steps (1 prefill + 9 decode) of 23.2 ms (memory-bound, eager) = 0.232 s * factor
    assert e2e == pytest.approx(0.232 * factor, rel=0.15)


async def test_startup_failure_exits_non_zero_without_listening() -> None:
    cfg = parse_args([*SEED_ARGS, "--load-time-s", "0", "--fault-startup-fail"])
    assert await serve(cfg) == 1


def test_vllm_start_up_refusals_are_reproduced() -> None:
    bf16 = parse_args(["/m/x", "--gpu", "V100-32G", "--dtype", "bfloat16"])
    assert any("Bfloat16" in e for e in startup_errors(bf16))
    small = parse_args(["/m/x", "--gpu", "A10-24G", "--gpu-memory-utilization", "0.7"])
    assert any("larger than the maximum number of tokens" in e for e in startup_errors(small))
    assert startup_errors(parse_args(SEED_ARGS)) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "tierserve.cli.main",
        "engine",
        "emulate",
        *[a if a != "0" else str(port) for a in SEED_ARGS],
        "--gpu",
        "V100-32G",
        "--time-scale",
        "0.01",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_healthy(
    session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0
) -> list[str]:
    """Poll /health like the runtime does; the outcomes seen, deduplicated in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            r = await session.get(f"{url}/health")
            outcome = str(r.status)
        except aiohttp.ClientConnectorError:
            outcome = "refused"
        if not seen or seen[-1] != outcome:
            seen.append(outcome)
        if outcome == "200":
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"not healthy in {timeout_s} s: {seen}")


@pytest.mark.slow
async def test_real_process_with_the_vllm_command_line() -> None:
    port = free_port()
    # --load-time-s 100 at --time-scale 0.01: one wall second of refused connections
    proc = launch(port, "--load-time-s", "100", "--unknown-vllm-flag", "x")
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            seen = await wait_healthy(s, url, proc)
            assert seen == ["refused", "200"]  # like vLLM 0.32: no 503 phase
            assert await chat(s, url) == 200
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
async def test_crash_fault_kills_the_real_process() -> None:
    port = free_port()
    proc = launch(port, "--load-time-s", "0", "--fault-crash-after", "1")
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            await wait_healthy(s, url, proc)
            assert await chat(s, url) == 200
            with pytest.raises(aiohttp.ClientError):
                await chat(s, url)
        assert proc.wait(timeout=10) == 1
        assert proc.stderr is not None and b"fault injection" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
