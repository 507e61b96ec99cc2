"""Idle keep-alive connections to replicas, for the raw path (``upstream.py``).

- ``UpstreamPool.connect(origin, timeout_s)``: an idle connection used less than
  ``keepalive_s`` ago that the replica has not closed, else a new one (``open`` always
  makes a new one).
- ``release(origin, conn)`` keeps it only if its last response was read whole and both
  sides allow keep-alive, and only ``max_idle`` per replica (the oldest go first).
- Idle connections are closed once idle for ``keepalive_s`` -- inside the engines' own
  5 s keep-alive -- by one timer per pool, so a burst leaves no sockets behind.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque

from tierserve.gateway.upstream import Origin, UpstreamConnection


def _peer_closed(conn: UpstreamConnection) -> bool:
    """Whether the socket of an idle connection has something to read: the replica's
    FIN (it closed the connection) or bytes nobody asked for -- either way it is not
    to be reused. Checked before reuse because the event loop may not have run since
    they arrived (urllib3's ``is_connection_dropped`` does the same)."""
    transport = conn.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class UpstreamPool:
    """Idle keep-alive connections per replica origin, newest reused first.

    ``keepalive_s``: how long an idle connection is kept (and reusable); ``max_idle``:
    how many are kept per origin."""

    def __init__(self, keepalive_s: float, max_idle: int = 128) -> None:
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self._idle: dict[Origin, deque[UpstreamConnection]] = {}
        """Oldest first (``idle_since`` ascending): released at the end, reused from it."""
        self._reaper: asyncio.TimerHandle | None = None

    async def connect(self, origin: Origin, timeout_s: float) -> UpstreamConnection:
        """A pooled connection, or a new one (``TimeoutError`` after ``timeout_s``,
        ``OSError`` if refused)."""
        loop = asyncio.get_running_loop()
        idle = self._idle.get(origin)
        if idle:
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if now - conn.idle_since < self.keepalive_s and not _peer_closed(conn):
                    conn.reused = True
                    return conn
                conn.close()
        return await self.open(origin, timeout_s)

    async def open(self, origin: Origin, timeout_s: float) -> UpstreamConnection:
        """A new connection, never a pooled one."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(loop), origin.host, origin.port
            )
        return conn

    def release(self, origin: Origin, conn: UpstreamConnection) -> None:
        if not conn.reusable or self.max_idle == 0:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.recycle(loop.time())
        conn.reused = False
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        idle.append(conn)
        while len(idle) > self.max_idle:
            idle.popleft().close()
        if self._reaper is None:
            self._reaper = loop.call_at(conn.idle_since + self.keepalive_s, self._reap)

    def _reap(self) -> None:
        """Close connections idle for ``keepalive_s``; again when the next one will be."""
        self._reaper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_at: float | None = None
        for origin in list(self._idle):
            idle = self._idle[origin]
            while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive_s):
                idle.popleft().close()
            if not idle:
                del self._idle[origin]
                continue
            for conn in [c for c in idle if c.closed]:  # closed by the replica meanwhile
                idle.remove(conn)
            if idle:
                at = idle[0].idle_since + self.keepalive_s
                next_at = at if next_at is None else min(next_at, at)
        if next_at is not None:
            self._reaper = loop.call_at(next_at, self._reap)

    def idle(self, origin: Origin) -> int:
        """Idle connections kept for ``origin`` now."""
        return sum(not c.closed for c in self._idle.get(origin, ()))

    def idle_total(self) -> int:
        """Idle connections kept now, over every origin."""
        return sum(self.idle(origin) for origin in self._idle)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
