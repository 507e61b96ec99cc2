"""Where a standalone gateway (or each ``--workers`` process) gets its routes.

One verb: ``fetch()`` returns the new routes, or None when nothing changed.
``follow`` polls a source and replaces the table's routes; a source that fails
keeps the last good routes (logged), so a control-plane restart does not empty
the gateway.

- ``StaticRouteSource``: fixed routes (tests, the in-memory fake).
- ``FileRouteSource``: a JSON/YAML file, re-read when its mtime or size changes.
- ``UrlRouteSource``: GET a control-plane URL returning the same JSON, with
  ``Authorization: Bearer <token>``; ETag/If-None-Match avoids re-parsing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Protocol

import aiohttp

from tierserve.errors import ExternalError, TierserveError
from tierserve.gateway.routes import parse_routes_text
from tierserve.gateway.table import RouteTable, ServiceRoute

log = logging.getLogger(__name__)


class RouteSource(Protocol):
    async def fetch(self) -> list[ServiceRoute] | None:
        """The current routes, or None when unchanged since the last fetch."""
        ...


class StaticRouteSource:
    """Routes given in memory; ``update`` changes what the next fetch returns."""

    def __init__(self, routes: list[ServiceRoute]) -> None:
        self._routes: list[ServiceRoute] | None = list(routes)

    def update(self, routes: list[ServiceRoute]) -> None:
        self._routes = list(routes)

    async def fetch(self) -> list[ServiceRoute] | None:
        routes, self._routes = self._routes, None
        return routes


class FileRouteSource:
    """A routes file, re-read when it changes (mtime or size)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    async def fetch(self) -> list[ServiceRoute] | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ExternalError(f"routes file {self.path}: {exc.strerror}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return None
        text = self.path.read_text()
        routes = parse_routes_text(text, str(self.path))
        self._seen = stamp
        return routes


class UrlRouteSource:
    """Polls a control-plane URL that serves the routes document."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._etag: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> list[ServiceRoute] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = dict(self._headers)
        if self._etag:
            headers["If-None-Match"] = self._etag
        try:
            async with self._session.get(self.url, headers=headers) as resp:
                if resp.status == 304:
                    return None
                if resp.status != 200:
                    raise ExternalError(f"routes URL {self.url}: HTTP {resp.status}")
                text = await resp.text()
                etag = resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExternalError(f"routes URL {self.url}: {exc!r}") from exc
        routes = parse_routes_text(text, self.url)
        self._etag = etag
        return routes

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def refresh(source: RouteSource, table: RouteTable) -> bool:
    """Fetch once; True when the table was replaced. Errors keep the old routes."""
    try:
        routes = await source.fetch()
    except TierserveError as exc:
        log.warning("routes not updated, keeping the last good ones: %s", exc)
        return False
    if routes is None:
        return False
    table.set_routes(routes)
    log.info(
        "routes updated: %d services, %d backends",
        len(routes),
        sum(len(r.backends) for r in routes),
    )
    return True


async def follow(source: RouteSource, table: RouteTable, interval_s: float = 1.0) -> None:
    """Keep ``table`` in step with ``source`` until cancelled."""
    while True:
        await refresh(source, table)
        await asyncio.sleep(interval_s)
