"""Supervise one replica's process: start, health-check, restart with back-off, stop.

The loop reads the injected clock once per tick, observes (is the process alive,
its exit code, a health check), asks ``lifecycle.decide`` what to do and applies
the actions through the ``ProcessLauncher``; each phase change goes to ``on_event``
as a ``ReplicaEvent`` for the controllers to store. ``run()`` returns when the
replica has failed (start timeout) or was stopped. Cancelling ``run()`` detaches
without touching the process (a control-plane shutdown that keeps replicas running);
``stop()`` terminates it (SIGTERM, SIGKILL after the grace).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from tierserve.errors import TierserveError
from tierserve.policy.lifecycle import (
    Action,
    Observation,
    ReplicaEvent,
    Report,
    StartProcess,
    StopProcess,
    SupervisorConfig,
    SupervisorState,
    decide,
)
from tierserve.runtime.clock import Clock
from tierserve.runtime.local.command import LaunchSpec
from tierserve.runtime.local.health import HealthProbe, ProbeTarget
from tierserve.runtime.local.process import ProcessHandle, ProcessLauncher

EventSink = Callable[[ReplicaEvent], None]


class ReplicaSupervisor:
    """Keeps one replica's process running; one instance per replica."""

    def __init__(
        self,
        replica: str,
        spec: LaunchSpec,
        launcher: ProcessLauncher,
        probe: HealthProbe,
        clock: Clock,
        config: SupervisorConfig | None = None,
        on_event: EventSink | None = None,
        adopted: ProcessHandle | None = None,
        restarts: int = 0,
    ) -> None:
        """``adopted``: a process ``launcher.adopt`` accepted; ``restarts``: the count so far."""
        self.replica = replica
        self.spec = spec
        self._launcher = launcher
        self._probe = probe
        self._clock = clock
        self.config = config or SupervisorConfig()
        self._target = ProbeTarget(self.config.probe_paths, self.config.probe_timeout_s)
        self._on_event = on_event
        self._handle = adopted
        if adopted is not None:
            self._state = SupervisorState.adopted(clock.now(), restarts)
        else:
            self._state = SupervisorState(restarts=restarts)
        self._start_error = ""
        self._stop_grace_s: float | None = None
        self._wake = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()

    @property
    def state(self) -> SupervisorState:
        return self._state

    @property
    def handle(self) -> ProcessHandle | None:
        """The current process, if one is running or not yet cleaned up."""
        return self._handle

    async def run(self) -> SupervisorState:
        """Supervise until Failed or Stopped; returns the final state."""
        if self._running:
            raise RuntimeError(f"supervisor of {self.replica} is already running")
        self._running = True
        self._done.clear()
        try:
            while True:
                now = self._clock.now()
                seen = await self._observe(now)
                decision = decide(self._state, seen, self.config)
                self._state = decision.state
                self._start_error = ""  # consumed by this decision
                for action in decision.actions:
                    await self._apply(action, now)
                if self._state.stage.terminal:
                    return self._state
                # A failed start is looked at again at once (it becomes a crash).
                await self._wait(0.0 if self._start_error else decision.wake_in_s)
        finally:
            self._running = False
            self._done.set()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop the replica's process (SIGTERM, SIGKILL after ``grace_s``) and the loop."""
        self._stop_grace_s = self.config.grace_s if grace_s is None else grace_s
        self._wake.set()
        if self._running:
            await self._done.wait()
        elif not self._state.stage.terminal:
            await self.run()

    async def _observe(self, now: float) -> Observation:
        handle = self._handle
        running = handle is not None and self._launcher.alive(handle)
        healthy = None
        exit_code = None
        if handle is not None and running and self._state.probe_due(now):
            healthy = await self._probe.healthy(handle.port, self._target)
        elif handle is not None and not running:
            exit_code = self._launcher.exit_code(handle)
        return Observation(
            now_s=now,
            running=running,
            healthy=healthy,
            exit_code=exit_code,
            start_error=self._start_error,
            stop_grace_s=self._stop_grace_s,
        )

    async def _apply(self, action: Action, now: float) -> None:
        if isinstance(action, StartProcess):
            try:
                self._handle = self._launcher.start(self.spec)
            except TierserveError as exc:
                self._handle = None
                self._start_error = str(exc)
        elif isinstance(action, StopProcess):
            if self._handle is not None:
                await self._launcher.terminate(self._handle, action.grace_s)
                self._handle = None
        elif isinstance(action, Report):
            self._emit(action, now)

    def _emit(self, report: Report, now: float) -> None:
        if self._on_event is None:
            return
        handle = self._handle
        self._on_event(
            ReplicaEvent(
                replica=self.replica,
                phase=report.phase,
                reason=report.reason,
                message=report.message,
                restarts=self._state.restarts,
                at_s=now,
                pid=handle.pid if handle else None,
                start_time=handle.start_time if handle else None,
                port=handle.port if handle else self.spec.port,
            )
        )

    async def _wait(self, seconds: float) -> None:
        """Sleep on the clock, or less if ``stop()`` wakes the loop."""
        if self._wake.is_set():
            self._wake.clear()
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wake.clear()
