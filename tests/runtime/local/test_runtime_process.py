"""The POSIX launcher with real processes: start, stop, SIGKILL after the grace,
re-adoption after a control-plane crash, and the orphan sweep."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tierserve.errors import ExternalError
from tierserve.runtime.local.command import ENV_REPLICA, ENV_REPLICA_OWNER, LaunchSpec
from tierserve.runtime.local.health import HttpHealthProbe, ProbeTarget
from tierserve.runtime.local.ports import PortAllocator, port_open
from tierserve.runtime.local.process import PosixLauncher, ProcessHandle, sweep_orphans
from tierserve.runtime.local.procfs import descendants, read_environ, read_stat

pytestmark = pytest.mark.usefixtures("no_leftovers")
SpecFactory = Callable[..., LaunchSpec]


async def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    assert callable(condition)
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_start_serves_health_and_carries_markers(
    state_dir: str, make_spec: SpecFactory
) -> None:
    launcher = PosixLauncher(state_dir)
    port = PortAllocator().allocate()
    spec = make_spec(port)
    handle = launcher.start(spec)
    probe = HttpHealthProbe()
    try:
        assert handle.pid > 0 and handle.port == port and handle.replica == "default/r1"
        assert launcher.alive(handle)
        await wait_for(lambda: port_open(port))
        assert await probe.healthy(port, ProbeTarget(timeout_s=0.5))
        stat = read_stat(handle.pid)
        assert stat is not None and stat.start_time == handle.start_time
        assert stat.session == handle.pid == stat.pgrp  # its own session and group
        env = read_environ(handle.pid)
        assert env[ENV_REPLICA_OWNER] == os.path.abspath(state_dir)
        assert env["TIERSERVE_PORT"] == str(port)
        assert launcher.list_owned() == [handle]
    finally:
        await probe.close()
        await launcher.terminate(handle, grace_s=2.0)
    assert not launcher.alive(handle)
    assert launcher.exit_code(handle) is None  # forgotten once terminated
    assert not await HttpHealthProbe().healthy(port, ProbeTarget(timeout_s=0.2))
    log = Path(spec.log_path).read_text()
    assert "tierserve" in log and "serving on" in log


async def test_exit_code_of_a_crashed_process(state_dir: str, make_spec: SpecFactory) -> None:
    launcher = PosixLauncher(state_dir)
    handle = launcher.start(make_spec(PortAllocator().allocate(), "--exit-now", "7"))
    await wait_for(lambda: not launcher.alive(handle))
    assert launcher.exit_code(handle) == 7
    await launcher.terminate(handle, grace_s=0.1)  # nothing left; a no-op


async def test_sigkill_after_grace_for_a_group_deaf_to_sigterm(
    state_dir: str, make_spec: SpecFactory
) -> None:
    launcher = PosixLauncher(state_dir)
    port = PortAllocator().allocate()
    handle = launcher.start(make_spec(port, "--ignore-term", "--child"))
    await wait_for(lambda: port_open(port) and len(descendants(handle.pid)) == 2)
    child = (descendants(handle.pid) - {handle.pid}).pop()
    began = time.monotonic()
    await launcher.terminate(handle, grace_s=0.2)
    took = time.monotonic() - began
    assert 0.2 <= took < 3.0
    assert not launcher.alive(handle)
    # The worker in the same group was killed too (it may linger as init's zombie).
    stat = read_stat(child)
    assert stat is None or stat.zombie


async def test_readopt_after_forgetting_the_handle(state_dir: str, make_spec: SpecFactory) -> None:
    first = PosixLauncher(state_dir)
    port = PortAllocator().allocate()
    handle = first.start(make_spec(port))
    await wait_for(lambda: port_open(port))

    second = PosixLauncher(state_dir)  # a new control plane: knows only pid, start time, port
    assert second.adopt(handle.pid, handle.start_time, port)
    assert not second.adopt(handle.pid, handle.start_time + 1, port)  # a recycled pid
    assert not second.adopt(handle.pid, handle.start_time, port + 1)  # not its port
    me = read_stat(os.getpid())
    assert me is not None
    assert not second.adopt(os.getpid(), me.start_time, port)  # alive, but not a replica
    assert not second.adopt(4_000_000, 1, port)  # no such pid
    assert not PosixLauncher(state_dir + "-other").adopt(handle.pid, handle.start_time, port)
    assert second.list_owned() == [handle]

    await second.terminate(handle, grace_s=2.0)
    assert not second.alive(handle)
    assert not first.alive(handle)  # reaps the zombie the first launcher's child left


CONTROL_PLANE = textwrap.dedent(
    """
    import json, sys, time
    from tierserve.runtime.local.command import LaunchSpec
    from tierserve.runtime.local.ports import port_open
    from tierserve.runtime.local.process import PosixLauncher

    state_dir, spec = sys.argv[1], json.loads(sys.argv[2])
    launcher = PosixLauncher(state_dir)
    handle = launcher.start(LaunchSpec(argv=tuple(spec["argv"]), env=spec["env"],
                                       cwd=spec["cwd"], log_path=spec["log_path"],
                                       port=spec["port"]))
    while not port_open(handle.port):
        time.sleep(0.02)
    print(json.dumps([handle.pid, handle.start_time, handle.port]), flush=True)
    time.sleep(60)
    """
)


async def test_replica_survives_a_control_plane_sigkill_and_is_readopted(
    state_dir: str, make_spec: SpecFactory, tmp_path: Path
) -> None:
    script = tmp_path / "control_plane.py"
    script.write_text(CONTROL_PLANE)
    spec = make_spec(PortAllocator().allocate())
    encoded = json.dumps(
        {
            "argv": spec.argv,
            "env": dict(spec.env),
            "cwd": spec.cwd,
            "log_path": spec.log_path,
            "port": spec.port,
        }
    )
    control = subprocess.Popen(
        [sys.executable, str(script), state_dir, encoded], stdout=subprocess.PIPE, text=True
    )
    assert control.stdout is not None
    pid, start_time, port = json.loads(control.stdout.readline())
    control.send_signal(signal.SIGKILL)
    control.wait()
    control.stdout.close()

    launcher = PosixLauncher(state_dir)
    assert launcher.adopt(pid, start_time, port)
    handle = ProcessHandle(pid, start_time, port, "default/r1")
    assert launcher.list_owned() == [handle]
    assert await sweep_orphans(launcher, keep=[handle], grace_s=1.0) == []
    assert launcher.alive(handle)
    await launcher.terminate(handle, grace_s=2.0)
    assert not launcher.alive(handle)


async def test_orphan_sweep_stops_strays_and_keeps_known_replicas(
    state_dir: str, make_spec: SpecFactory
) -> None:
    launcher = PosixLauncher(state_dir)
    ports = PortAllocator()
    kept = launcher.start(make_spec(ports.allocate(), name="kept"))
    stale = launcher.start(make_spec(ports.allocate(), name="stale"))
    # A stray started by someone else but carrying our state dir (a replica whose
    # record was lost), and a process of another control plane that must survive.
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, ENV_REPLICA_OWNER: os.path.abspath(state_dir), ENV_REPLICA: "default/x"},
        start_new_session=True,
    )
    # A process with our marker but no replica (e.g. a user's shell) is never ours.
    shell = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, ENV_REPLICA_OWNER: os.path.abspath(state_dir)},
        start_new_session=True,
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, ENV_REPLICA_OWNER: os.path.abspath(state_dir) + "-other"},
        start_new_session=True,
    )
    try:
        await wait_for(lambda: read_environ(stray.pid).get(ENV_REPLICA_OWNER) is not None)
        await wait_for(lambda: read_environ(other.pid).get(ENV_REPLICA_OWNER) is not None)
        stopped = await sweep_orphans(launcher, keep=[kept], grace_s=1.0)
        assert sorted(h.pid for h in stopped) == sorted([stale.pid, stray.pid])
        assert stray.wait(timeout=5) == -signal.SIGTERM
        assert launcher.alive(kept) and not launcher.alive(stale)
        assert other.poll() is None
        assert shell.poll() is None
    finally:
        for proc in (other, shell):
            proc.kill()
            proc.wait()
        await launcher.terminate(kept, grace_s=2.0)


def test_an_unexecutable_command_is_an_external_error(state_dir: str, tmp_path: Path) -> None:
    spec = LaunchSpec(
        argv=(str(tmp_path / "no-such-engine"),),
        env={},
        cwd=str(tmp_path / "cwd"),
        log_path=str(tmp_path / "log" / "r.log"),
        port=1,
    )
    with pytest.raises(ExternalError, match="cannot start"):
        PosixLauncher(state_dir).start(spec)


def test_port_allocator_hands_out_distinct_free_ports() -> None:
    ports = PortAllocator()
    got = [ports.allocate() for _ in range(20)]
    assert len(set(got)) == 20
    ports.release(got[0])
    ports.reserve(12345)
    assert got[0] not in ports.taken and 12345 in ports.taken
    assert not port_open(got[1], timeout_s=0.2)
