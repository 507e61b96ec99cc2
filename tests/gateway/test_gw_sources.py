"""The routes document and where standalone gateways read it: file and control-plane URL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiohttp import web
from gwhelpers import service

from tierserve.errors import ExternalError, ValidationError
from tierserve.gateway import (
    Backend,
    FileRouteSource,
    RouteTable,
    StaticRouteSource,
    UrlRouteSource,
    dump_routes,
    parse_routes,
    refresh,
)

DOC = {
    "services": [
        {
            "namespace": "default",
            "name": "deepseek",
            "models": ["deepseek-r1"],
            "backends": [
                {
                    "replica": "deepseek-predictor-0",
                    "url": "http://127.0.0.1:8001/",
                    "unit": 0,
                    "tier": "idc",
                },
                {
                    "replica": "deepseek-predictor-1",
                    "url": "http://127.0.0.1:8002",
                    "unit": 1,
                    "tier": "cloud",
                    "ready": False,
                },
            ],
        }
    ]
}


def test_parse_fills_the_default_host_and_round_trips() -> None:
    (route,) = parse_routes(DOC)
    assert route.host == "deepseek-default.example.com"
    assert route.backends[0] == Backend("deepseek-predictor-0", "http://127.0.0.1:8001", 0, "idc")
    assert not route.backends[1].ready
    assert parse_routes(dump_routes([route])) == [route]


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (
            {"services": [{"name": "x", "backends": [{"replica": "r", "url": "ftp://x"}]}]},
            "services[0].backends[0].url",
        ),
        (
            {"services": [{"name": "x", "backends": [{"url": "http://a:1"}]}]},
            "services[0].backends[0].replica",
        ),
        ({"services": [{"name": "x", "modles": []}]}, "services[0].modles"),
        (
            {
                "services": [
                    {"name": "x", "backends": [{"replica": "r", "url": "http://a:1", "unit": -1}]}
                ]
            },
            "services[0].backends[0].unit",
        ),
        ([], ""),
    ],
)
def test_bad_documents_name_the_field(doc: object, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_routes(doc, "routes.json")
    assert info.value.errors[0].path == path


async def test_file_source_rereads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    f = tmp_path / "routes.json"
    f.write_text(json.dumps(DOC))
    source, table = FileRouteSource(f), RouteTable()
    assert await refresh(source, table)
    assert not await refresh(source, table)  # unchanged
    assert table.by_model("deepseek-r1") is not None
    f.write_text("services: [{name: qwen, models: [qwen]}]\n")  # YAML works too
    os.utime(f, ns=(1, 1))
    assert await refresh(source, table)
    assert table.by_model("qwen") is not None and table.by_model("deepseek-r1") is None
    f.write_text('{"services": [{"nme": 1}]}')
    os.utime(f, ns=(2, 2))
    assert not await refresh(source, table)  # invalid: logged, old routes kept
    assert table.by_model("qwen") is not None
    f.unlink()
    with pytest.raises(ExternalError):
        await source.fetch()


async def test_url_source_sends_the_token_and_uses_etags() -> None:
    seen: list[str | None] = []

    async def routes(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Bearer t0k":
            return web.Response(status=401)
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.json_response(DOC, headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_get("/routes", routes)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/routes"
    try:
        table = RouteTable()
        good = UrlRouteSource(url, "t0k")
        assert await refresh(good, table)
        assert not await refresh(good, table)  # 304
        assert table.by_host("deepseek-default.example.com") is not None
        bad = UrlRouteSource(url, "wrong")
        with pytest.raises(ExternalError, match="HTTP 401"):
            await bad.fetch()
        await good.close()
        await bad.close()
        assert seen == ["Bearer t0k", "Bearer t0k", "Bearer wrong"]
    finally:
        await runner.cleanup()


async def test_static_source_and_table_lookups() -> None:
    source = StaticRouteSource([service(name="a", models=("m",))])
    table = RouteTable()
    assert await refresh(source, table)
    assert not await refresh(source, table)
    assert table.by_host("A-default.example.com:8080").name == "a"  # type: ignore[union-attr]
    assert table.by_host(None) is None and table.by_host("[::1]:80") is None
    source.update([])
    assert await refresh(source, table)
    assert table.routes == ()
