"""Replica processes: the ``ProcessLauncher`` protocol and its POSIX implementation.

Each replica runs in its own session (``start_new_session``), so its process group
id is its pid and the whole engine (vLLM's workers included) is signalled as one.
A process is ours when ``(pid, start_time)`` matches what we recorded, where
``start_time`` is field 22 of ``/proc/<pid>/stat``: a recycled pid has another start
time and is never mistaken for a replica. Every replica's environment carries
``TIERSERVE_REPLICA_OWNER`` (the control plane's state directory) and
``TIERSERVE_REPLICA=<namespace>/<name>``, so after a control-plane crash its
processes are found again by scanning ``/proc/*/environ`` (``list_owned``): they are
either re-adopted (``adopt``: pid + start time + port) or stopped (``sweep_orphans``).

Stopping (``terminate``) sends SIGTERM to the group, waits up to the grace period
for every member to exit, then SIGKILLs the group; children we started are reaped
so no zombies remain. The fake lives in ``tierserve.testing.fakes``.
"""

from __future__ import annotations

import asyncio
import os
import signal as signals
import subprocess
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from tierserve.errors import ExternalError
from tierserve.runtime.clock import Clock, SystemClock
from tierserve.runtime.local.command import ENV_PORT, ENV_REPLICA, ENV_REPLICA_OWNER, LaunchSpec
from tierserve.runtime.local.ports import port_open
from tierserve.runtime.local.procfs import PROC, pids, read_environ, read_stat

KILL_WAIT_S = 5.0
"""How long to wait for a SIGKILLed group to disappear before giving up."""


@dataclass(frozen=True)
class ProcessHandle:
    """One replica process: ``(pid, start_time)`` is its identity, ``port`` where it serves."""

    pid: int
    start_time: int
    """``/proc/<pid>/stat`` field 22 (clock ticks after boot)."""
    port: int
    replica: str = ""
    """``<namespace>/<name>`` from the process's environment, when known."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_time)


class ProcessLauncher(Protocol):
    """Starts, watches and stops replica processes; one per state directory."""

    def start(self, spec: LaunchSpec) -> ProcessHandle:
        """Start the process; raises ``ExternalError`` when it cannot be executed."""
        ...

    def alive(self, handle: ProcessHandle) -> bool:
        """Whether this very process (same pid *and* start time) still runs."""
        ...

    def exit_code(self, handle: ProcessHandle) -> int | None:
        """The exit status of a process we started and saw exit (negative: killed by a
        signal); None while it runs or when unknown (an adopted process)."""
        ...

    def signal(self, handle: ProcessHandle, sig: int) -> bool:
        """Send ``sig`` to the process's group; False when nothing of it is left."""
        ...

    async def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        """SIGTERM the group, wait up to ``grace_s``, then SIGKILL; returns once it is gone."""
        ...

    def adopt(self, pid: int, start_time: int, port: int) -> bool:
        """Take over a process a previous control plane started, if it is still that
        process (start time), still ours (state dir) and still serves ``port``."""
        ...

    def list_owned(self) -> list[ProcessHandle]:
        """Every live process carrying our state directory (one per replica session)."""
        ...


async def sweep_orphans(
    launcher: ProcessLauncher, keep: Collection[ProcessHandle], grace_s: float
) -> list[ProcessHandle]:
    """Stop every owned process that is not one of ``keep``; returns what was stopped."""
    kept = {handle.key for handle in keep}
    strays = [handle for handle in launcher.list_owned() if handle.key not in kept]
    await asyncio.gather(*(launcher.terminate(handle, grace_s) for handle in strays))
    return strays


class PosixLauncher:
    """Replicas as real processes on this machine (Linux: it reads ``/proc``)."""

    name = "posix"

    def __init__(
        self,
        state_dir: str,
        clock: Clock | None = None,
        base_env: Mapping[str, str] | None = None,
        poll_s: float = 0.02,
        proc: str = PROC,
    ) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self._clock: Clock = clock or SystemClock()
        env = dict(os.environ if base_env is None else base_env)
        for marker in (ENV_REPLICA_OWNER, ENV_REPLICA, ENV_PORT):
            env.pop(marker, None)  # never inherit another control plane's markers
        self._base_env = env
        self._poll_s = poll_s
        self._proc = proc
        self._children: dict[tuple[int, int], subprocess.Popen[bytes]] = {}
        self._own_session = os.getsid(0)
        self._own_group = os.getpgrp()

    # -- start ---------------------------------------------------------------------------

    def start(self, spec: LaunchSpec) -> ProcessHandle:
        if not spec.argv:
            raise ExternalError(f"replica {spec.replica}: empty command")
        env = {
            **self._base_env,
            **spec.env,
            ENV_REPLICA_OWNER: self.state_dir,
            ENV_PORT: str(spec.port),
        }
        try:
            os.makedirs(spec.cwd, exist_ok=True)
            os.makedirs(os.path.dirname(os.path.abspath(spec.log_path)), exist_ok=True)
            with open(spec.log_path, "ab") as log:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                log.write(f"--- tierserve {stamp}: start {list(spec.argv)}\n".encode())
                log.flush()
                child = subprocess.Popen(
                    list(spec.argv),
                    cwd=spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise ExternalError(
                f"replica {spec.replica}: cannot start {spec.argv[0]!r}: {exc}"
            ) from exc
        stat = read_stat(child.pid, self._proc)
        if stat is None:  # cannot happen before we wait() on it; be loud if it does
            child.kill()
            child.wait()
            raise ExternalError(f"replica {spec.replica}: pid {child.pid} vanished at start")
        handle = ProcessHandle(child.pid, stat.start_time, spec.port, spec.replica)
        self._children[handle.key] = child
        return handle

    # -- watch ---------------------------------------------------------------------------

    def alive(self, handle: ProcessHandle) -> bool:
        child = self._children.get(handle.key)
        if child is not None and child.poll() is not None:
            return False  # exited (and now reaped)
        stat = read_stat(handle.pid, self._proc)
        return stat is not None and stat.start_time == handle.start_time and not stat.zombie

    def exit_code(self, handle: ProcessHandle) -> int | None:
        child = self._children.get(handle.key)
        return None if child is None else child.poll()

    # -- adopt ---------------------------------------------------------------------------

    def adopt(self, pid: int, start_time: int, port: int) -> bool:
        stat = read_stat(pid, self._proc)
        if stat is None or stat.zombie or stat.start_time != start_time:
            return False  # gone, or the pid now belongs to another process
        env = read_environ(pid, self._proc)
        if env.get(ENV_REPLICA_OWNER) != self.state_dir or env.get(ENV_PORT) != str(port):
            return False
        return port_open(port)

    def list_owned(self) -> list[ProcessHandle]:
        found: dict[int, tuple[int, int, dict[str, str]]] = {}
        for pid in pids(self._proc):
            env = read_environ(pid, self._proc)
            if env.get(ENV_REPLICA_OWNER) != self.state_dir or not env.get(ENV_REPLICA):
                continue
            stat = read_stat(pid, self._proc)
            if stat is None or stat.zombie or stat.session == self._own_session:
                continue
            found[pid] = (stat.session, stat.start_time, env)
        owned = []
        for pid, (session, start_time, env) in sorted(found.items()):
            if session != pid and session in found:
                continue  # a child of a listed replica: stopped with its group
            port = env.get(ENV_PORT, "")
            owned.append(
                ProcessHandle(
                    pid, start_time, int(port) if port.isdigit() else 0, env.get(ENV_REPLICA, "")
                )
            )
        return owned

    # -- stop ----------------------------------------------------------------------------

    def signal(self, handle: ProcessHandle, sig: int) -> bool:
        self._reap(handle)
        target = self._target(handle)
        if target is None:
            return False
        try:
            if target < 0:
                os.killpg(-target, sig)
            else:
                os.kill(target, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise ExternalError(f"cannot signal pid {handle.pid}: {exc}") from exc
        return True

    async def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        if self.signal(handle, signals.SIGTERM):
            await self._wait_gone(handle, grace_s)
        if self._remains(handle):
            self.signal(handle, signals.SIGKILL)
            await self._wait_gone(handle, KILL_WAIT_S)
        self._reap(handle)
        self._children.pop(handle.key, None)

    async def _wait_gone(self, handle: ProcessHandle, timeout_s: float) -> None:
        deadline = self._clock.now() + timeout_s
        while self._remains(handle) and self._clock.now() < deadline:
            await self._clock.sleep(self._poll_s)

    def _remains(self, handle: ProcessHandle) -> bool:
        """Whether the process or any live member of its group is still there."""
        if self.alive(handle):
            return True
        target = self._target(handle)
        if target is None or target > 0:
            return False
        group = -target
        for pid in pids(self._proc):
            stat = read_stat(pid, self._proc)
            if stat is not None and stat.pgrp == group and not stat.zombie:
                return True
        return False

    def _target(self, handle: ProcessHandle) -> int | None:
        """What to signal: ``-pgid`` for a replica's group, ``pid`` for a lone process,
        None when the pid now belongs to someone else.

        The kernel does not reuse a pid while a group of that id still has members, so
        once our group leader has exited, members left in group ``pid`` are ours.
        """
        stat = read_stat(handle.pid, self._proc)
        if stat is not None and stat.start_time != handle.start_time:
            return None  # recycled pid: not ours, whatever its group
        if stat is not None and stat.pgrp != handle.pid:
            return handle.pid  # a stray child found by list_owned: not a group leader
        if handle.pid in (self._own_group, os.getpid(), 0, 1):
            return None  # never signal ourselves, our own group or init
        return -handle.pid

    def _reap(self, handle: ProcessHandle) -> None:
        child = self._children.get(handle.key)
        if child is not None:
            child.poll()
