"""What the two forwarding paths share: one attempt's outcome before the client got a
byte (``Tried``), the responses built for failures, the headers passed on, and the
``StreamEnds`` a relayed stream finishes through.

``proxy.Forwarder`` runs the attempts (aiohttp's client, or ``rawpath.RawClient`` for
SSE), judges each ``Tried`` with ``tierserve.policy.retry.decide_attempt`` and counts
what ends; nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from tierserve.gateway.errors import error_response
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.policy.retry import Attempt, Failure

REPLICA_HEADER = "X-Tierserve-Replica"

# Hop-by-hop and framing headers the gateway sets itself.
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)


@dataclass(frozen=True, slots=True)
class Tried:
    """An attempt whose answer has not reached the client: what it came to, and what
    the client gets unless it is retried."""

    attempt: Attempt
    response: web.Response
    ttfb_s: float | None = None
    """Arrival to the replica's answer (None when nothing arrived)."""


class StreamEnds(Protocol):
    """How a stream that reached the client ends (``Forwarder`` counts and judges it)."""

    async def broken(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        exc: BaseException,
        ttfb_s: float,
        t0: float,
    ) -> web.StreamResponse:
        """The replica broke it (or time ran out) after the first byte."""
        ...

    def client_gone(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        ttfb_s: float,
        t0: float,
    ) -> web.StreamResponse:
        """The client went away mid-stream (code 499)."""
        ...

    def streamed(
        self,
        resp: web.StreamResponse,
        route: ServiceRoute,
        backend: Backend,
        status: int,
        ttfb_s: float,
        t0: float,
    ) -> web.StreamResponse:
        """It ended as the replica ended it."""
        ...


def response_headers(items: Iterable[tuple[str, str]], backend: Backend) -> dict[str, str]:
    headers = {k: v for k, v in items if k.lower() not in _DROP}
    headers[REPLICA_HEADER] = backend.replica
    return headers


def is_sse(content_type: str) -> bool:
    return content_type.startswith("text/event-stream")


def upstream_target(request: web.Request) -> str:
    """The request-target the replica gets: the client's own in origin form, and the
    path and query of an absolute-form target (``POST http://host/v1/...``)."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    return request.rel_url.raw_path_qs or "/"


def whole(
    backend: Backend, status: int, headers: Iterable[tuple[str, str]], data: bytes, t0: float
) -> Tried:
    """A response read whole: passed on as it is, unless it is retried."""
    resp = web.Response(body=data, status=status, headers=response_headers(headers, backend))
    ttfb = asyncio.get_running_loop().time() - t0
    return Tried(Attempt(status=status, has_body=bool(data)), resp, ttfb)


def bad_gateway(backend: Backend, what: str) -> web.Response:
    return error_response(502, f"Replica {backend.replica} {what}.")


def failed(backend: Backend, failure: Failure, what: str) -> Tried:
    """The replica refused, dropped or broke the connection: 502."""
    return Tried(Attempt(failure=failure), bad_gateway(backend, what))


def timed_out(backend: Backend, timeout_s: float) -> Tried:
    """The request's whole time is used up: 504 (never retried)."""
    response = error_response(
        504, f"Replica {backend.replica} did not answer within {timeout_s:g} s."
    )
    return Tried(Attempt(failure=Failure.TIMEOUT), response)
