"""Client-input checks before anything is routed: API key, body, JSON shape.

Each returns either the value or the error response to send (never raises on
client input, so no client ever causes a 500).
"""

from __future__ import annotations

import asyncio
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


async def read_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytes | web.Response:
    """The whole body; 413 when it (or its declared length) is over ``max_bytes``, 408
    when no bytes came for ``timeout_s`` (between two reads), 400 when it cannot be
    decoded (bad chunked framing, a ``Content-Encoding`` it is not in)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        return _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    content = request.content
    while True:
        try:
            if content.is_eof():  # all of it arrived already: nothing to wait for
                chunk = await content.readany()
            else:
                async with asyncio.timeout(timeout_s):
                    chunk = await content.readany()
        except TimeoutError:
            return _closing(
                error_response(408, f"No request body bytes arrived for {timeout_s:g} s.", "body")
            )
        except web.RequestPayloadError as exc:  # aiohttp's message names the problem
            return _closing(
                error_response(400, f"Invalid request body: {exc}", "body", "Bad Request")
            )
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            return _too_large(max_bytes)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _closing(resp: web.Response) -> web.Response:
    """``resp`` with ``Connection: close``: the rest of a body that broke or stalled
    cannot be skipped, so the connection cannot carry another request."""
    resp.force_close()
    return resp


def _too_large(max_bytes: int) -> web.Response:
    return error_response(
        413, f"Request body is larger than the limit of {max_bytes} bytes.", "body"
    )


def parse_payload(body: bytes) -> dict[str, Any] | web.Response:
    """The request's JSON object, or 400 in vLLM's ``Bad Request`` shape."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        return error_response(
            400, f"JSON decode error: {exc.msg}", f"body.{exc.pos}", "Bad Request"
        )
    except UnicodeDecodeError:
        return error_response(400, "JSON decode error: invalid UTF-8", "body.0", "Bad Request")
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit limit
        return error_response(400, f"JSON decode error: {exc}", "body", "Bad Request")
    except RecursionError:  # nested deeper than the interpreter's stack allows
        return error_response(400, "JSON decode error: nested too deeply", "body", "Bad Request")
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
