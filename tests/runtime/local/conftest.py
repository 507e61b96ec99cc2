"""Fixtures for the local runtime's tests: a state directory, a tiny replica server,
and a check that no test leaves a process (or a zombie) behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tierserve.runtime.local.command import ENV_REPLICA, ENV_REPLICA_OWNER, LaunchSpec
from tierserve.runtime.local.procfs import pids, read_environ, read_stat

# A stand-in engine: serves GET /health on --port; flags make it misbehave.
SERVER = textwrap.dedent(
    """
    import http.server, os, signal, subprocess, sys, time

    args = sys.argv[1:]
    def flag(name):
        return name in args
    def value(name, default):
        return args[args.index(name) + 1] if name in args else default

    port = int(value("--port", "0"))
    if flag("--ignore-term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if flag("--child"):  # a worker in the same process group, also deaf to SIGTERM
        subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    if flag("--exit-now"):
        sys.exit(int(value("--exit-now", "3")))
    if flag("--crash-first") and not os.path.exists("crashed-once"):
        open("crashed-once", "w").close()
        time.sleep(0.2)
        sys.exit(3)
    time.sleep(float(value("--delay", "0")))
    status = 503 if flag("--never-healthy") else 200

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass

    print("serving on", port, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def state_dir(tmp_path: Path) -> str:
    path = tmp_path / "state"
    path.mkdir()
    return str(path)


@pytest.fixture
def server_script(tmp_path: Path) -> str:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return str(path)


SpecFactory = Callable[..., LaunchSpec]


@pytest.fixture
def make_spec(tmp_path: Path, server_script: str) -> SpecFactory:
    """``make_spec(port, *flags, name="r1")``: a LaunchSpec running the test server."""

    def build(port: int, *flags: str, name: str = "r1") -> LaunchSpec:
        return LaunchSpec(
            argv=(sys.executable, server_script, "--port", str(port), *flags),
            env={ENV_REPLICA: f"default/{name}"},
            cwd=str(tmp_path / "replicas" / name),
            log_path=str(tmp_path / "logs" / f"{name}.log"),
            port=port,
        )

    return build


def _ours(state_dir: str) -> list[int]:
    return [
        pid
        for pid in pids()
        if read_environ(pid).get(ENV_REPLICA_OWNER) == state_dir
        and (stat := read_stat(pid)) is not None
        and not stat.zombie
    ]


def _zombie_children() -> list[int]:
    me = os.getpid()
    return [
        pid
        for pid in pids()
        if (stat := read_stat(pid)) is not None and stat.ppid == me and stat.zombie
    ]


@pytest.fixture
def no_leftovers(state_dir: str) -> Iterator[None]:
    """Fail the test if a process carrying its state dir, or a zombie child, outlives it."""
    yield
    left = _ours(os.path.abspath(state_dir))
    for pid in left:  # clean up before failing, so one failure does not leak
        os.kill(pid, signal.SIGKILL)
    zombies = _zombie_children()
    for pid in zombies:
        os.waitpid(pid, 0)
    assert left == [], f"processes left running: {left}"
    assert zombies == [], f"zombie children left: {zombies}"
