"""The live progress bar of ``tierserve bench`` (rich, on stderr)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tierserve.loadgen.flags import BenchConfig
from tierserve.loadgen.result import RequestResult


class LiveProgress:
    """Requests done out of ``-n`` (or seconds out of ``-z``), errors and output tokens/s.

    A context manager; ``update`` is the runner's ``on_result`` callback.
    """

    def __init__(self, cfg: BenchConfig, console: Console) -> None:
        self._by_time = cfg.duration_s is not None
        self._total = cfg.duration_s if cfg.duration_s is not None else float(cfg.requests)
        self._progress = Progress(
            TextColumn("[bold]bench"),
            BarColumn(),
            TextColumn("{task.fields[done]} done, {task.fields[errors]} errors"),
            TextColumn("{task.fields[tokens]:.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self._task: TaskID | None = None
        self._done = self._errors = self._tokens = 0
        self._t0 = time.monotonic()

    def __enter__(self) -> LiveProgress:
        self._progress.__enter__()
        self._t0 = time.monotonic()
        self._task = self._progress.add_task(
            "bench", total=self._total, done=0, errors=0, tokens=0.0
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def update(self, result: RequestResult) -> None:
        if self._task is None:
            return
        self._done += 1
        self._errors += result.error is not None
        if result.ok:
            self._tokens += result.output_tokens or 0
        self.tick()

    def tick(self) -> None:
        """Redraw; called on every result and twice a second (so ``-z`` time moves on)."""
        if self._task is None:
            return
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        completed = min(elapsed, self._total) if self._by_time else float(self._done)
        self._progress.update(
            self._task,
            completed=completed,
            done=self._done,
            errors=self._errors,
            tokens=self._tokens / elapsed,
        )
