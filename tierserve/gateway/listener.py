"""The gateway's listening sockets, accepting every pending connection at once.

Why not ``loop.create_server``: uvloop (0.23, libuv 1.52) accepts one connection per
loop iteration. On a gateway busy relaying thousands of streams an iteration lasts up
to ~0.6 s, so it accepted 13-60 connections a second per process while its 2,048-deep
accept queue stayed full, and new streams waited 16-22 s for their first chunk
(docs/gateway.md, "10,000 streams"). asyncio's own loop accepts up to the backlog per
iteration; this does the same on either loop: when a listening socket is readable it
accepts until the queue is empty (at most ``ACCEPT_BATCH``), and each connection is
handed to the loop's ``connect_accepted_socket`` with the server's protocol.

Errors as asyncio's server treats them: out of file descriptors or buffers, accepting
pauses for ``ACCEPT_RETRY_DELAY_S`` (the kernel keeps the queue meanwhile); a
connection reset before it was accepted is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

ACCEPT_BATCH = 1024
"""Connections accepted per readiness of one listening socket, at most."""

ACCEPT_RETRY_DELAY_S = 1.0
"""Pause after running out of file descriptors or buffers (asyncio's own delay)."""

_PAUSE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})


def bind_sockets(host: str, port: int, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """Listening, non-blocking sockets on every address ``host`` resolves to (as
    ``loop.create_server`` binds them); an address that cannot be bound raises
    ``OSError`` with its errno, and nothing stays open."""
    infos = socket.getaddrinfo(
        host or None,  # "": every interface, as create_server binds it
        port,
        family=socket.AF_UNSPEC,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {reason}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts on ``sockets`` until closed; each connection gets ``factory()``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.BaseProtocol],
        sockets: list[socket.socket],
        batch: int = ACCEPT_BATCH,
        retry_delay_s: float = ACCEPT_RETRY_DELAY_S,
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.sockets = sockets
        self.batch = batch
        self.retry_delay_s = retry_delay_s
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self.batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except OSError as exc:
                if exc.errno in _SKIP_ERRNOS:
                    continue
                if exc.errno in _PAUSE_ERRNOS:
                    log.warning("gateway: cannot accept (%s); pausing accepts for %g s",
                                exc, self.retry_delay_s)  # fmt: skip
                    self.loop.remove_reader(sock.fileno())
                    self.loop.call_later(self.retry_delay_s, self._resume, sock)
                    return
                raise
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError as exc:  # the client left before its transport was made
            log.debug("gateway: dropping an accepted connection: %s", exc)
            conn.close()

    async def close(self) -> None:
        """Stop accepting and close the sockets; connections already handed to the
        server stay (the server's shutdown closes them)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock.fileno())
            sock.close()
        for task in list(self._pending):  # each ends within a loop iteration
            with contextlib.suppress(OSError):
                await task
