"""Fixtures for the bench tests: a real emulator child process on an ephemeral loopback port,
and a small in-process echo server for checking what goes on the wire."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from benchkit import EmulatorProcess

# 50x faster than a real V100: 512 tokens take ~0.24 s, 8 tokens a few ms.
TIME_SCALE = "0.02"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """``tierserve engine emulate`` as the seed runs it, on V100-32G at --time-scale 0.02."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-c",
        "from tierserve.cli.main import main; main()",
        "engine",
        "emulate",
        "/model/DeepSeek-R1-Distill-Qwen-7B",
        "--port",
        str(port),
        "--served-model-name",
        "deepseek-r1",
        "--gpu",
        "V100-32G",
        "--enforce-eager",
        "--dtype=half",
        "--time-scale",
        TIME_SCALE,
        "--load-time-s",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    emu = EmulatorProcess(port, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"emulator exited {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"{emu.base}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield emu
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


@dataclass
class Seen:
    """What the echo server received."""

    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, Seen]]:
    """Answers every request with 200 and records its method, headers and body."""
    seen = Seen()

    async def handle(request: web.Request) -> web.Response:
        seen.requests.append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/echo")), seen
    finally:
        await server.close()
