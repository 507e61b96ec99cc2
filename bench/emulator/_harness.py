"""Shared benchmark plumbing: launch an emulator process, stream from it, read its CPU."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from tierserve.examples import SEED_COMMAND

# The seed's flags without its port (each emulator gets a free one).
SEED_FLAGS = shlex.split(SEED_COMMAND.replace(" --port 8080", ""))[1:]
PROMPT = "Say this is a test!"  # 11 prompt tokens with the chat template, as in the seed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmulatorProcess:
    """``tierserve engine emulate`` as a child process, ready when /health answers."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "tierserve.cli.main",
            "engine",
            "emulate",
            *SEED_FLAGS,
            "--port",
            str(self.port),
            "--load-time-s",
            "0",
            *extra,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    if (await s.get(f"{self.url}/health")).status == 200:
                        return
                except aiohttp.ClientConnectorError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("emulator did not become ready")

    def cpu_s(self) -> float:
        """User + system CPU seconds the emulator process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class StreamResult:
    sent_s: float
    token_times_s: list[float] = field(default_factory=list)

    @property
    def ttft_s(self) -> float:
        return self.token_times_s[0] - self.sent_s

    @property
    def itl_s(self) -> float:
        t = self.token_times_s
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else 0.0


async def stream_chat(
    session: aiohttp.ClientSession, url: str, max_tokens: int, seed: int
) -> StreamResult:
    """One streamed chat request; the arrival time of every content event."""
    body = {
        "model": "deepseek-r1",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "seed": seed,
        "stream": True,
    }
    res = StreamResult(time.monotonic())
    async with session.post(f"{url}/v1/chat/completions", json=body) as r:
        async for line in r.content:
            # content events only: skip the role chunk, the usage chunk and [DONE]
            if line.startswith(b"data: {") and b'"delta":{"content"' in line:
                res.token_times_s.append(time.monotonic())
    return res


async def run_wave(url: str, concurrency: int, max_tokens: int) -> list[StreamResult]:
    """``concurrency`` streams started together."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
        return await asyncio.gather(
            *(stream_chat(s, url, max_tokens, i) for i in range(concurrency))
        )
