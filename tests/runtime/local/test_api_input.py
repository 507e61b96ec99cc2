"""Hostile or broken input to the API, over real HTTP against the real API server: it is
refused with a 4xx and the API's JSON error body, quickly, and the event loop that also
runs the controllers and the gateway keeps answering."""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tierserve.examples import seed_text
from tierserve.model import InferenceService, Replica
from tierserve.model.yamlsafe import MAX_INPUT_BYTES
from tierserve.runtime.clock import SystemClock
from tierserve.runtime.local.api import MAX_BODY_BYTES, ApiServer
from tierserve.runtime.local.store import SqliteStore

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """The API server on 127.0.0.1 and a client session for it."""

    def __init__(self, url: str, store: SqliteStore, session: aiohttp.ClientSession) -> None:
        self.url, self.store, self.session = url, store, session

    async def call(
        self, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, the JSON body or the text) of one request."""
        headers = {**AUTH, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            text = await resp.text(errors="replace")
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def apply(self, documents: str) -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/apply", {"documents": documents})

    async def raw(self, request: bytes) -> bytes:
        """One request written as given (what an HTTP client would not send)."""
        reader, writer = await asyncio.open_connection(*self.url[7:].split(":"))
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteStore(tmp_path / "state.db")
    server = ApiServer(store, TOKEN, str(tmp_path), lambda _: None, lambda _: "", SystemClock())
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # A connection per request: one the server closed after a bad request is not reused.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield Api(f"http://127.0.0.1:{port}", store, session)
    await runner.cleanup()
    store.close()


def error_of(answer: tuple[int, Any]) -> tuple[int, str]:
    """(status, message) of an answer that must carry the API's error body."""
    status, body = answer
    assert isinstance(body, dict) and set(body["error"]) == {"message", "reason"}, body
    return status, body["error"]["message"]


def alias_bomb() -> str:
    """The "billion laughs": 8 levels of 9 aliases each, about 400 bytes."""
    lines = ["l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    return "\n".join(lines) + "\napiVersion: v1\nkind: Node\nmetadata: {name: *l7}\n"


async def test_an_alias_bomb_is_refused_fast_with_a_clear_400(api: Api) -> None:
    started = time.perf_counter()
    status, message = error_of(await api.apply(alias_bomb()))
    # Before: the error message repr'd 43 million strings (2 GB, 30 s of a frozen loop).
    assert time.perf_counter() - started < 2.0
    assert status == 400 and "(is it a YAML alias bomb?)" in message and len(message) < 200


def big_node(target_bytes: int) -> str:
    """A legal Node with as many labels as fit in ``target_bytes`` of YAML."""
    head = "apiVersion: v1\nkind: Node\nmetadata:\n  name: big\n  labels:\n"
    line = "    label-{:06d}: value-{:06d}\n"
    count = (target_bytes - len(head)) // len(line.format(0, 0))
    return head + "".join(line.format(i, i) for i in range(count))


async def test_the_loop_keeps_answering_while_a_big_apply_is_parsed(api: Api) -> None:
    documents = big_node(MAX_INPUT_BYTES - 1024)
    apply = asyncio.ensure_future(api.apply(documents))
    latencies: list[float] = []
    while not apply.done():
        started = time.perf_counter()
        async with api.session.get(api.url + "/healthz") as resp:
            assert resp.status == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    status, body = await apply
    assert status == 200 and body["results"][0]["action"] == "created"
    # Parsed in a worker thread: /healthz was answered again and again meanwhile.
    # (Parsed on the loop, the first /healthz waited for the whole apply.)
    assert len(latencies) >= 5, latencies
    assert max(latencies) < 1.0, latencies


async def test_more_than_one_mebibyte_of_yaml_is_refused(api: Api) -> None:
    status, message = error_of(await api.apply(big_node(MAX_INPUT_BYTES + 1000)))
    assert status == 400 and "(1 MiB) of YAML are accepted at once" in message


@pytest.mark.parametrize(
    ("data", "headers", "expected"),
    [
        (b'{"documents": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, (400, "nested too deeply")),
        (b'{"documents": "\xff\xfe"}', {}, (400, "not valid UTF-8")),
        (b'{"documents": ', {}, (400, "not valid JSON")),
        (b"[1, 2]", {}, (400, "expected a JSON object")),
        (b'{"dryRun": ' + b"1" * 5000 + b"}", {}, (400, "not valid JSON")),
        (b"documents=x", {"Content-Type": "text/plain"}, (415, "application/json")),
        (b"{}", {"Content-Type": "application/json; charset=latin-1"}, (415, "UTF-8")),
        (b" " * (MAX_BODY_BYTES + 1), {}, (413, "Maximum request body size")),
        (b"not gzip", {"Content-Encoding": "gzip"}, (400, "cannot be read")),
        (b"not deflate", {"Content-Encoding": "deflate"}, (400, "cannot be read")),
    ],
)
async def test_broken_bodies_get_a_4xx_with_the_error_body(
    api: Api, data: bytes, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    headers = {"Content-Type": "application/json", **headers}
    status, message = error_of(await api.call("POST", "/api/v1/apply", data=data, headers=headers))
    assert (status, expected[1] in message) == (expected[0], True), message


async def test_a_good_gzip_body_is_read(api: Api) -> None:
    body = json.dumps({"documents": seed_text("resourcepolicy.yaml")}).encode()
    status, answer = await api.call(
        "POST",
        "/api/v1/apply",
        data=zlib.compress(body, wbits=31),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 200 and answer["results"][0]["action"] == "created"


@pytest.mark.parametrize(
    "target",
    [
        b"http://127.0.0.1/api/v1/nodes",
        b"http://127.0.0.1",
        b"http://u:p@127.0.0.1:1/api/v1/pods?namespace=..",
        b"//x/api/v1/nodes",
        b"/api/v1/pods/",
    ],
)
async def test_odd_request_targets_get_json_errors_not_500s(api: Api, target: bytes) -> None:
    answer = await api.raw(
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status < 500, answer
    if status >= 400:
        assert set(json.loads(body)["error"]) == {"message", "reason"}


async def test_unknown_routes_and_methods_answer_in_json(api: Api) -> None:
    assert error_of(await api.call("GET", "/nope")) == (404, "no such route: GET /nope")
    status, message = error_of(await api.call("PUT", "/api/v1/apply"))
    assert status == 405 and "method PUT is not allowed" in message


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pods?namespace=../../etc",
        "/api/v1/pods/x?namespace=../../etc",
        "/api/v1/events?namespace=a.b",
        "/api/v1/events?name=..%2F..",
        "/api/v1/pods/..%2F..%2Fetc",
    ],
)
async def test_names_and_namespaces_in_requests_are_checked(api: Api, path: str) -> None:
    status, message = error_of(await api.call("GET", path))
    assert status == 400 and ("request: namespace: " in message or "request: name: " in message)


async def test_a_service_whose_derived_label_is_too_long_is_refused(api: Api) -> None:
    name = "a" * 60
    status, message = error_of(
        await api.apply(
            "apiVersion: serving.tierserve.io/v1alpha1\nkind: InferenceService\n"
            f"metadata: {{name: {name}}}\nspec: {{command: x}}\n"
        )
    )
    assert status == 400
    assert message == (
        f"<input>: InferenceService {name}: metadata.name: '{'a' * 60}' is 60 characters; "
        "an InferenceService name must be at most 48 so that the label "
        "app=isvc.<name>-predictor stays within 63"
    )
    assert api.store.list(InferenceService) == []


async def test_secret_values_never_appear_in_answers(api: Api) -> None:
    status, message = error_of(
        await api.apply(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: oss}\n"
            "stringData: {akSecret: 884213377120, nested: {a: hunter2}}\n"
            "data: {akId: not-base64-hunter2}\n"
        )
    )
    assert status == 400
    assert "884213377120" not in message and "hunter2" not in message
    assert "stringData.akSecret: (value not shown)" in message
    assert "data.akId: not valid base64 (value not shown)" in message
    status, _ = await api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: oss}\nstringData: {akSecret: hunter2}\n"
    )
    assert status == 200
    status, secret = await api.call("GET", "/api/v1/secrets/oss")
    assert status == 200 and secret["stringData"] == {"akSecret": "<redacted>"}


# -- fuzz ----------------------------------------------------------------------------------

_SEGMENTS = [
    "pods",
    "nodes",
    "isvc",
    "secrets",
    "x",
    "",
    "..",
    "%2e%2e",
    "..%2F..%2Fetc",
    "%00",
    "%ff",
    "ü",
    "a" * 300,
    "default",
    "a.b",
    "-a",
    "UPPER",
    "%2F",
    "logs",
    "apply",
]
_QUERIES = ["namespace", "tail", "offset", "allNamespaces", "resource", "name", "x"]
_VALUES = ["", "-1", "1e9", "9" * 40, "../..", "default", "%ff", "a b", "0", "10", "ü"]


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**70, 1.5, float("1e308")])
    if kind == 1:
        return rng.choice(["", "x", "ü" * 10, "\x00", "a" * 1000, alias_bomb()[:50]])
    if kind == 2:
        return rng.choice(["apiVersion: v1\nkind: Node\nmetadata: {name: n}\n", alias_bomb()])
    if kind == 3:
        return seed_text(rng.choice(["resourcepolicy.yaml", "model-storage.yaml"]))[
            : rng.randrange(1, 400)
        ]
    if kind == 4:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["documents", "source", "dryRun", "stopReplicas", "x"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


_ROUTES = [
    ("GET", "/api/v1/{resource}"),
    ("GET", "/api/v1/{resource}/{name}"),
    ("DELETE", "/api/v1/{resource}/{name}"),
    ("GET", "/api/v1/logs/{namespace}/{name}"),
    ("POST", "/api/v1/apply"),
    ("POST", "/api/v1/delete"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/cost"),
    ("GET", "/api/v1/routes"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("PATCH", "/api/v1/{resource}/{name}/{name}"),
]


def _mutated(rng: random.Random, text: str) -> str:
    """``text`` with a few characters replaced, removed or repeated."""
    chars = list(text)
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars[i] = rng.choice("&*:{}[]-#!|>'\"\\\t\n x0")
        elif op == 1:
            del chars[i]
        else:
            chars[i] = chars[i] * rng.randrange(2, 50)
    return "".join(chars)


async def test_fuzzed_requests_never_get_a_5xx(api: Api) -> None:
    rng = random.Random(20240601)
    replica = Replica.new("r-1", spec={"service": "deepseek"})
    api.store.put(replica)
    seeds = [seed_text("resourcepolicy.yaml"), seed_text("model-storage.yaml")]
    deadline = time.monotonic() + 20.0
    statuses: dict[int, int] = {}
    for _ in range(400):
        if time.monotonic() > deadline:
            break
        method, template = rng.choice(_ROUTES)
        if rng.random() < 0.1:
            method = rng.choice(["GET", "POST", "DELETE", "PUT"])
        path = template
        for param in ("{resource}", "{namespace}", "{name}"):
            while param in path:
                pick = rng.choice([*_SEGMENTS, "default", "r-1", "pods"])
                path = path.replace(param, pick, 1)
        if rng.random() < 0.5:
            path += "?" + "&".join(
                f"{rng.choice(_QUERIES)}={rng.choice(_VALUES)}" for _ in range(rng.randrange(3))
            )
        headers = {"Content-Type": rng.choice(["application/json"] * 4 + ["text/plain", ""])}
        if rng.random() < 0.05:
            headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "identity", "zz"])
        if template in ("/api/v1/apply", "/api/v1/delete") and rng.random() < 0.7:
            body: Any = {"documents": _mutated(rng, rng.choice(seeds)), "dryRun": True}
        else:
            body = _json_value(rng)
        data = (
            json.dumps(body).encode()
            if rng.random() < 0.9
            else bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        )
        try:
            status, answer = await api.call(method, path, data=data, headers=headers)
        except aiohttp.InvalidURL:
            continue  # a URL the client itself refuses to send
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, path, headers, data[:200], answer)
        if status >= 400 and not (status == 400 and isinstance(answer, str)):
            # (aiohttp's parser answers a request it cannot parse at all, such as a
            # Content-Encoding that does not decode in the first packet, with a plain 400
            # before the application sees it.)
            error_of((status, answer))
    # The routes were reached, not just refused: objects, logs and applies answered.
    assert statuses.get(200, 0) >= 40 and statuses.get(400, 0) >= 40, statuses
