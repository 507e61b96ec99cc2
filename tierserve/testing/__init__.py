"""Test support, shared by tests that run tierserve for real: the ``tierserve`` command as
a subprocess on its own state directory, polling, the replica processes a state directory
owns, and the seed's InferenceService.

Nothing in tierserve imports this module; it needs only the standard library (no pytest),
so any test directory can import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tierserve.examples import SEED_COMMAND
from tierserve.runtime.local.command import ENV_REPLICA_OWNER
from tierserve.runtime.local.config import ENV_STATE_DIR
from tierserve.runtime.local.procfs import pids, read_environ


def replica_pids(state_dir: Path | str) -> list[int]:
    """Processes of the replicas the control plane of ``state_dir`` started, read from the
    process table (the launcher marks each with its state directory)."""
    owner = str(state_dir)
    return [p for p in pids() if read_environ(p).get(ENV_REPLICA_OWNER) == owner]


def interruptible() -> None:
    """A ``preexec_fn`` for a child a test stops with SIGINT (Ctrl-C): SIGINT at its
    default, so Python raises KeyboardInterrupt there even when the test runs in a
    background job, whose children inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (call it from a
    ``pytest_configure``). ``timeout``, CI runners and ``kill`` stop a test run with
    SIGTERM, whose default ends Python at once: no fixture is torn down, and every process
    a fixture started in its own session (the Kubernetes testbed's etcd, apiserver,
    scheduler, controller-manager and tierserve's extender) is left running. As a
    KeyboardInterrupt, pytest stops the run and tears its fixtures down, as on Ctrl-C."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def wait_until(
    what: Callable[[], bool], timeout_s: float = 30.0, message: str = "", every_s: float = 0.2
) -> None:
    """Poll ``what`` every ``every_s`` until it is true; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting: {message}")


class Cli:
    """``tierserve`` run as a user runs it (``python -m tierserve.cli.main``), with
    ``$TIERSERVE_STATE_DIR`` set to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, ENV_STATE_DIR: str(root)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The finished command; with ``check``, AssertionError (with its stderr) if it failed."""
        result = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tierserve {' '.join(args)} failed:\n{result.stderr}")
        return result

    def config(self) -> dict[str, Any]:
        """The running control plane's ``client.json``: ``api_url``, ``token``, ``pid``, ..."""
        data: dict[str, Any] = json.loads((self.root / "client.json").read_text())
        return data

    def replica_pids(self) -> list[int]:
        return replica_pids(self.root)

    def pods(self) -> list[dict[str, Any]]:
        """The replicas, as ``tierserve get pods -o json`` lists them."""
        items: list[dict[str, Any]] = json.loads(self("get", "pods", "-o", "json").stdout)["items"]
        return items


C = TypeVar("C", bound=Cli)


@contextlib.contextmanager
def control_plane(cli: C, *extra: str, virtual_cold_start_s: float | None = 1.0) -> Iterator[C]:
    """``tierserve up --detach`` with short delays (1 s virtual cold start, 0.1 s ticks,
    2 s stop grace, no drain grace) plus ``extra``; on exit ``tierserve down``, then an
    AssertionError if any replica process is left behind. ``virtual_cold_start_s=None``
    leaves the cold start as configured (a ``--cluster`` file with no virtual node)."""
    cold = (
        ()
        if virtual_cold_start_s is None
        else ("--virtual-cold-start-s", f"{virtual_cold_start_s:g}")
    )
    cli(
        "up",
        "--detach",
        *cold,
        "--tick-s",
        "0.1",
        "--stop-grace-s",
        "2",
        "--drain-grace-s",
        "0",
        *extra,
    )
    try:
        yield cli
    finally:
        cli("down", check=False)
        assert cli.replica_pids() == [], "replica processes left behind"


def seed_service_yaml(replicas: int = 1, engine_flags: str = "") -> str:
    """The seed's InferenceService ``deepseek`` (1 GPU, 4 CPU, 12Gi, the seed's model
    volume and command) with ``replicas``; ``engine_flags`` go after the command, e.g.
    ``--time-scale 0.01`` so that an emulated engine starts in a fraction of a second."""
    command = f"{SEED_COMMAND} {engine_flags}".rstrip()
    return f"""\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: deepseek}}
spec:
  gpus: 1
  cpu: "4"
  memory: 12Gi
  replicas: {replicas}
  data: ["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"]
  command: {json.dumps(command)}
"""


__all__ = ["Cli", "control_plane", "replica_pids", "seed_service_yaml", "wait_until"]
