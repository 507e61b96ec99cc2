"""In-memory fakes of the process launcher and the health probe, for tests.

``FakeProcessTable`` plays the machine: its processes outlive any one
``FakeLauncher``, so a test can "crash" the control plane by dropping the launcher
and re-adopting with a new one on the same table.
"""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass, field

from tierserve.errors import ExternalError
from tierserve.runtime.clock import Clock, FakeClock
from tierserve.runtime.local.command import LaunchSpec
from tierserve.runtime.local.health import ProbeTarget
from tierserve.runtime.local.process import ProcessHandle


@dataclass
class FakeProcess:
    spec: LaunchSpec
    handle: ProcessHandle
    state_dir: str
    running: bool = True
    exit_code: int | None = None
    ignores_sigterm: bool = False
    listening: bool = True
    signals: list[int] = field(default_factory=list)


class FakeProcessTable:
    """The fake machine's process table; pids count up from ``first_pid``."""

    def __init__(self, first_pid: int = 1000) -> None:
        self.processes: dict[int, FakeProcess] = {}
        self._next_pid = first_pid

    def spawn(self, spec: LaunchSpec, state_dir: str) -> FakeProcess:
        pid = self._next_pid
        self._next_pid += 1
        handle = ProcessHandle(pid, start_time=pid * 100, port=spec.port, replica=spec.replica)
        process = FakeProcess(spec=spec, handle=handle, state_dir=state_dir)
        self.processes[pid] = process
        return process

    def exit(self, pid: int, code: int = 1) -> None:
        """The process exits by itself (a crash when ``code`` is not 0)."""
        process = self.processes[pid]
        process.running = False
        process.exit_code = code

    def running(self) -> list[FakeProcess]:
        return [p for p in self.processes.values() if p.running]


class FakeLauncher:
    """A ``ProcessLauncher`` over a ``FakeProcessTable``; ``fail_starts`` makes the next
    starts raise as an unexecutable command would."""

    name = "fake"

    def __init__(
        self,
        state_dir: str = "/fake/state",
        table: FakeProcessTable | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.table = table or FakeProcessTable()
        self._clock: Clock = clock or FakeClock()
        self.fail_starts = 0
        self.started: list[LaunchSpec] = []
        self._mine: set[int] = set()

    def start(self, spec: LaunchSpec) -> ProcessHandle:
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise ExternalError(f"replica {spec.replica}: cannot start {spec.argv[0]!r}")
        self.started.append(spec)
        process = self.table.spawn(spec, self.state_dir)
        self._mine.add(process.handle.pid)
        return process.handle

    def _find(self, handle: ProcessHandle) -> FakeProcess | None:
        process = self.table.processes.get(handle.pid)
        if process is None or process.handle.start_time != handle.start_time:
            return None
        return process

    def alive(self, handle: ProcessHandle) -> bool:
        process = self._find(handle)
        return process is not None and process.running

    def exit_code(self, handle: ProcessHandle) -> int | None:
        process = self._find(handle)
        if process is None or handle.pid not in self._mine:
            return None
        return process.exit_code

    def signal(self, handle: ProcessHandle, sig: int) -> bool:
        process = self._find(handle)
        if process is None or not process.running:
            return False
        process.signals.append(sig)
        if sig == signals.SIGKILL or (sig == signals.SIGTERM and not process.ignores_sigterm):
            process.running = False
            process.exit_code = -sig
        return True

    async def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        if self.signal(handle, signals.SIGTERM) and self.alive(handle):
            await self._clock.sleep(grace_s)
            self.signal(handle, signals.SIGKILL)

    def adopt(self, pid: int, start_time: int, port: int) -> bool:
        process = self.table.processes.get(pid)
        return (
            process is not None
            and process.running
            and process.handle.start_time == start_time
            and process.state_dir == self.state_dir
            and process.handle.port == port
            and process.listening
        )

    def list_owned(self) -> list[ProcessHandle]:
        return [p.handle for p in self.table.running() if p.state_dir == self.state_dir]


class FakeHealthProbe:
    """Healthy exactly for the ports in ``healthy_ports``; counts probes per port."""

    def __init__(self, healthy_ports: set[int] | None = None) -> None:
        self.healthy_ports: set[int] = set() if healthy_ports is None else healthy_ports
        self.probes: dict[int, int] = {}
        self.targets: dict[int, ProbeTarget] = {}
        """The last check each port was asked (paths, timeout)."""

    async def healthy(self, port: int, target: ProbeTarget) -> bool:
        self.probes[port] = self.probes.get(port, 0) + 1
        self.targets[port] = target
        return port in self.healthy_ports
