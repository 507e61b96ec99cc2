"""One client connection to the gateway: aiohttp's ``RequestHandler`` with a header
read timeout and errors in OpenAI's shape.

aiohttp's server closes idle keep-alive connections (``keepalive_timeout``) but has no
limit on how long a request's head may take, so a client trickling header bytes
(slowloris) holds its socket for good. ``ClientConnection`` adds nginx's
``client_header_timeout``: a head must arrive whole within ``head_timeout_s`` of the
connection's start (its first request) or of its first byte (later requests, after an
idle keep-alive wait). Past that, a partial head gets 408 and the connection closes; a
connection that sent nothing is just closed. (The body's timeout is per read, in
``limits.read_body``; the idle wait between requests is aiohttp's ``keepalive_timeout``.)
A head that starts arriving while an earlier request on the connection is still being
answered (pipelining) is bounded by the keep-alive timeout instead.

Errors aiohttp answers itself -- a malformed request line, header or chunked framing, a
``Content-Encoding`` it cannot decode, an ``Expect`` it does not know, a target no route
matches (``OPTIONS *``), or an exception escaping a handler -- get OpenAI's error body
instead of aiohttp's text/plain one.

Reads aiohttp's ``_request_count`` (requests parsed on this connection),
``_messages`` (parsed, not yet handled) and ``_request_in_progress``;
tests/gateway/test_gw_connections.py pins down the behaviour that relies on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import StreamReader, web

from tierserve.gateway.errors import error_body, error_response


class ClientConnection(web.RequestHandler):
    __slots__ = (
        "_head_partial",
        "_head_timeout_s",
        "_head_timer",
        "_heads_at_arm",
        "_last_body",
    )

    def __init__(self, manager: web.Server, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0
        self._head_partial = False
        self._last_body: StreamReader | None = None
        """The body of the last request answered: bytes before its end are still body
        (aiohttp reads an unread body for a while after answering), not a new head."""

    # ------------------------------------------------------------ header timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(partial=False)  # the first request: from the connection's start

    def data_received(self, data: bytes) -> None:
        if not data:  # aiohttp's resume_reading() re-feeds with b""
            super().data_received(data)
            return
        heads = self._request_count
        idle = self._head_timer is None and self._between_requests()
        super().data_received(data)
        if self._request_count != heads:  # a head arrived whole
            self._disarm()
        elif self._head_timer is not None:
            self._head_partial = True
        elif idle:  # the first bytes of the next request's head (not a body's last ones)
            self._arm(partial=True)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        # The last body's reader points back at this protocol: dropping it here leaves
        # no reference cycle, so a closed connection is freed at once (not by the cyclic
        # GC, which found 11 objects of each one with 10,000 streams open).
        self._last_body = None
        super().connection_lost(exc)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # A request ended: the next one's head is timed from its first byte. (Drops a
        # timer armed by body bytes that arrived before the handler had started.)
        self._disarm()
        self._last_body = body = request.content
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            resp = _openai_shaped(resp)
        result = await super().finish_response(request, resp, start_time)
        if resp.keep_alive is False and not body.is_eof():
            # An answer that ends the connection (a stalled or undecodable body) does not
            # wait for the rest of the body, as aiohttp would for ``lingering_time``.
            self.force_close()
        return result

    def _between_requests(self) -> bool:
        """No request is being handled or waiting, and the last one's body has ended."""
        body = self._last_body
        return (
            not self._request_in_progress and not self._messages and (body is None or body.is_eof())
        )

    def _arm(self, *, partial: bool) -> None:
        self._disarm()
        self._heads_at_arm = self._request_count
        self._head_partial = partial
        self._head_timer = self._loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if (
            transport is None
            or self._request_count != self._heads_at_arm
            or not self._between_requests()
        ):
            return
        if self._head_partial:
            body = error_body(
                408, f"The request head did not arrive within {self._head_timeout_s:g} s."
            )
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.force_close()  # closing flushes the 408 first

    # ------------------------------------------------------------ error bodies

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body that cannot be decoded fails again when aiohttp drains it after the
        # answer (400, from ``read_body``): the client's error, not the gateway's.
        if isinstance(kw.get("exc_info"), web.RequestPayloadError):
            self.logger.debug(*args, **kw)
        else:
            super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own error answers, in OpenAI's shape; a client's malformed request
        is logged at debug level, a handler's exception (a bug) with its traceback."""
        if status >= 500:
            self.logger.exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            self.logger.debug("Bad request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("the response started already; cannot send an error")
        if status >= 500 or not message:
            message = HTTPStatus(status).phrase  # a bug's details stay in the log
        resp = error_response(status, message.strip())
        resp.force_close()
        return resp


def _openai_shaped(exc: web.HTTPException) -> web.Response:
    """An error aiohttp raised (its router, its ``Expect`` handling) with OpenAI's body;
    its headers (``Allow`` for a 405) kept."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    resp = error_response(exc.status, exc.text or exc.reason, headers=headers)
    if exc.keep_alive is False:
        resp.force_close()
    return resp


_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def connection_factory(
    manager: web.Server, *, head_timeout_s: float, keepalive_timeout_s: float
) -> Callable[[], ClientConnection]:
    """What ``loop.create_server`` calls per accepted connection (``manager``: the
    runner's ``web.Server``, which tracks connections and handler cancellation)."""
    handler_args: dict[str, Any] = {
        "loop": asyncio.get_running_loop(),
        "keepalive_timeout": keepalive_timeout_s,
        "access_log": None,  # as the runner's: no access log
    }

    def factory() -> ClientConnection:
        return ClientConnection(manager, head_timeout_s=head_timeout_s, **handler_args)

    return factory
