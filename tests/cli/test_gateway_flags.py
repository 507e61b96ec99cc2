"""``tierserve gateway`` takes the connection limits as flags, validated like the rest."""

from __future__ import annotations

import subprocess
import sys


def _gateway(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "gateway", *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_limits_are_flags_with_defaults() -> None:
    out = _gateway("--help")
    assert out.returncode == 0
    for flag in ("--client-header-timeout-s", "--client-body-timeout-s", "--client-keepalive-s",
                 "--upstream-keepalive-s", "--upstream-max-idle"):  # fmt: skip
        assert flag in out.stdout


def test_a_bad_limit_is_refused_before_serving() -> None:
    out = _gateway("--port", "0", "--client-header-timeout-s", "0")
    assert out.returncode != 0
    assert out.stderr.startswith("error: --client-header-timeout-s: 0.0 must be > 0")
