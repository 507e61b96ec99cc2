"""A small HTTP/1.1 client for the gateway's requests: per-replica keep-alive connections
whose protocol reads an answer whole, or relays a replica's SSE body to the client
without a coroutine per chunk.

Why: through aiohttp's client every SSE event (one HTTP chunk each, as vLLM writes
them) is parsed into a ``StreamReader`` with flow-control calls, wakes the handler
task, and is written back with ``await resp.write``; that is most of the gateway's
CPU per stream (docs/gateway.md). Here ``data_received`` strips the replica's chunk
framing (``framing.ChunkedBody``) and, once the client's response has started, writes
what one read brought to the client at once, as one chunk in one write. (It did so one
``call_soon`` later, to batch reads; but the event loop reads a socket once per
iteration, so there was nothing to batch, only a callback per read and an iteration
of delay.) The body's end leaves from ``data_received`` too: the last payload and the
last chunk, ``0\r\n\r\n``, in one write (``relay_to(client, ends=True)``). The handler
task only wakes to finish its bookkeeping after the end, for a failure, or for
back-pressure.

Why the end does not wait for the handler: uvloop (libuv) runs I/O callbacks such as
``data_received`` in its poll phase and task steps only after it, and while every
``epoll_wait`` returns a full batch (1,024 events) libuv polls again, up to 48 times,
before leaving the phase. On a gateway saturated with streams that phase lasted up to
2.6 s, and each stream's last chunk, written by the woken handler, waited for it
(docs/gateway.md, "10,000 streams").

- ``pool.UpstreamPool`` keeps idle connections per replica for reuse.
- ``UpstreamConnection``: ``send(request)``, then ``wait()`` (wakes on any progress)
  until ``head`` and the first ``pieces`` (or the end) arrived; ``relay_to(client)``
  then writes the payload, framed as chunks, straight to the client's transport (and,
  with ``ends=True``, the body's end: ``ended``).
  Back-pressure: past the client transport's high-water mark, reading from the
  replica pauses (``need_drain``) until the handler drained and called ``resume()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp
from yarl import URL

from tierserve.gateway.framing import Body, FramingError, ResponseHead, body_decoder, parse_head
from tierserve.gateway.framing import reusable as _reusable


def _default_accept_encoding() -> str:
    # What aiohttp's client adds when the caller does not (``ClientRequest.DEFAULT_HEADERS``,
    # a public class attribute), so a replica sees the same request headers on either path
    # (tests/gateway/test_gw_raw_stream.py compares them).
    defaults = {str(k): v for k, v in aiohttp.ClientRequest.DEFAULT_HEADERS.items()}
    return defaults.get("Accept-Encoding", "gzip, deflate")


ACCEPT_ENCODING = _default_accept_encoding()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a replica listens: what ``connect`` dials and the ``Host`` header it gets."""

    host: str
    port: int
    host_header: str


def origin_of(url: str) -> Origin | None:
    """The origin of a plain ``http://host[:port]`` replica URL; ``None`` for anything
    the raw client does not speak (TLS, credentials, a path), which aiohttp serves."""
    u = URL(url)
    if u.scheme != "http" or u.user is not None or u.raw_path not in ("", "/") or u.query_string:
        return None
    if u.host is None or u.port is None:
        return None
    return Origin(u.host, u.port, u.host_port_subcomponent or u.host)


def request_head(
    method: str, target: str, origin: Origin, headers: Mapping[str, str], body_len: int
) -> bytes | None:
    """The request's head as aiohttp's client writes it (``Host``, the given headers,
    ``Accept``/``Accept-Encoding`` defaults, ``Content-Length``); ``None`` if a value
    holds a line break (aiohttp's server refuses those, so it cannot happen)."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
    for k, v in headers.items():
        if "\r" in v or "\n" in v:
            return None
        lines.append(f"{k}: {v}\r\n")
    if "Accept" not in headers:
        lines.append("Accept: */*\r\n")
    lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}\r\nContent-Length: {body_len}\r\n\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to a replica, carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        """Closed, or the replica closed its side (its FIN arrived)."""
        self.idle_since = 0.0
        self.reused = False
        """Taken from the pool (the replica may have closed it meanwhile)."""
        self.received = False
        """Some byte of the current response arrived."""
        self._busy = False
        self._buf = bytearray()
        self.head: ResponseHead | None = None
        self.body: Body | None = None
        self.pieces: list[bytes] = []
        """Payload received and not yet taken (or, while relaying, not yet written)."""
        self.error: BaseException | None = None
        """Why the response broke (connection lost mid-body, bad framing); ``None`` if not."""
        self.client_gone = False
        self.need_drain = False
        self._client: asyncio.Transport | None = None
        self._ends = False
        """The relay writes the body's end itself (``relay_to(..., ends=True)``)."""
        self.ended = False
        """The body's end (its last chunk) went to the client from here."""
        self._high_water = 0
        self._waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ what the handler calls

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self._busy = True
        self.transport.write(request)

    async def wait(self) -> None:
        """Until the response made progress, ended, broke, or needs draining."""
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    @property
    def started(self) -> bool:
        """The head arrived and so did the first payload, or the whole (empty) body."""
        body = self.body
        return body is not None and (bool(self.pieces) or body.done)

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces = []
        return data

    def relay_to(self, client: asyncio.Transport, ends: bool = False) -> None:
        """From now on, payload goes to ``client`` (whose chunked response has started)
        as one chunk per batch; what already arrived goes at once. With ``ends``, the
        body's end goes too, with the last payload (``ended``); else the handler writes
        it (``detach``, ``take``)."""
        self._client = client
        self._ends = ends
        self._high_water = client.get_write_buffer_limits()[1]
        self.flush()

    def resume(self) -> None:
        """After the handler drained the client: read from the replica again."""
        self.need_drain = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    @property
    def done(self) -> bool:
        return self.body is not None and self.body.done

    def flush(self) -> None:
        """Write what is queued for the client now (and the end, if it came)."""
        if self._ends and self.done:
            self._finish()
        else:
            self._flush()

    def detach(self) -> None:
        """Stop relaying: the handler writes the rest itself, starting with what is still
        queued (``take()``). A body not read to its end is dropped with the connection
        (not reusable)."""
        self._client = None
        if not self.done:
            self.close()

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and self.error is None
            and self.head is not None
            and self.body is not None
            and _reusable(self.head, self.body)
        )

    def recycle(self, now: float) -> None:
        """Back to idle, ready for the next request."""
        if self.need_drain and self.transport is not None:
            self.transport.resume_reading()
        self._busy = self.client_gone = self.need_drain = self.received = False
        self._ends = self.ended = False
        self.head = self.body = self._client = None
        self.pieces = []
        self.idle_since = now

    def close(self) -> None:
        self._client = None  # nothing more reaches the client from here
        if self.transport is not None and not self.closed:
            self.transport.close()  # the replica sees the disconnect and aborts its request
        self.closed = True

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        body = self.body
        if body is None:
            if not self._busy:  # bytes nobody asked for: this connection cannot be trusted
                self.close()
                return
            try:
                data = self._read_head(data)
            except FramingError as exc:
                self._fail(exc)
                return
            body = self.body
            if body is None or not data:
                self._wake()
                return
        try:
            pieces = body.feed(data)
        except FramingError as exc:
            self._fail(exc)
            return
        if self._client is None:
            self.pieces += pieces
            self._wake()
            return
        if pieces:
            self.pieces += pieces
        if body.done:
            if self._ends:  # the last payload and the last chunk: one write
                self._finish()
            self._wake()
        elif pieces:
            self._flush()

    def eof_received(self) -> bool | None:
        self.closed = True  # never reused; connection_lost says whether the body was complete
        return None  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        body = self.body
        if self._busy and self.error is None and (body is None or not body.done):
            if body is not None and body.ends_at_close:
                body.done = True
            else:
                self.error = exc or ConnectionResetError("the replica closed the connection")
        if self._client is not None:
            self.flush()
        self._wake()

    # ------------------------------------------------------------ internals

    def _read_head(self, data: bytes) -> bytes:
        self._buf += data
        while True:
            parsed = parse_head(self._buf)
            if parsed is None:
                return b""
            head, size = parsed
            rest = bytes(self._buf[size:])
            if 100 <= head.status < 200 and head.status != 101:  # interim (103 hints): skip
                self._buf = bytearray(rest)
                continue
            if head.status == 101:
                raise FramingError("the replica switched protocols")
            self._buf = bytearray()
            self.head, self.body = head, body_decoder(head)
            return rest

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if self._client is not None:
            self.flush()
        self.close()
        self._wake()

    def _flush(self) -> None:
        pieces = self.pieces
        client = self._client
        if not pieces or client is None:
            return
        self.pieces = []
        size = sum(map(len, pieces))
        if not size:
            return
        if client.is_closing():
            self.client_gone = True
            self._wake()
            return
        client.write(b"".join((b"%x\r\n" % size, *pieces, b"\r\n")))
        if not self.need_drain and client.get_write_buffer_size() > self._high_water:
            self.need_drain = True
            if self.transport is not None and not self.closed:
                self.transport.pause_reading()
            self._wake()

    def _finish(self) -> None:
        client = self._client
        if client is None or self.ended:
            return
        data = self.take()
        if client.is_closing():
            self.client_gone = True
            return
        last = b"0\r\n\r\n"
        client.write(b"".join((b"%x\r\n" % len(data), data, b"\r\n", last)) if data else last)
        self.ended = True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
