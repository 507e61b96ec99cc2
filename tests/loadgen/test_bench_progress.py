"""The live progress bar draws on a terminal and counts results."""

from __future__ import annotations

import io

from rich.console import Console

from tierserve.loadgen.flags import parse_flags
from tierserve.loadgen.progress import LiveProgress
from tierserve.loadgen.result import RequestResult


def test_progress_counts_done_errors_and_tokens() -> None:
    cfg = parse_flags(["-n", "3", "-c", "1", "http://127.0.0.1:9/"])
    assert cfg is not None
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=120)
    with LiveProgress(cfg, console) as progress:
        progress.update(RequestResult(0, 0.0, status=200, completion_tokens=512))
        progress.update(RequestResult(1, 0.1, error="refused"))
        progress.tick()
    assert "2 done, 1 errors" in sink.getvalue()
