"""``tierserve demo --keep`` ends by pointing at the dashboard it leaves running (the whole
walkthrough is tests/cli/test_demo.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console

from tierserve.cli.demo import DemoSettings, Walkthrough
from tierserve.runtime.local.config import ClientConfig


def test_keep_prints_the_dashboard_url_and_how_to_stop(tmp_path: Path) -> None:
    ClientConfig("http://127.0.0.1:40123", "http://127.0.0.1:40124", "tok3n", os.getpid()).save(
        tmp_path
    )
    out = io.StringIO()
    walk = Walkthrough(
        DemoSettings(keep=True, state_dir=tmp_path), Console(file=out, width=300, highlight=False)
    )
    walk.down()
    text = out.getvalue()
    assert "Dashboard: http://127.0.0.1:40123/dashboard" in text
    assert f"tierserve down --state-dir {tmp_path}" in text
    assert str(tmp_path / "token") in text and "tok3n" not in text
