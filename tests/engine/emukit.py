"""Helpers of the emulator tests (a module of its own: test modules import from here, never
from ``conftest``, whose module name is shared by every test directory)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from tierserve.engine.server import EmulatorState
from tierserve.examples import SEED_COMMAND

REF = Path(__file__).parent / "fixtures" / "vllm_reference"

# The seed's own flags on an ephemeral port; the 7B profile on an H100 with emulated time
# 1000x faster keeps each test to milliseconds while exercising the real model (not a toy
# profile).
SEED_ARGS = shlex.split(SEED_COMMAND.replace("--port 8080", "--port 0"))[1:]


class Emulator:
    """A running in-process emulator: its base URL and shared state."""

    def __init__(self, runner: web.AppRunner, state: EmulatorState) -> None:
        self.runner = runner
        self.state = state
        host, port = runner.addresses[0][:2]
        self.host, self.port = str(host), int(port)
        self.url = f"http://{self.host}:{self.port}"
        self.crashes = 0


StartEmulator = Callable[..., Awaitable[Emulator]]


def ref_json(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((REF / name).read_text())  # type: ignore[no-any-return]


def ref_request_body(name: str) -> bytes:
    """The body of a captured request (after the blank line)."""
    raw = (REF / f"{name}.request.txt").read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[1]


def ref_request_line(name: str) -> tuple[str, str, str]:
    """(method, path, content type) of a captured request."""
    raw = (REF / f"{name}.request.txt").read_text(errors="replace")
    method, path, _ = raw.split("\n", 1)[0].split(" ", 2)
    ctype = ""
    for line in raw.splitlines()[1:]:
        if line.lower().startswith("content-type:"):
            ctype = line.split(":", 1)[1].strip()
        if not line.strip():
            break
    return method, path, ctype


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking vLLM's framing on the way."""
    assert text.endswith("\n\n")
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        assert "\n" not in block
        out.append(block[len("data: ") :])
    return out
