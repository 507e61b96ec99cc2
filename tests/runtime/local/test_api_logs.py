"""``GET /api/v1/logs/{namespace}/{name}`` over real HTTP: names resolve to replicas in
the store, never to paths; ``?offset=`` and ``X-Log-Offset`` let a client follow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tierserve.errors import NotFoundError, ValidationError
from tierserve.model import Replica
from tierserve.runtime.clock import SystemClock
from tierserve.runtime.local.api import LOG_OFFSET_HEADER, ApiServer
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.command import replica_dirs
from tierserve.runtime.local.config import ClientConfig
from tierserve.runtime.local.store import SqliteStore

TOKEN = "t0ken"


class Logs:
    def __init__(
        self,
        url: str,
        state: Path,
        store: SqliteStore,
        session: aiohttp.ClientSession,
        server: ApiServer,
    ) -> None:
        self.url, self.state, self.store, self.session = url, state, store, session
        self.server = server

    async def get(self, path: str) -> tuple[int, bytes, str | None]:
        """(status, body, X-Log-Offset) of ``GET /api/v1/logs/<path>``."""
        async with self.session.get(
            f"{self.url}/api/v1/logs/{path}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            return resp.status, await resp.read(), resp.headers.get(LOG_OFFSET_HEADER)

    def replica(self, name: str, namespace: str = "default") -> Path:
        """A replica in the store; the path its log is written to."""
        self.store.put(Replica.new(name, namespace, spec={"service": "deepseek"}))
        _, log = replica_dirs(str(self.state), namespace, name)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        return Path(log)


@pytest.fixture
async def logs(tmp_path: Path) -> AsyncIterator[Logs]:
    state = tmp_path / "state"
    state.mkdir()
    store = SqliteStore(state / "state.db")
    server = ApiServer(store, TOKEN, str(state), lambda _: None, lambda _: "", SystemClock())
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        yield Logs(f"http://127.0.0.1:{runner.addresses[0][1]}", state, store, session, server)
    await runner.cleanup()
    store.close()


def message(body: bytes) -> str:
    text: str = json.loads(body)["error"]["message"]
    return text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("..%2F..%2F..%2Ftmp/x", "namespace"),
        ("..%2F..%2F..%2F..%2F..%2F..%2Ftmp%2Fts/x", "namespace"),
        ("default/..%2F..%2F..%2Fsecret", "name"),
        ("default/x..y", "name"),
        ("a.b/x", "namespace"),
    ],
)
async def test_paths_in_the_url_are_refused(
    logs: Logs, tmp_path: Path, path: str, field: str
) -> None:
    (tmp_path / "x.log").write_text("not yours\n")  # what ../../../tmp/x resolved to
    status, body, _ = await logs.get(path)
    assert status == 400 and message(body).startswith(f"request: {field}: ")
    assert b"not yours" not in body


async def test_a_log_file_without_a_replica_is_not_served(logs: Logs) -> None:
    stray = logs.state / "logs" / "default" / "ghost.log"
    stray.parent.mkdir(parents=True)
    stray.write_text("left over\n")
    status, body, _ = await logs.get("default/ghost")
    assert status == 404 and message(body) == 'pods "ghost" not found in namespace default'


async def test_whole_log_tail_and_follow_by_offset(logs: Logs) -> None:
    path = logs.replica("r-1")
    assert await logs.get("default/r-1") == (200, b"", "0")  # not started: no log yet
    path.write_bytes(b"one\ntwo\nthree\n")
    assert await logs.get("default/r-1") == (200, b"one\ntwo\nthree\n", "14")
    assert await logs.get("default/r-1?tail=2") == (200, b"two\nthree\n", "14")
    assert await logs.get("default/r-1?tail=0") == (200, b"", "14")
    assert await logs.get("default/r-1?tail=99") == (200, b"one\ntwo\nthree\n", "14")
    # logs -f: ask from the last offset; only what was written since comes back.
    with path.open("ab") as f:
        f.write(b"four\n")
    assert await logs.get("default/r-1?offset=14") == (200, b"four\n", "19")
    assert await logs.get("default/r-1?offset=19") == (200, b"", "19")
    # An offset past the end: the log was cut, so it starts again from 0.
    path.write_bytes(b"new\n")
    assert await logs.get("default/r-1?offset=19") == (200, b"new\n", "4")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tail=-1", "tail"),
        ("tail=abc", "tail"),
        ("offset=1e3", "offset"),
        ("tail=1&offset=0", "offset"),
    ],
)
async def test_bad_tail_and_offset_are_400s(logs: Logs, query: str, field: str) -> None:
    logs.replica("r-1").write_text("x\n")
    status, body, _ = await logs.get(f"default/r-1?{query}")
    assert status == 400 and message(body).startswith(f"request: {field}: ")


async def test_a_chunk_ends_on_a_whole_character(logs: Logs) -> None:
    logs.server.log_chunk_bytes = 5
    logs.replica("r-1").write_bytes("abcdé!".encode())  # é is 2 bytes: 4..5
    assert await logs.get("default/r-1?offset=0") == (200, b"abcd", "4")
    assert await logs.get("default/r-1?offset=4") == (200, "é!".encode(), "7")


async def test_a_log_outside_the_state_dir_is_not_followed(logs: Logs, tmp_path: Path) -> None:
    path = logs.replica("r-1")
    (tmp_path / "elsewhere.log").write_text("not yours\n")
    path.symlink_to(tmp_path / "elsewhere.log")
    status, body, _ = await logs.get("default/r-1")
    assert status == 404 and b"not yours" not in body


async def test_the_client_follows_a_log_by_offset(logs: Logs) -> None:
    path = logs.replica("r-1")
    path.write_bytes(b"one\ntwo\n")
    client = Client(ClientConfig(api_url=logs.url, gateway_url="", token=TOKEN, pid=0))
    assert await asyncio.to_thread(client.log_bytes, "default", "r-1", None, 1) == (b"two\n", 8)
    with path.open("ab") as f:
        f.write(b"three\n")
    assert await asyncio.to_thread(client.log_bytes, "default", "r-1", 8) == (b"three\n", 14)
    with pytest.raises(ValidationError, match=r"request: namespace: '\.\./etc'"):
        await asyncio.to_thread(client.log_bytes, "../etc", "r-1", 0)
    with pytest.raises(ValidationError, match=r"request: name: 'a/b'"):  # one segment
        await asyncio.to_thread(client.logs, "default", "a/b")
    with pytest.raises(NotFoundError):
        await asyncio.to_thread(client.logs, "default", "r-2")
