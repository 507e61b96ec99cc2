"""Client input never causes a 500: requests malformed at every layer (request line,
headers, framing, encoding, JSON) get a 4xx in OpenAI's error shape, on raw sockets and
through aiohttp's client, and a bounded fuzz finds no 5xx the gateway made itself."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from dataclasses import dataclass

import aiohttp
import pytest
from gwhelpers import CHAT, HOST, gateway, metric_sum, scrape, scripted_upstreams, service

from tierserve.gateway import Backend, GatewayConfig
from tierserve.gateway.proxy import REPLICA_HEADER

NS = {"namespace": "default", "service": "deepseek"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def openai_error(self) -> dict[str, object]:
        """The error object, checked to be in OpenAI's shape."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        err = json.loads(self.body)["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert err["code"] == self.status
        return dict(err)


async def raw_request(port: int, data: bytes, timeout_s: float = 5.0) -> Answer | None:
    """Send ``data`` on a new connection, read until the gateway closes it (or
    ``timeout_s``); the first final response, or None if none came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                got += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return parse_answer(got, to_head=data.startswith(b"HEAD "))


def parse_answer(got: bytes, *, to_head: bool = False) -> Answer | None:
    """The first final response in ``got`` (``to_head``: it answers a HEAD: no body)."""
    while got.startswith(b"HTTP/1.1 1"):  # interim: 100 Continue
        got = got.split(b"\r\n\r\n", 1)[1]
    if b"\r\n\r\n" not in got:
        return None
    head, rest = got.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if to_head:
        rest = b""
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return Answer(status, headers, rest)


def post(body: bytes, *headers: str, target: str = "/v1/chat/completions") -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {HOST}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


POST_HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"


def nested(depth: int) -> bytes:
    return b'{"model": "deepseek-r1", "x": ' + b"[" * depth + b"]" * depth + b"}"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ---------------------------------------------------------------- the known cases


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
async def test_deeply_nested_json_is_400(depth: int) -> None:
    async with scripted_upstreams(1) as (up,), gateway([service(Backend("r0", up.url))]) as gw:
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{gw.url}/v1/chat/completions", data=nested(depth))
            answer = Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())
        assert answer.status == 400
        assert answer.openai_error()["param"] == "body"
        assert up.seen == []


async def test_huge_integer_is_400() -> None:
    async with gateway([service()]) as gw, aiohttp.ClientSession() as s:
        body = b'{"model": "deepseek-r1", "max_tokens": ' + b"9" * 5000 + b"}"
        r = await s.post(f"{gw.url}/v1/chat/completions", data=body)
        assert r.status == 400 and (await r.json())["error"]["param"] == "body"


async def test_absolute_form_targets_are_served() -> None:
    async with scripted_upstreams(1) as (up,), gateway([service(Backend("r0", up.url))]) as gw:
        port = port_of(gw.url)
        answer = await raw_request(
            port, b"GET http://x/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert answer is not None and answer.status == 200
        assert json.loads(answer.body)["data"][0]["id"] == "deepseek-r1"
        body = json.dumps(CHAT).encode()
        answer = await raw_request(
            port,
            post(body, "Connection: close", target=f"http://{HOST}/v1/chat/completions?a=1"),
        )
        assert answer is not None and answer.status == 200, answer
        assert answer.headers[REPLICA_HEADER.lower()] == "r0"
        assert len(up.seen) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-nonsense"])
async def test_a_content_encoding_the_body_is_not_in_is_4xx(encoding: str) -> None:
    async with scripted_upstreams(1) as (up,), gateway([service(Backend("r0", up.url))]) as gw:
        body = json.dumps(CHAT).encode()
        answer = await raw_request(
            port_of(gw.url), post(body, f"Content-Encoding: {encoding}", "Connection: close")
        )
        assert answer is not None
        if encoding == "x-nonsense":  # not an encoding aiohttp decodes: the body as it is
            assert answer.status == 200
            return
        assert 400 <= answer.status < 500, answer
        answer.openai_error()
        assert up.seen == []


async def test_a_gzip_body_is_decoded() -> None:
    async with scripted_upstreams(1) as (up,), gateway([service(Backend("r0", up.url))]) as gw:
        body = gzip.compress(json.dumps(CHAT).encode())
        answer = await raw_request(
            port_of(gw.url), post(body, "Content-Encoding: gzip", "Connection: close")
        )
        assert answer is not None and answer.status == 200
        assert up.seen == [CHAT]


@pytest.mark.parametrize(
    "data",
    [
        b"FOO\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",  # a bad method
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET http://[::1/v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
        POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        POST_HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        POST_HEAD + b"Content-Length: -1\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # too long a line
        POST_HEAD + b"Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",  # no route
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    ],
    ids=[
        "method",
        "header-name",
        "nul",
        "no-host",
        "version",
        "bad-url",
        "chunk-size",
        "two-lengths",
        "negative-length",
        "long-line",
        "expect",
        "options-star",
        "options-star-expect",
        "connect",
    ],
)
async def test_protocol_errors_are_4xx_in_openai_shape(data: bytes) -> None:
    async with gateway([service()]) as gw:
        answer = await raw_request(port_of(gw.url), data)
    assert answer is not None and 400 <= answer.status < 500, answer
    answer.openai_error()


# ---------------------------------------------------------------- the fuzz


def _chunked(body: bytes, rng: random.Random) -> bytes:
    out, pos = b"", 0
    while pos < len(body):
        n = rng.randint(1, 40)
        out += b"%x\r\n%s\r\n" % (n, body[pos : pos + n])
        pos += n
    return out + b"0\r\n\r\n"


JSON_BODIES: list[bytes] = [
    nested(1000),
    nested(20000),
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"model": "deepseek-r1", "max_tokens": ' + b"9" * 4400 + b"}",
    b'{"model": "deepseek-r1", "max_tokens": 1e999999}',
    b'{"model": "deepseek-r1", "temperature": NaN, "top_p": -Infinity}',
    b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "\\udfff\\ud800", "messages": []}',
    b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
    b'{"model": "deepseek-r1", "messages": "\xff\xfe\xfd"}',
    b"\xef\xbb\xbf" + json.dumps(CHAT).encode(),  # a UTF-8 BOM
    json.dumps(CHAT).encode("utf-16"),
    b'{"model": ["deepseek-r1"]}',
    b'{"model": null, "stream": true}',
    b'{"model": "deepseek-r1", "stream": "yes"}',
    b'{"model": "deepseek-r1"' + b", " * 2000,
    b'{"model": "deepseek-r1", "a": "' + b"\\" * 3001 + b'"}',
    b"null",
    b"1" * 10000,
    b'"\\u0000"',
    b"{}" * 50,
    json.dumps({**CHAT, "stream": True}).encode(),
    json.dumps(CHAT).encode(),
]
HEADER_SETS: list[list[str]] = [
    [],
    ["Content-Type: text/plain"],
    ["Content-Encoding: gzip"],
    ["Content-Encoding: deflate, gzip"],
    ["Content-Encoding: br"],
    ["Transfer-Encoding: gzip, chunked"],
    ["Expect: 100-continue"],
    ["Expect: nonsense"],
    ["Authorization: Bearer \xff\xfe"],
    ["X-Request-Id: \xe9\xa0\x80\xff"],
    ["Accept: \x7f"],
    ["Host: [::1"],
    ["Connection: upgrade", "Upgrade: websocket"],
    ["Content-Type: application/json; charset=latin-1"],
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "get"]
TARGETS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/metrics",
    "/health",
    "http://x/v1/chat/completions",
    "https://x:99/v1/completions?q=%zz",
    "*",
    "//v1/completions",
    "/v1/chat/completions/../../metrics",
    "/%00",
    "/\xff",
    "x:y",
]


def fuzz_request(rng: random.Random) -> bytes:
    """One request, malformed in a few random ways."""
    body = rng.choice(JSON_BODIES)
    headers = list(rng.choice(HEADER_SETS))
    method = rng.choice(METHODS)
    target = rng.choice(TARGETS)
    version = rng.choice(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "http/1.1"])
    framing = rng.choice(["length"] * 3 + ["chunked", "bad-chunked", "short", "none"])
    if framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        payload = _chunked(body, rng)
    elif framing == "bad-chunked":
        headers.append("Transfer-Encoding: chunked")
        payload = rng.choice(
            [b"zz\r\n", b"5\r\nabc\r\n", b"ffffffffffffffffff\r\n", b"3;\x00\r\nabc"]
        )
        payload += b"\r\n0\r\n\r\n"
    elif framing == "short":  # the declared length is more than what comes: a body timeout
        headers.append(f"Content-Length: {len(body) + 10}")
        payload = body
    elif framing == "none":
        payload = b""
    else:
        headers.append(f"Content-Length: {len(body)}")
        payload = body
    headers.append("Connection: close")
    rng.shuffle(headers)
    lines = [f"{method} {target} {version}", f"Host: {HOST}", *headers]
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    if rng.random() < 0.1:  # a byte flipped somewhere in the head
        i = rng.randrange(len(head))
        head = head[:i] + bytes([rng.randrange(256)]) + head[i + 1 :]
    return head + payload


async def test_fuzz_finds_no_5xx_of_the_gateways_own() -> None:
    rng = random.Random(20240601)
    cfg = GatewayConfig(
        max_body_bytes=64 * 1024,
        client_header_timeout_s=0.5,
        client_body_timeout_s=0.5,
        client_keepalive_s=0.5,
    )
    statuses: dict[int, int] = {}
    async with scripted_upstreams(2) as (a, b):
        routes = [service(Backend("a", a.url), Backend("b", b.url, unit=1))]
        async with gateway(routes, cfg) as gw:
            port = port_of(gw.url)
            sem = asyncio.Semaphore(16)

            async def one(data: bytes) -> None:
                async with sem:
                    answer = await raw_request(port, data, timeout_s=5.0)
                if answer is None:
                    return
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if REPLICA_HEADER.lower() in answer.headers:
                    return  # the replica's own answer, passed on
                assert answer.status < 500, (data[:200], answer)
                if answer.status >= 400 and answer.body:
                    answer.openai_error()

            await asyncio.gather(*(one(fuzz_request(rng)) for _ in range(300)))

            # A connection per request: a pooled one could meet the 0.5 s idle close.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as s:
                for i in range(200):
                    body = rng.choice(JSON_BODIES)
                    headers = {"Content-Type": rng.choice(["application/json", "text/plain"])}
                    if i % 5 == 0:
                        headers["Content-Encoding"] = rng.choice(["gzip", "deflate"])
                    if i % 7 == 0:
                        headers["X-Request-Id"] = "".join(
                            chr(rng.randrange(32, 0x2FF)) for _ in range(8)
                        )
                    path = rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/x"])
                    async with s.post(f"{gw.url}{path}", data=body, headers=headers) as r:
                        data = await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if REPLICA_HEADER not in r.headers:
                            assert r.status < 500, (body[:200], r.status, data)
                            if r.status >= 400:
                                Answer(
                                    r.status, {"content-type": r.content_type}, data
                                ).openai_error()
            text = await scrape(gw.url)
    assert sum(statuses.values()) >= 400  # nearly every request was answered
    assert any(400 <= s < 500 for s in statuses) and 200 in statuses
    assert metric_sum(text, "tierserve_gateway_ejections_total", **NS) == 0
    assert metric_sum(text, "tierserve_gateway_retries_total", **NS) == 0
