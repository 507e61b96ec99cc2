"""The peer baseline: a FastAPI/Starlette + httpx proxy, the stack popular Python LLM
routers use. Usage: ``python httpx_proxy.py PORT UPSTREAM_URL`` (needs fastapi, uvicorn,
httpx, sniffio)."""

from __future__ import annotations

import json
import sys

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

UPSTREAM = sys.argv[2]
app = FastAPI()
client = httpx.AsyncClient(
    base_url=UPSTREAM,
    timeout=None,
    limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
)


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body = await request.body()
    headers = {"content-type": "application/json"}
    if json.loads(body).get("stream"):
        req = client.build_request("POST", "/v1/chat/completions", content=body, headers=headers)
        upstream = await client.send(req, stream=True)

        async def relay():  # type: ignore[no-untyped-def]
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(relay(), upstream.status_code, media_type="text/event-stream")
    r = await client.post("/v1/chat/completions", content=body, headers=headers)
    return Response(r.content, r.status_code, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
