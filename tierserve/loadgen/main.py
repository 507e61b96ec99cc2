"""``tierserve bench`` end to end: flags -> runner -> report -> text or JSON."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import TextIO

from rich.console import Console

from tierserve.errors import ValidationError
from tierserve.loadgen import render
from tierserve.loadgen.flags import USAGE, BenchConfig, parse_flags
from tierserve.loadgen.progress import LiveProgress
from tierserve.loadgen.report import Report, build_report
from tierserve.loadgen.runner import Runner

USAGE_EXIT_CODE = 2
"""Exit status for bad flags (click's and argparse's usage-error status)."""
INTERRUPTED_EXIT_CODE = 130
"""Exit status after a second Ctrl-C (128 + SIGINT, as shells report it)."""


async def run_bench(cfg: BenchConfig, progress: LiveProgress | None = None) -> Report:
    """Run the load test; SIGINT (when this is the main thread) stops it early, as in hey."""
    stop = asyncio.Event()
    runner = Runner(cfg, on_result=progress.update if progress else None, stop=stop)
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()

    def on_sigint() -> None:
        # First Ctrl-C: no new requests, report what completed. Second: give up at once.
        if stop.is_set() and this is not None:
            this.cancel()
        stop.set()

    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        handled = True
    ticker = asyncio.create_task(_tick(progress)) if progress else None
    try:
        if cfg.start_at is not None and (wait := cfg.start_at - time.time()) > 0:
            with contextlib.suppress(TimeoutError):  # Ctrl-C while waiting: nothing is sent
                await asyncio.wait_for(stop.wait(), wait)
        result = await runner.run()
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
    return build_report(result.results, result.total_s, cfg.slo, result.interrupted)


async def _tick(progress: LiveProgress) -> None:
    while True:
        await asyncio.sleep(0.5)
        progress.tick()


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Exit status: 0 when the run completed (whatever the responses), 2 for bad flags."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        cfg = parse_flags(argv)
    except ValidationError as exc:
        for field in exc.errors:
            print(f"error: {field.render(exc.subject)}", file=err)
        print("(tierserve bench --help lists the flags)", file=err)
        return USAGE_EXIT_CODE
    if cfg is None:
        out.write(USAGE)
        return 0
    console = Console(file=err)
    show_progress = cfg.progress and console.is_terminal
    try:
        if show_progress:
            with LiveProgress(cfg, console) as progress:
                report = asyncio.run(run_bench(cfg, progress))
        else:
            report = asyncio.run(run_bench(cfg))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted twice: no report", file=err)
        return INTERRUPTED_EXIT_CODE
    out.write(
        (render.json_text(report, cfg) if cfg.json_output else render.text(report, cfg)) + "\n"
    )
    out.flush()
    return 0
