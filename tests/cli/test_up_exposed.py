"""``up --host`` beyond loopback with no gateway API keys warns before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tierserve.cli.local import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("gpu-box.internal", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _up(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("kind: Nope\n")  # fails validation: nothing is started or bound
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "up", "--state-dir", str(tmp_path / "s"),
         "--cluster", str(bad), *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_open_host_without_keys_warns(tmp_path: Path) -> None:
    out = _up(tmp_path, "--host", "0.0.0.0")
    assert out.returncode == 1
    assert "warning: --host 0.0.0.0 exposes the gateway" in out.stderr
    assert "--api-key" in out.stderr


def test_keys_or_loopback_do_not_warn(tmp_path: Path) -> None:
    assert "warning" not in _up(tmp_path, "--host", "0.0.0.0", "--api-key", "k1").stderr
    assert "warning" not in _up(tmp_path).stderr
