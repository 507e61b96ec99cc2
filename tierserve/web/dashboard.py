"""The dashboard's HTTP side: the page, its static files, the login, the overview JSON
and the live stream. The control plane's API server mounts these routes
(:func:`add_routes`) and asks :func:`public` and :func:`cookie_allowed` in its auth
middleware.

    GET  /dashboard                      the page (the login form without a session)
    POST /dashboard/login                form field ``token`` -> session cookie, 303
    POST /dashboard/logout               clears the cookie, 303
    GET  /dashboard/static/{file}        the page's JS/CSS and the vendored uPlot
    GET  /api/v1/dashboard/overview      JSON: every service's history and tables
                                         (``?points=N``: only the newest N points)
    GET  /api/v1/dashboard/stream        text/event-stream: ``overview`` then ``update``s

Auth: the data routes take the API's ``Authorization: Bearer <token>`` or the session
cookie the login sets: ``tierserve_session``, an HMAC of the token (never the token
itself), ``HttpOnly; SameSite=Strict; Path=/``. The cookie opens only these read-only
GET routes, never ``apply``/``delete``/``shutdown``, so a page elsewhere cannot act with
it. The token travels only in the login's POST body, never in a URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from tierserve.errors import FieldError, ValidationError

log = logging.getLogger("tierserve.dashboard")

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "tierserve_session"
HEARTBEAT_S = 15.0
"""A comment line this often keeps an idle stream (and proxies) open."""
MAX_LOGIN_BYTES = 4096
DASHBOARD_PATH = "/dashboard"
API_PREFIX = "/api/v1/dashboard/"
FILES = {
    "dashboard.js": "text/javascript",
    "charts.js": "text/javascript",
    "dashboard.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}
"""What ``/dashboard/static/`` serves: these files, nothing else."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Feed(Protocol):
    """What the routes read (``runtime.local.feed.DashboardFeed`` has it)."""

    def overview(self, points: int | None = None) -> dict[str, Any]: ...

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]: ...

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None: ...


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie is not the token."""
    return hmac.new(token.encode(), b"tierserve dashboard session", hashlib.sha256).hexdigest()


def has_session(request: web.Request, token: str) -> bool:
    given = request.cookies.get(SESSION_COOKIE, "")
    return bool(given) and hmac.compare_digest(given, session_value(token))


def public(request: web.Request) -> bool:
    """Routes anyone may ask for: the page (it answers the login form without a session),
    the login itself and the static files (the package's own, no data)."""
    path = request.path
    return path in (DASHBOARD_PATH, f"{DASHBOARD_PATH}/", f"{DASHBOARD_PATH}/login") or (
        path.startswith(f"{DASHBOARD_PATH}/static/") and request.method in ("GET", "HEAD")
    )


def cookie_allowed(request: web.Request) -> bool:
    """Routes the session cookie opens: the dashboard's read-only data and its logout."""
    if request.path == f"{DASHBOARD_PATH}/logout":
        return request.method == "POST"
    return request.path.startswith(API_PREFIX) and request.method in ("GET", "HEAD")


def _page(name: str, **values: str) -> str:
    text = (STATIC / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8",
        headers=SECURITY_HEADERS,
    )  # fmt: skip


MAX_POINTS = 1_000_000


def _points(text: str | None) -> int | None:
    """``?points=``: a whole number of points, or None when absent."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or int(text) > MAX_POINTS:
        raise ValidationError(
            "request",
            [FieldError("points", f"{text[:40]!r} is not a whole number from 0 to {MAX_POINTS}")],
        )
    return int(text)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: ``event:`` and one ``data:`` line of JSON."""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"event: {event}\ndata: {body}\n\n".encode()


class DashboardRoutes:
    def __init__(self, feed: Feed, token: str, closing: Callable[[], bool]) -> None:
        """``closing``: true once the control plane is stopping (streams end)."""
        self.feed = feed
        self.token = token
        self.closing = closing

    def add(self, router: web.UrlDispatcher) -> None:
        router.add_get(DASHBOARD_PATH, self._index)
        router.add_get(f"{DASHBOARD_PATH}/", self._index)
        router.add_post(f"{DASHBOARD_PATH}/login", self._login)
        router.add_post(f"{DASHBOARD_PATH}/logout", self._logout)
        router.add_get(f"{DASHBOARD_PATH}/static/{{file:.+}}", self._static)
        router.add_get(f"{API_PREFIX}overview", self._overview)
        router.add_get(f"{API_PREFIX}stream", self._stream)

    async def _index(self, request: web.Request) -> web.Response:
        if not has_session(request, self.token):
            return _html(_page("login.html", message=""))
        return _html(_page("dashboard.html"))

    async def _login(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_LOGIN_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_LOGIN_BYTES, request.content_length)
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise web.HTTPUnsupportedMediaType(
                text="expected the login form (application/x-www-form-urlencoded) with 'token'"
            )
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(given.strip(), self.token):
            message = "wrong token: use the one in the state directory's 'token' file"
            return _html(_page("login.html", message=message), status=401)
        response = _see_other(DASHBOARD_PATH)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(self.token),
            httponly=True,
            samesite="Strict",
            path="/",
        )
        return response

    async def _logout(self, _: web.Request) -> web.Response:
        response = _see_other(DASHBOARD_PATH)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        content_type = FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        body = await asyncio.to_thread((STATIC / name).read_bytes)
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def _overview(self, request: web.Request) -> web.Response:
        points = _points(request.query.get("points"))
        return web.json_response(
            self.feed.overview(points), headers={"Cache-Control": "no-store"}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if request.method == "HEAD":  # the headers only: no stream to keep open
            return response
        queue = self.feed.subscribe()
        try:
            await response.write(sse("overview", self.feed.overview()))
            while not self.closing():
                try:
                    update = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if update is None:
                    break
                await response.write(sse("update", update))
        except (ConnectionError, RuntimeError):  # the browser went away
            pass
        finally:
            self.feed.unsubscribe(queue)
        return response
