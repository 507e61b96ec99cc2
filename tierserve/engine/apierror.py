"""The emulator's error answers: OpenAI's error body as vLLM 0.32.0 fills it in.

``ApiError`` is the one exception the HTTP layer turns into an answer
(``{"error": {"message", "type", "param", "code"}}`` with ``code`` the HTTP status).
Three kinds, as vLLM has them:

- ``schema_error``: pydantic's field errors through vLLM's validation handler, 400,
  ``type: "Bad Request"``, ``param`` the dotted location (``body.messages``);
- ``value_error``: a ``VLLMValidationError`` raised by a request model's own validator,
  the same shape at ``loc: body`` with the parameter it names as ``param``;
- ``bad_request``: the serving layer's and the engine's checks, 400 ``BadRequestError``;
- ``http_error``: FastAPI's own ``HTTPException`` (a body it cannot parse at all), the
  status phrase as ``type`` and no ``param``.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from tierserve.errors import TierserveError

MAX_INPUT_CHARS = 200
"""vLLM bounds the ``input`` echoed in a validation error to this many characters."""
MAX_ERROR_CHARS = 1000
"""... and one rendered error to this many."""


class ApiError(TierserveError):
    """An OpenAI-shaped error answer: HTTP status, ``type``, message and ``param``."""

    def __init__(self, status: int, err_type: str, message: str, param: str | None = None) -> None:
        self.status = status
        self.err_type = err_type
        self.message = message
        self.param = param
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.status,
            }
        }


def _shown(value: Any) -> Any:
    """A validation error's ``input`` as vLLM 0.32 bounds it: containers described, the
    rest as text of at most 200 characters (surrogates escaped, so the answer encodes)."""
    if isinstance(value, list | tuple | dict | set):
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"<{type(value).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_INPUT_CHARS:
        return text[:MAX_INPUT_CHARS] + "...[truncated]"
    return text


def schema_error(
    kind: str,
    loc: str,
    msg: str,
    value: Any,
    ctx: dict[str, Any] | None = None,
    param: str | None = None,
) -> ApiError:
    """A pydantic-style validation error, rendered as vLLM renders it (``param``: the
    ``loc`` unless the error names its own)."""
    detail: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": _shown(value)}
    if ctx:
        detail["ctx"] = ctx
    text = repr(detail)
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "...[truncated]"
    return ApiError(400, "Bad Request", f"1 validation error:\n  {text}", param or loc)


@dataclass(frozen=True)
class _Raised:
    """What pydantic keeps in ``ctx`` for an error a validator raised; shown as its repr."""

    message: str

    def __repr__(self) -> str:
        return f"VLLMValidationError({self.message!r})"


def value_error(message: str, param: str, body: dict[str, Any], value: Any = None) -> ApiError:
    """A ``VLLMValidationError`` from a request model's own validator: pydantic reports it
    at ``loc: body``, and vLLM's handler takes ``param`` from the error."""
    extras = f"parameter={param}" + (f", value={value}" if value is not None else "")
    return schema_error(
        "value_error",
        "body",
        f"Value error, {message} ({extras})",
        body,
        {"error": _Raised(message)},
        param,
    )


def bad_request(message: str, param: str | None) -> ApiError:
    return ApiError(400, "BadRequestError", message, param)


def http_error(status: int, detail: str) -> ApiError:
    return ApiError(status, HTTPStatus(status).phrase, detail)
