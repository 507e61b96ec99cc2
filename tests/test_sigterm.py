"""SIGTERM to a test run tears its fixtures down: no process a fixture started is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tierserve.testing import wait_until

CONFTEST = """
from tierserve.testing import interrupt_on_sigterm

def pytest_configure(config):
    interrupt_on_sigterm()
"""

TEST = """
import os, subprocess, time
from pathlib import Path

import pytest

OUT = Path(os.environ["SIGTERM_TEST_OUT"])

@pytest.fixture
def server():
    # In its own session, as the Kubernetes testbed starts its processes: a signal to the
    # test run's process group does not reach it; only the fixture's teardown stops it.
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (OUT / "child.pid").write_text(str(proc.pid))
    yield proc
    proc.terminate()
    proc.wait(10)
    (OUT / "torn-down").write_text("yes")

def test_runs_long(server):
    (OUT / "running").write_text("yes")
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _run(tmp_path: Path, with_handler: bool) -> tuple[int, int, Path]:
    suite = tmp_path / ("with" if with_handler else "without")
    suite.mkdir()
    if with_handler:
        (suite / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (suite / "test_long.py").write_text(textwrap.dedent(TEST))
    env = {**os.environ, "SIGTERM_TEST_OUT": str(suite)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite)],
        cwd=suite,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (suite / "running").exists(), 60, "the test to start")
        child = int((suite / "child.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, child, suite


def test_sigterm_tears_fixtures_down(tmp_path: Path) -> None:
    rc, child, suite = _run(tmp_path, with_handler=True)
    assert (suite / "torn-down").exists(), "the fixture's teardown did not run"
    assert not _alive(child), f"the fixture's process {child} outlived the test run"
    assert rc != 0  # an interrupted run is not a pass


def test_without_the_handler_the_process_is_orphaned(tmp_path: Path) -> None:
    """The failure the handler prevents (Python's default for SIGTERM), so the test above
    cannot pass by accident."""
    rc, child, suite = _run(tmp_path, with_handler=False)
    try:
        assert not (suite / "torn-down").exists()
        assert _alive(child)
        assert rc == -signal.SIGTERM
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
