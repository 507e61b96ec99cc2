"""``serve update kserve --command`` rolls running replicas onto the new spec, one at a
time, with a Ready replica serving throughout (a Deployment's RollingUpdate)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.testing import control_plane, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    with control_plane(testing.Cli(tmp_path / "state")) as c:
        yield c


def test_update_command_rolls_replicas_with_one_always_ready(
    cli: testing.Cli, server_script: str
) -> None:
    command = f"{sys.executable} {server_script} --port {{port}}"
    cli("serve", "kserve", "--name=svc", "--gpus=0", "--replicas=2", command)
    wait_until(lambda: [p["status"]["phase"] for p in cli.pods()] == ["Ready"] * 2)
    old = {p["metadata"]["name"] for p in cli.pods()}

    # Each new replica takes 2 s to start: the polls (a CLI process each) see the surge.
    cli("serve", "update", "kserve", "--name=svc", "--command", command + " --delay 2")
    deadline = time.monotonic() + 60
    seen_total = 0
    while time.monotonic() < deadline:
        now = cli.pods()
        live = [p for p in now if p["status"]["phase"] != "Terminating"]
        ready = [p for p in now if p["status"]["phase"] == "Ready"]
        assert len(ready) >= 2  # maxUnavailable 0: never fewer Ready than wanted
        assert len(live) <= 3  # 2 wanted + a surge of 1
        seen_total = max(seen_total, len(live))
        names = {p["metadata"]["name"] for p in now}
        if not names & old and len(ready) == 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the replicas were not rolled onto the new command")
    for pod in cli.pods():
        argv = Path(f"/proc/{pod['status']['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--delay" in argv
    assert seen_total == 3  # it surged
