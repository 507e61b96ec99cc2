"""Client-input checks before anything is routed: API key, body size, JSON shape.

Each returns either the value or the error response to send (never raises on
client input, so no client ever causes a 500).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from tierserve.gateway.errors import error_response


def check_api_key(request: web.Request, keys: tuple[str, ...]) -> web.Response | None:
    """None when no keys are configured or the request carries ``Bearer <a key>``."""
    if not keys:
        return None
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        for key in keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                return None
    return error_response(
        401,
        "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
        kind="AuthenticationError",
        headers={"WWW-Authenticate": 'Bearer realm="tierserve"'},
    )


async def read_body(request: web.Request, max_bytes: int) -> bytes | web.Response:
    """The whole body, or 413 when it (or its declared length) is over ``max_bytes``."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        return _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    content = request.content
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            return _too_large(max_bytes)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(max_bytes: int) -> web.Response:
    return error_response(
        413, f"Request body is larger than the limit of {max_bytes} bytes.", "body"
    )


def parse_payload(body: bytes) -> dict[str, Any] | web.Response:
    """The request's JSON object, or 400 in vLLM's ``Bad Request`` shape."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        pos = getattr(exc, "pos", 0)
        reason = getattr(exc, "msg", "invalid UTF-8")
        return error_response(400, f"JSON decode error: {reason}", f"body.{pos}", "Bad Request")
    if not isinstance(payload, dict):
        return error_response(
            400,
            f"Input should be a JSON object, not {type(payload).__name__}",
            "body",
            "Bad Request",
        )
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        return error_response(
            400,
            f"model: input should be a valid string, got {model!r}",
            "body.model",
            "Bad Request",
        )
    return payload
