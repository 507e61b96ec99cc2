"""The clock runtime code reads time from, so tests and the simulator can run on virtual time.

``now()`` is Unix seconds (what ``Replica.status.*_s`` fields hold); ``sleep()`` is
how a loop waits. ``SystemClock`` is the wall clock; ``FakeClock`` is virtual time
that only moves when someone sleeps on it or calls ``advance``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Read once per tick at the edge and pass ``now`` down."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a non-positive value only yields to the event loop)."""
        ...


class SystemClock:
    """The wall clock and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time for tests: ``sleep`` advances time at once and yields to the loop.

    Good for one task driving time (a supervisor under test); tasks that sleep
    concurrently each advance the same clock, so prefer one sleeper per clock.
    """

    def __init__(self, start_s: float = 1_000_000.0) -> None:
        self._now = start_s
        self.slept: list[float] = []
        """Every sleep requested, in order (tests assert back-off sequences on it)."""

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
