"""Replica processes of the local runtime: launch, adopt, supervise, stop.

One ``ReplicaSupervisor`` task per running replica. The runner writes nothing to the
store: phase changes the supervisors report (Starting, Ready, Failed, restarts, pid) go
to ``on_event`` (the controllers record them), and ``launch`` returns the port and GPUs
for the caller to record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from tierserve.model import (
    GPU,
    InferenceService,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Replica,
)
from tierserve.policy.devices import pick_gpus
from tierserve.policy.lifecycle import ReplicaEvent, SupervisorConfig, config_for_service
from tierserve.runtime.clock import Clock
from tierserve.runtime.local.command import ReplicaContext, build_launch_spec, replica_dirs
from tierserve.runtime.local.health import HealthProbe
from tierserve.runtime.local.ports import PortAllocator
from tierserve.runtime.local.process import ProcessHandle, ProcessLauncher, sweep_orphans
from tierserve.runtime.local.supervisor import ReplicaSupervisor
from tierserve.runtime.local.volumes import resolve_data_dirs

log = logging.getLogger("tierserve.runtime")

Key = tuple[str, str]


def _ignore(_: ReplicaEvent) -> None:
    pass


def _key(replica: Replica) -> Key:
    return (replica.namespace, replica.name)


@dataclass
class _Running:
    supervisor: ReplicaSupervisor
    task: asyncio.Task[object]
    port: int
    node: str
    gpus: tuple[int, ...] = ()
    stopping: asyncio.Task[None] | None = field(default=None)


class ReplicaRunner:
    """Owns every replica process this control plane started or adopted."""

    def __init__(
        self,
        launcher: ProcessLauncher,
        probe: HealthProbe,
        clock: Clock,
        state_dir: str,
        supervisor: SupervisorConfig | None = None,
        ports: PortAllocator | None = None,
        python: str = sys.executable,
        emulator_args: tuple[str, ...] = (),
    ) -> None:
        self.launcher = launcher
        self.probe = probe
        self.clock = clock
        self.state_dir = state_dir
        self.config = supervisor or SupervisorConfig()
        self.ports = ports or PortAllocator()
        self.python = python
        self.emulator_args = emulator_args
        self._running: dict[Key, _Running] = {}
        self.on_event: Callable[[ReplicaEvent], None] = _ignore
        """Where supervisors' reports go (the controllers record them on the replica)."""

    # -- queries ---------------------------------------------------------------------------

    def has(self, replica: Replica) -> bool:
        return _key(replica) in self._running

    def stopping(self, replica: Replica) -> bool:
        running = self._running.get(_key(replica))
        return running is not None and running.stopping is not None

    def gpus_of(self, replica: Replica) -> tuple[int, ...]:
        """The real GPU indices handed to the replica's process (empty when emulated)."""
        running = self._running.get(_key(replica))
        return running.gpus if running is not None else ()

    def handles(self) -> list[ProcessHandle]:
        return [r.supervisor.handle for r in self._running.values() if r.supervisor.handle]

    # -- launch / adopt ----------------------------------------------------------------------

    def _gpus(self, replica: Replica, node: Node, held: Collection[int]) -> tuple[int, ...]:
        """Free real GPUs of ``node`` for ``replica``: not held by a process this control
        plane runs, nor in ``held`` (recorded on other replicas, e.g. one a restart has yet
        to adopt)."""
        gpu = node.spec.gpu
        if gpu is None or gpu.emulated:
            return ()
        wanted = replica.spec.requests.get(GPU, 0) // 1000
        in_use = {i for r in self._running.values() if r.node == node.name for i in r.gpus}
        in_use.update(held)
        total = node.status.allocatable.get(GPU, 0) // 1000
        return pick_gpus(range(total), sorted(in_use), wanted)

    def launch(
        self,
        replica: Replica,
        service: InferenceService,
        node: Node,
        claims: Iterable[PersistentVolumeClaim],
        volumes: Iterable[PersistentVolume],
        held: Collection[int] = (),
        adopted: ProcessHandle | None = None,
    ) -> tuple[int, tuple[int, ...]]:
        """Start (or take over, with ``adopted``) the replica's process and supervise it;
        its port and real GPU indices, for the caller to record on the replica."""
        data_dirs = resolve_data_dirs(
            service, claims, volumes, default_root=os.path.join(self.state_dir, "volumes")
        )
        for path in data_dirs.values():
            os.makedirs(path, exist_ok=True)
        if adopted is not None:  # the process already has its GPUs: keep them
            gpus = tuple(replica.status.gpus)
            port = adopted.port
            self.ports.reserve(port)
        else:
            gpus = self._gpus(replica, node, held)
            port = self.ports.allocate()
        cwd, log_path = replica_dirs(self.state_dir, replica.namespace, replica.name)
        os.makedirs(cwd, exist_ok=True)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        ctx = ReplicaContext(
            namespace=replica.namespace,
            name=replica.name,
            port=port,
            cwd=cwd,
            log_path=log_path,
            data_dirs=data_dirs,
            gpu_indices=gpus,
            python=self.python,
            emulator_args=self.emulator_args,
        )
        spec = build_launch_spec(service, node, ctx)
        supervisor = ReplicaSupervisor(
            f"{replica.namespace}/{replica.name}",
            spec,
            self.launcher,
            self.probe,
            self.clock,
            config_for_service(self.config, service),
            on_event=self._on_event,
            adopted=adopted,
            restarts=replica.status.restarts,
        )
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(supervisor.run())
        key = _key(replica)
        self._running[key] = _Running(supervisor, task, port, node.name, gpus)
        task.add_done_callback(functools.partial(self._finished, key))
        return port, gpus

    def adopt(
        self,
        replica: Replica,
        service: InferenceService,
        node: Node,
        claims: Iterable[PersistentVolumeClaim],
        volumes: Iterable[PersistentVolume],
    ) -> bool:
        """Take over a replica's process left by a previous control plane, if it is ours."""
        status = replica.status
        if status.pid is None or status.pid_start_time is None or status.port is None:
            return False
        if not self.launcher.adopt(status.pid, status.pid_start_time, status.port):
            return False
        handle = ProcessHandle(
            status.pid, status.pid_start_time, status.port, f"{replica.namespace}/{replica.name}"
        )
        self.launch(replica, service, node, claims, volumes, adopted=handle)
        log.info(
            "adopted replica %s/%s (pid %d, port %d)",
            replica.namespace,
            replica.name,
            status.pid,
            status.port,
        )
        return True

    async def sweep(self, grace_s: float) -> list[ProcessHandle]:
        """Stop every process carrying our state directory that no replica owns."""
        return await sweep_orphans(self.launcher, self.handles(), grace_s)

    # -- stop --------------------------------------------------------------------------------

    def stop(self, replica: Replica, grace_s: float, on_gone: Callable[[Replica], None]) -> None:
        """Stop the replica's process in the background; ``on_gone`` runs once it is gone."""
        running = self._running.get(_key(replica))
        if running is None:
            on_gone(replica)
            return

        async def _stop() -> None:
            try:
                await running.supervisor.stop(grace_s)
            finally:
                self.ports.release(running.port)
                self._running.pop(_key(replica), None)
                on_gone(replica)

        running.stopping = asyncio.get_running_loop().create_task(_stop())

    async def shutdown(self, stop_processes: bool, grace_s: float) -> None:
        """Stop every replica process (``down``), or detach and leave them running (crash-
        safe restart: the next control plane re-adopts them)."""
        running = list(self._running.values())
        if stop_processes:
            await asyncio.gather(
                *(r.supervisor.stop(grace_s) for r in running), return_exceptions=True
            )
        for r in running:
            r.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await r.task
        self._running.clear()

    # -- supervisor events -------------------------------------------------------------------

    def _finished(self, key: Key, _task: object = None) -> None:
        running = self._running.get(key)
        if running is not None and running.stopping is None and running.task.done():
            self.ports.release(running.port)
            self._running.pop(key, None)

    def _on_event(self, event: ReplicaEvent) -> None:
        self.on_event(event)
