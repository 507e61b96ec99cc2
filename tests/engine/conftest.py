"""Fixtures for the emulator tests: in-process emulators on ephemeral 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from emukit import SEED_ARGS, Emulator, StartEmulator

from tierserve.engine.args import parse_args
from tierserve.engine.server import EmulatorState, build_app


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    servers: list[TestServer] = []

    async def start(*extra: str, gpu: str = "H100-80G", time_scale: str = "0.001") -> Emulator:
        cfg = parse_args([*SEED_ARGS, "--gpu", gpu, "--time-scale", time_scale, *extra])
        holder: list[Emulator] = []

        def on_crash() -> None:
            holder[0].crashes += 1

        state = EmulatorState(cfg, on_crash)
        server = TestServer(build_app(state), host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        emu = Emulator(server, state)
        holder.append(emu)
        return emu

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()
