"""The dashboard's auth over real HTTP against the real API server: the login form
exchanges the token for an HttpOnly, SameSite=Strict session cookie that is not the
token; the cookie opens the dashboard's read-only data and nothing else; 401 without."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tierserve.model import load_documents
from tierserve.runtime.clock import SystemClock
from tierserve.runtime.local.api import ApiServer
from tierserve.runtime.local.feed import DashboardFeed, FeedSettings
from tierserve.runtime.local.store import SqliteStore
from tierserve.web.dashboard import SESSION_COOKIE, DashboardRoutes, session_value

TOKEN = "s3cret-t0ken-value"
SERVICE = """\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {name: deepseek}
spec: {gpus: 1, command: vllm serve /model}
"""


class Metrics:
    def buckets(self, key: tuple[str, str]) -> dict[str, dict[float, float]]:
        return {}

    def fresh(self, key: tuple[str, str], now_s: float, max_age_s: float) -> dict[str, float]:
        return {}


class Gateway:
    def arrived(self, namespace: str, service: str) -> int:
        return 0

    def in_flight(self, replica: str) -> int:
        return 0


class Site:
    def __init__(self, url: str, feed: DashboardFeed) -> None:
        self.url, self.feed = url, feed

    def session(self) -> aiohttp.ClientSession:
        # A cookie jar that keeps cookies of an IP address host (127.0.0.1).
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, session: aiohttp.ClientSession, token: str = TOKEN) -> Any:
        return await session.post(
            self.url + "/dashboard/login", data={"token": token}, allow_redirects=False
        )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    store = SqliteStore(tmp_path / "state.db")
    feed = DashboardFeed(store, Metrics(), Gateway(), FeedSettings(interval_s=1.0))
    feed.sample(1.0)
    routes = DashboardRoutes(feed, TOKEN, lambda: False)
    server = ApiServer(
        store, TOKEN, str(tmp_path), lambda _: None, lambda _: "", SystemClock(), dashboard=routes
    )
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Site(f"http://127.0.0.1:{runner.addresses[0][1]}", feed)
    feed.close()
    await runner.cleanup()
    store.close()


async def test_without_a_token_or_cookie_the_data_is_401(site: Site) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/api/v1/dashboard/overview", "/api/v1/dashboard/stream"):
            async with s.get(site.url + path) as r:
                assert r.status == 401
                assert (await r.json())["error"]["reason"] == "Unauthorized"
        # The page answers the login form, with no data in it.
        async with s.get(site.url + "/dashboard") as r:
            text = await r.text()
            assert r.status == 200 and 'action="/dashboard/login"' in text
            assert "EventSource" not in text and "dashboard.js" not in text
        # A token in the URL is never how one gets in.
        async with s.get(site.url + f"/api/v1/dashboard/overview?token={TOKEN}") as r:
            assert r.status == 401
        async with s.get(site.url + "/api/v1/dashboard/overview",
                         headers={"Authorization": "Bearer wrong"}) as r:  # fmt: skip
            assert r.status == 401


async def test_the_bearer_token_opens_the_data(site: Site) -> None:
    async with aiohttp.ClientSession() as s, s.get(
        site.url + "/api/v1/dashboard/overview", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 200
        body = await r.json()
        assert body["bytesPerServiceHour"] > 0 and body["services"] == []


@pytest.mark.parametrize("given", ["abc", "-1", "1.5", "9" * 5000, "2000000"])
async def test_a_bad_points_query_is_a_400_naming_it(site: Site, given: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(
        site.url + "/api/v1/dashboard/overview",
        params={"points": given},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status == 400
        message = (await r.json())["error"]["message"]
        assert "points" in message and "whole number from 0 to 1000000" in message


async def test_points_keeps_the_newest_only(site: Site) -> None:
    site.feed.store.put_all(load_documents(SERVICE, "svc"))
    for t in (2.0, 3.0, 4.0):
        site.feed.sample(t)
    async with aiohttp.ClientSession() as s, s.get(
        site.url + "/api/v1/dashboard/overview?points=2",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status == 200
        (service,) = (await r.json())["services"]
        assert service["history"]["t"] == [3.0, 4.0]


async def test_login_sets_an_httponly_strict_cookie_that_is_not_the_token(site: Site) -> None:
    async with site.session() as s:
        r = await site.login(s)
        assert r.status == 303 and r.headers["Location"] == "/dashboard"
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie and session_value(TOKEN) in cookie
        r.release()
        async with s.get(site.url + "/dashboard") as page:
            text = await page.text()
            assert "dashboard.js" in text and "Content-Security-Policy" in page.headers
        async with s.get(site.url + "/api/v1/dashboard/overview") as data:
            assert data.status == 200
        async with s.get(site.url + "/api/v1/dashboard/stream") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            event = (await stream.content.readline()).decode()
            data_line = (await stream.content.readline()).decode()
            assert event == "event: overview\n"
            assert json.loads(data_line.removeprefix("data: "))["services"] == []


async def test_the_cookie_opens_nothing_but_the_dashboard(site: Site) -> None:
    async with site.session() as s:
        (await site.login(s)).release()
        for method, path in (
            ("GET", "/api/v1/pods"),
            ("GET", "/api/v1/cost"),
            ("GET", "/metrics"),
            ("POST", "/api/v1/apply"),
            ("POST", "/api/v1/shutdown"),
            ("POST", "/api/v1/dashboard/overview"),
        ):
            async with s.request(method, site.url + path, json={}) as r:
                assert r.status in (401, 405), (method, path, r.status)
                if path != "/api/v1/dashboard/overview":
                    assert r.status == 401


async def test_head_of_the_stream_answers_at_once(site: Site) -> None:
    async with aiohttp.ClientSession() as s, s.head(
        site.url + "/api/v1/dashboard/stream",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=5),
    ) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")


async def test_a_wrong_token_is_refused_with_the_form_again(site: Site) -> None:
    async with site.session() as s:
        r = await site.login(s, "nope")
        assert r.status == 401 and "Set-Cookie" not in r.headers
        text = await r.text()
        assert "wrong token" in text and 'name="token"' in text
        r.release()
        async with s.get(site.url + "/api/v1/dashboard/overview") as data:
            assert data.status == 401


async def test_a_forged_cookie_is_refused(site: Site) -> None:
    async with aiohttp.ClientSession() as s:
        for value in (TOKEN, "0" * 64, ""):
            async with s.get(
                site.url + "/api/v1/dashboard/overview",
                headers={"Cookie": f"{SESSION_COOKIE}={value}"},
            ) as r:
                assert r.status == 401


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"Content-Type": "application/json"}, b'{"token": "x"}', 415, "login form"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"token=" + b"x" * 5000, 413, ""),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"other=1", 401, "wrong token"),
    ],
)
async def test_bad_login_requests_get_a_clear_4xx(
    site: Site, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    async with aiohttp.ClientSession() as s, s.post(
        site.url + "/dashboard/login", data=body, headers=headers, allow_redirects=False
    ) as r:
        assert r.status == status
        assert says in await r.text()


async def test_logout_clears_the_cookie(site: Site) -> None:
    async with site.session() as s:
        (await site.login(s)).release()
        async with s.post(site.url + "/dashboard/logout", allow_redirects=False) as r:
            assert r.status == 303
        async with s.get(site.url + "/api/v1/dashboard/overview") as r:
            assert r.status == 401


async def test_static_files_are_the_listed_ones_only(site: Site) -> None:
    async with aiohttp.ClientSession() as s:
        for name, kind in (
            ("charts.js", "text/javascript"),
            ("dashboard.js", "text/javascript"),
            ("dashboard.css", "text/css"),
            ("vendor/uPlot.iife.min.js", "text/javascript"),
        ):
            async with s.get(f"{site.url}/dashboard/static/{name}") as r:
                assert r.status == 200 and r.content_type == kind
        for name in ("login.html", "../history.py", "%2e%2e/history.py", "vendor/VERSION"):
            async with s.get(f"{site.url}/dashboard/static/{name}") as r:
                # (a client folds "../": that path is not public, so it is a 401)
                assert r.status in (401, 404), name
                assert "history" not in await r.text()
