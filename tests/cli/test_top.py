"""``tierserve top`` in a real pseudo-terminal (tmux): it renders the overview, updates it
as the service scales out to the cloud, and exits 0 on Ctrl-C with the terminal restored
(alternate screen left, cursor shown). ``dashboard`` prints the URL, never the token."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.examples import seed_text
from tierserve.testing import control_plane, seed_service_yaml, wait_until

pytestmark = pytest.mark.slow
ENGINE_FLAGS = "--time-scale 0.01"


class Tmux:
    """A tmux server of its own (``-L``), one window of 200x50."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"tierserve-top-{uuid.uuid4().hex[:8]}"
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True, text=True, check=True, env=self.env, timeout=20,
        ).stdout  # fmt: skip

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def flag(self, name: str) -> str:
        return self("display-message", "-p", "-t", "top", f"#{{{name}}}").strip()

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    with control_plane(testing.Cli(tmp_path / "state"), "--hpa-period-s", "0.3") as c:
        yield c


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_renders_updates_and_exits_on_ctrl_c(cli: testing.Cli, tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml"))
    svc = tmp_path / "svc.yaml"
    svc.write_text(seed_service_yaml(1, ENGINE_FLAGS))
    cli("apply", "-f", str(seed))
    cli("apply", "-f", str(svc))

    once = cli("top", "--once").stdout
    assert "default/deepseek" in once and "idc001" in once

    done = tmp_path / "exit-code"
    top = shlex.join([sys.executable, "-m", "tierserve.cli.main", "top", "--interval-s", "0.3"])
    # After top: its exit code, then the shell stays so the restored screen can be read.
    script = f"{top}; echo $? > {shlex.quote(str(done))}; echo TOP-EXITED; sleep 60"
    tmux = Tmux({**cli.env, "TERM": "xterm-256color"})
    try:
        window = ("-x", "200", "-y", "50")
        tmux("new-session", "-d", "-s", "top", *window, f"bash -c {shlex.quote(script)}")
        wait_until(lambda: "default/deepseek" in tmux.screen(), message="top draws the service")
        wait_until(lambda: " 1/1 " in tmux.screen(), message="one IDC replica Ready")
        assert tmux.flag("alternate_on") == "1"  # a full-screen view, like top(1)
        first = tmux.screen()
        assert "Nodes" in first and "virtual-kubelet-cn-hangzhou-b" in first

        svc.write_text(seed_service_yaml(3, ENGINE_FLAGS))
        cli("apply", "-f", str(svc))
        wait_until(
            lambda: " 2/2 " in tmux.screen(), timeout_s=60, message="two cloud replicas Ready"
        )
        assert "SuccessfulRescale" in tmux.screen() or "Scheduled" in tmux.screen()

        tmux("send-keys", "-t", "top", "C-c")
        wait_until(lambda: done.exists() and done.read_text().strip() != "", message="top exits")
        assert done.read_text().strip() == "0"
        wait_until(lambda: "TOP-EXITED" in tmux.screen(), message="the shell's screen is back")
        assert tmux.flag("alternate_on") == "0"
        assert tmux.flag("cursor_flag") == "1"
        assert "Traceback" not in tmux.screen() and "default/deepseek" not in tmux.screen()
    finally:
        tmux.kill()


def test_dashboard_prints_the_url_and_the_token_file_not_the_token(
    cli: testing.Cli, tmp_path: Path
) -> None:
    out = cli("dashboard").stdout
    config = cli.config()
    url = f"{config['api_url']}/dashboard"
    assert f"Dashboard: {url}" in out
    assert str(cli.root / "token") in out
    assert config["token"] not in out
    # --open hands the URL (and only it) to the browser ($BROWSER: a stand-in here).
    opened = tmp_path / "opened"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    cli.env["BROWSER"] = f"{sys.executable} {browser} %s"
    cli("dashboard", "--open")
    assert opened.read_text() == url


def test_top_without_a_control_plane_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "TIERSERVE_STATE_DIR": str(tmp_path / "none")}
    result = subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "top", "--once"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
