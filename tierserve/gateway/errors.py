"""Responses in OpenAI's (and vLLM's) error shape, and the gateway's own error cases.

``{"error": {"message", "type", "param", "code"}}`` with ``code`` the HTTP status,
as vLLM 0.32 answers (see shared/vllm-reference). Every error the gateway itself
produces goes through here, so no client ever sees an HTML page or a 500 for its
own input.
"""

from __future__ import annotations

import json

from aiohttp import web

from tierserve.errors import NotFoundError, RetryLater, TierserveError, ValidationError

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    408: "RequestTimeoutError",
    413: "RequestEntityTooLargeError",
    417: "ExpectationFailedError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def error_body(status: int, message: str, param: str | None = None, kind: str = "") -> bytes:
    err = {
        "message": message,
        "type": kind or _TYPES.get(status, "InternalServerError"),
        "param": param,
        "code": status,
    }
    return json.dumps({"error": err}).encode()


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    kind: str = "",
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        body=error_body(status, message, param, kind),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def sse_error_event(status: int, message: str) -> bytes:
    """What ends a stream broken after its first byte: an error event, then ``[DONE]``."""
    return b"data: " + error_body(status, message) + b"\n\ndata: [DONE]\n\n"


def model_not_found(model: str) -> NotFoundError:
    """No service has this host or served model name (vLLM's wording)."""
    return NotFoundError(f"The model `{model}` does not exist.")


def response_for(exc: TierserveError, retry_after_s: int = 5) -> web.Response:
    """Translate a tierserve error into the client's answer."""
    if isinstance(exc, NotFoundError):  # the gateway's only one: an unknown model
        return error_response(404, str(exc), "model")
    if isinstance(exc, ValidationError):
        param = exc.errors[0].path if exc.errors else None
        return error_response(400, "; ".join(e.message for e in exc.errors), param or None)
    if isinstance(exc, RetryLater):
        wait = max(1, round(exc.retry_after_s or retry_after_s))
        return error_response(503, str(exc), headers={"Retry-After": str(wait)})
    return error_response(502, str(exc))
