"""Supervising real processes: Ready, crash → restart with back-off, start timeout,
stop with SIGTERM. Short timings; every test leaves the process table as it found it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tierserve.model.replica import Phase
from tierserve.policy.lifecycle import Stage, SupervisorConfig
from tierserve.runtime.clock import SystemClock
from tierserve.runtime.local.command import LaunchSpec
from tierserve.runtime.local.health import HttpHealthProbe
from tierserve.runtime.local.ports import PortAllocator
from tierserve.runtime.local.process import PosixLauncher
from tierserve.runtime.local.supervisor import ReplicaEvent, ReplicaSupervisor

pytestmark = pytest.mark.usefixtures("no_leftovers")
SpecFactory = Callable[..., LaunchSpec]

FAST = SupervisorConfig(
    start_timeout_s=5.0,
    probe_interval_s=0.05,
    check_interval_s=0.05,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    grace_s=1.0,
    cleanup_grace_s=0.5,
    probe_timeout_s=0.5,
)


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def supervise(
    state_dir: str, spec: LaunchSpec, config: SupervisorConfig = FAST
) -> tuple[ReplicaSupervisor, list[ReplicaEvent], HttpHealthProbe]:
    events: list[ReplicaEvent] = []
    probe = HttpHealthProbe()
    supervisor = ReplicaSupervisor(
        "default/r1",
        spec,
        PosixLauncher(state_dir),
        probe,
        SystemClock(),
        config,
        on_event=events.append,
    )
    return supervisor, events, probe


async def test_start_ready_stop(state_dir: str, make_spec: SpecFactory) -> None:
    supervisor, events, probe = supervise(state_dir, make_spec(PortAllocator().allocate()))
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: supervisor.state.stage == Stage.READY)
        ready = events[-1]
        assert (ready.phase, ready.reason, ready.restarts) == (Phase.READY, "Healthy", 0)
        assert ready.pid is not None and ready.start_time is not None
    finally:
        await supervisor.stop(grace_s=1.0)
        await probe.close()
    assert (await task).stage == Stage.STOPPED
    assert [(e.phase, e.reason) for e in events] == [
        (Phase.STARTING, "Started"),
        (Phase.READY, "Healthy"),
        (Phase.TERMINATING, "Stopping"),
    ]
    assert supervisor.handle is None


async def test_a_crashed_process_is_restarted_and_counted(
    state_dir: str, make_spec: SpecFactory
) -> None:
    spec = make_spec(PortAllocator().allocate(), "--crash-first")
    supervisor, events, probe = supervise(state_dir, spec)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(
            lambda: supervisor.state.restarts == 1 and supervisor.state.stage == Stage.READY
        )
    finally:
        await supervisor.stop(grace_s=1.0)
        await probe.close()
    await task
    reasons = [e.reason for e in events]
    assert reasons[:4] == ["Started", "CrashLoopBackOff", "Restarted", "Healthy"]
    assert "exited with code 3; restarting in 0.05s" in events[1].message
    assert events[3].restarts == 1


async def test_crash_loop_backs_off_exponentially(state_dir: str, make_spec: SpecFactory) -> None:
    spec = make_spec(PortAllocator().allocate(), "--exit-now", "3")
    supervisor, events, probe = supervise(state_dir, spec)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: supervisor.state.restarts >= 4)
    finally:
        await supervisor.stop(grace_s=0.5)
        await probe.close()
    await task
    delays = [e.message.rsplit(" ", 1)[1] for e in events if e.reason == "CrashLoopBackOff"]
    assert delays[:4] == ["0.05s", "0.1s", "0.2s", "0.2s"]  # doubling, capped at 0.2 s


async def test_never_healthy_fails_after_the_start_timeout(
    state_dir: str, make_spec: SpecFactory
) -> None:
    config = SupervisorConfig(
        start_timeout_s=0.5, probe_interval_s=0.05, grace_s=0.5, backoff_initial_s=0.05
    )
    spec = make_spec(PortAllocator().allocate(), "--never-healthy")
    supervisor, events, probe = supervise(state_dir, spec, config)
    try:
        final = await asyncio.wait_for(supervisor.run(), timeout=5)
    finally:
        await probe.close()
    assert final.stage == Stage.FAILED
    assert (events[-1].phase, events[-1].reason) == (Phase.FAILED, "StartTimeout")
    assert supervisor.handle is None  # the process was stopped before reporting Failed
