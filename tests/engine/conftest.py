"""Fixtures for the emulator tests: in-process emulators on ephemeral 127.0.0.1 ports, served
by the same runner as the real process (``make_runner``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from emukit import SEED_ARGS, Emulator, StartEmulator

from tierserve.engine.args import parse_args
from tierserve.engine.server import EmulatorState, make_runner


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    runners: list[web.AppRunner] = []

    async def start(*extra: str, gpu: str = "H100-80G", time_scale: str = "0.001") -> Emulator:
        cfg = parse_args([*SEED_ARGS, "--gpu", gpu, "--time-scale", time_scale, *extra])
        holder: list[Emulator] = []

        def on_crash() -> None:
            holder[0].crashes += 1

        state = EmulatorState(cfg, on_crash)
        runner = make_runner(state)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        emu = Emulator(runner, state)
        holder.append(emu)
        return emu

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()
