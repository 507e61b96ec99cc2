"""The supervisor's decisions as a pure function, and the loop on fakes and virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from tierserve.errors import ValidationError
from tierserve.model.replica import Phase
from tierserve.policy.lifecycle import (
    Observation,
    Report,
    Stage,
    StartProcess,
    StopProcess,
    SupervisorConfig,
    SupervisorState,
    backoff_s,
    decide,
)
from tierserve.runtime.clock import FakeClock
from tierserve.runtime.local.command import LaunchSpec
from tierserve.runtime.local.process import ProcessHandle
from tierserve.runtime.local.supervisor import ReplicaEvent, ReplicaSupervisor
from tierserve.testing.fakes import FakeHealthProbe, FakeLauncher, FakeProcessTable

CONFIG = SupervisorConfig()  # 1 s doubling to 300 s, 600 s start timeout, reset after 600 s


def test_first_tick_starts_the_process() -> None:
    decision = decide(SupervisorState(), Observation(now_s=10, running=False), CONFIG)
    assert decision.actions == (StartProcess(), Report(Phase.STARTING, "Started"))
    assert decision.state.stage == Stage.STARTING and decision.state.started_s == 10
    assert decision.wake_in_s == CONFIG.probe_interval_s


def test_healthy_while_starting_is_ready() -> None:
    starting = SupervisorState(stage=Stage.STARTING, started_s=10)
    decision = decide(starting, Observation(now_s=40, running=True, healthy=True), CONFIG)
    assert decision.state.stage == Stage.READY and decision.state.ready_s == 40
    assert decision.actions == (Report(Phase.READY, "Healthy"),)


def test_start_timeout_stops_then_reports_failed() -> None:
    starting = SupervisorState(stage=Stage.STARTING, started_s=10)
    waiting = decide(starting, Observation(now_s=609.5, running=True, healthy=False), CONFIG)
    assert waiting.actions == () and waiting.wake_in_s == pytest.approx(0.5)  # up to the deadline
    failed = decide(starting, Observation(now_s=610, running=True, healthy=False), CONFIG)
    assert failed.state.stage == Stage.FAILED
    assert failed.actions[0] == StopProcess(CONFIG.grace_s)
    assert failed.actions[1] == Report(
        Phase.FAILED, "StartTimeout", "not healthy within the start timeout of 600s"
    )
    assert decide(failed.state, Observation(now_s=700, running=False), CONFIG).actions == ()


@pytest.mark.parametrize(
    ("streak", "delay_s"),
    [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (50, 300), (10_000, 300)],  # 1·2^(n-1) ≤ 300
)
def test_backoff_doubles_to_the_cap(streak: int, delay_s: float) -> None:
    assert backoff_s(streak, CONFIG) == delay_s


def test_crash_backs_off_then_restarts_and_counts() -> None:
    ready = SupervisorState(stage=Stage.READY, started_s=0, ready_s=5, crash_streak=2)
    crash = decide(ready, Observation(now_s=60, running=False, exit_code=137), CONFIG)
    # streak 3 (ready only 55 s < 600 s, so no reset): 1 · 2^2 = 4 s
    assert crash.state.stage == Stage.BACKOFF and crash.state.restart_at_s == 64
    assert crash.actions == (
        Report(Phase.STARTING, "CrashLoopBackOff", "exited with code 137; restarting in 4s"),
        StopProcess(CONFIG.cleanup_grace_s),
    )
    assert crash.state.restarts == 0  # counted when the process is started again
    early = decide(crash.state, Observation(now_s=62, running=False), CONFIG)
    assert early.actions == () and early.wake_in_s == 2
    restart = decide(crash.state, Observation(now_s=64, running=False), CONFIG)
    assert restart.actions == (StartProcess(), Report(Phase.STARTING, "Restarted"))
    assert restart.state.restarts == 1 and restart.state.started_s == 64


def test_long_ready_resets_the_backoff() -> None:
    ready = SupervisorState(stage=Stage.READY, ready_s=0, crash_streak=8)
    crash = decide(ready, Observation(now_s=600, running=False), CONFIG)
    assert crash.state.crash_streak == 1 and crash.wake_in_s == 1


def test_failed_start_is_a_crash_without_a_process_to_stop() -> None:
    starting = SupervisorState(stage=Stage.STARTING, started_s=0)
    seen = Observation(now_s=0, running=False, start_error="no such file")
    crash = decide(starting, seen, CONFIG)
    assert crash.actions == (
        Report(
            Phase.STARTING, "CrashLoopBackOff", "could not start: no such file; restarting in 1s"
        ),
    )


def test_unhealthy_after_threshold_then_healthy_again() -> None:
    state = SupervisorState(stage=Stage.READY, ready_s=0)
    for now in (1, 2):
        state = decide(state, Observation(now_s=now, running=True, healthy=False), CONFIG).state
        assert state.stage == Stage.READY
    out = decide(state, Observation(now_s=3, running=True, healthy=False), CONFIG)
    assert out.state.stage == Stage.UNHEALTHY
    assert out.actions == (
        Report(Phase.STARTING, "Unhealthy", "health check failed 3 times in a row"),
    )
    back = decide(out.state, Observation(now_s=4, running=True, healthy=True), CONFIG)
    assert back.state.stage == Stage.READY and back.actions == (Report(Phase.READY, "Healthy"),)


@pytest.mark.parametrize("stage", [Stage.NEW, Stage.STARTING, Stage.READY, Stage.BACKOFF])
def test_stop_request_wins_in_every_live_stage(stage: Stage) -> None:
    seen = Observation(now_s=1, running=True, healthy=True, stop_grace_s=7)
    decision = decide(SupervisorState(stage=stage, started_s=0), seen, CONFIG)
    assert decision.state.stage == Stage.STOPPED
    assert decision.actions == (Report(Phase.TERMINATING, "Stopping"), StopProcess(7))


def test_config_names_bad_fields() -> None:
    with pytest.raises(ValidationError, match=r"grace_s: 0 is not a positive number"):
        SupervisorConfig(grace_s=0)


# -- the loop on fakes ------------------------------------------------------------------

SPEC = LaunchSpec(argv=("engine",), env={}, cwd="/w", log_path="/w/log", port=8000)


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not predicate():
            await asyncio.sleep(0)


def fake_supervisor(
    launcher: FakeLauncher,
    probe: FakeHealthProbe,
    clock: FakeClock,
    adopted: ProcessHandle | None = None,
    restarts: int = 0,
) -> tuple[ReplicaSupervisor, list[ReplicaEvent]]:
    events: list[ReplicaEvent] = []
    supervisor = ReplicaSupervisor(
        "default/r1",
        SPEC,
        launcher,
        probe,
        clock,
        on_event=events.append,
        adopted=adopted,
        restarts=restarts,
    )
    return supervisor, events


async def test_loop_restarts_a_crash_on_virtual_time() -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock=clock)
    probe = FakeHealthProbe({8000})
    supervisor, events = fake_supervisor(launcher, probe, clock)
    task = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.state.stage == Stage.READY)
    first = supervisor.handle
    assert first is not None
    launcher.table.exit(first.pid, code=1)
    await until(lambda: supervisor.state.restarts == 1 and supervisor.state.stage == Stage.READY)
    assert supervisor.handle is not None and supervisor.handle.pid != first.pid
    assert 1.0 in clock.slept  # the 1 s back-off, on virtual time
    await supervisor.stop()
    await task
    assert launcher.table.running() == []
    assert [e.reason for e in events] == [
        "Started",
        "Healthy",
        "CrashLoopBackOff",
        "Restarted",
        "Healthy",
        "Stopping",
    ]


async def test_loop_retries_a_command_that_cannot_start() -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock=clock)
    launcher.fail_starts = 2
    supervisor, events = fake_supervisor(launcher, FakeHealthProbe({8000}), clock)
    task = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.state.stage == Stage.READY)
    await supervisor.stop()
    await task
    backoffs = [e.message for e in events if e.reason == "CrashLoopBackOff"]
    assert len(backoffs) == 2 and backoffs[1].endswith("restarting in 2s")
    assert "could not start" in backoffs[0]
    assert supervisor.state.restarts == 2


async def test_adopted_process_is_ready_without_a_restart() -> None:
    clock = FakeClock()
    table = FakeProcessTable()
    old = FakeLauncher(table=table, clock=clock).start(SPEC)
    launcher = FakeLauncher(table=table, clock=clock)  # the control plane came back
    assert launcher.adopt(old.pid, old.start_time, old.port)
    supervisor, events = fake_supervisor(
        launcher, FakeHealthProbe({8000}), clock, adopted=old, restarts=4
    )
    task = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.state.stage == Stage.READY)
    assert launcher.started == []  # nothing new was started
    assert (events[0].reason, events[0].pid, events[0].restarts) == ("Healthy", old.pid, 4)
    await supervisor.stop(grace_s=3)
    await task
    assert table.processes[old.pid].signals == [15]


async def test_stop_kills_a_process_deaf_to_sigterm_after_the_grace() -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock=clock)
    supervisor, _ = fake_supervisor(launcher, FakeHealthProbe({8000}), clock)
    task = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.state.stage == Stage.READY)
    handle = supervisor.handle
    assert handle is not None
    launcher.table.processes[handle.pid].ignores_sigterm = True
    await supervisor.stop(grace_s=30)
    await task
    assert launcher.table.processes[handle.pid].signals == [15, 9]
    assert 30 in clock.slept


async def test_stop_before_run_reports_terminating() -> None:
    clock = FakeClock()
    supervisor, events = fake_supervisor(FakeLauncher(clock=clock), FakeHealthProbe(), clock)
    await supervisor.stop()
    assert supervisor.state.stage == Stage.STOPPED
    assert [e.phase for e in events] == [Phase.TERMINATING]


def test_adopted_state_keeps_the_restart_count() -> None:
    assert SupervisorState.adopted(5.0, restarts=2) == replace(
        SupervisorState(), stage=Stage.STARTING, started_s=5.0, restarts=2
    )
