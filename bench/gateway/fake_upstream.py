"""A fast fake OpenAI upstream for the gateway benchmark (asyncio protocol, HTTP/1.1 keep-alive).

POST with ``"stream": true`` in the body → 32 SSE chunks (one chunked-encoding chunk
each, written back to back) and ``data: [DONE]``; any other POST → a small chat JSON;
GET → 200 empty. Usage: ``python fake_upstream.py PORT``.
"""

from __future__ import annotations

import asyncio
import re
import sys

_CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
JSON = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"deepseek-r1",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"This is a test."},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":5,'
    b'"total_tokens":16}}'
)
JSON_RESP = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(JSON)).encode()
    + b"\r\n\r\n"
    + JSON
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_CHUNKS = [
    _chunk(
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
        b'"model":"deepseek-r1","choices":[{"index":0,"delta":{"content":" tok%d"},'
        b'"finish_reason":null}]}\n\n' % i
    )
    for i in range(32)
] + [_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"]
EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = _CL.search(self.buf, 0, end + 2)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < total:
                return
            head, body = self.buf[:end], self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            if not head.startswith(b"POST"):
                self.t.write(EMPTY)
            elif b'"stream": true' in body or b'"stream":true' in body:
                self.t.write(SSE_HEAD)
                for c in SSE_CHUNKS:
                    self.t.write(c)
            else:
                self.t.write(JSON_RESP)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    print(f"fake upstream on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
