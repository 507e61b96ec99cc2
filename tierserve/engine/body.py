"""Decoding a request body into a JSON object as vLLM's FastAPI layer does, never with a 500.

In order:

- the content type must be ``application/json`` (vLLM 0.32's 400 "Unsupported Media
  Type"); ``Content-Encoding`` is not decoded, as uvicorn and Starlette do not;
- a JSON syntax error is pydantic's ``json_invalid`` at ``body.<offset>``;
- what ``json`` cannot decode otherwise (bytes that are not UTF-8, an integer past
  Python's 4300-digit limit, nesting deeper than ``MAX_JSON_DEPTH``) is FastAPI's 400
  "There was an error parsing the body", which is how vLLM answers a ``RecursionError``;
- a string with a lone surrogate (``"\\ud800"``) is pydantic's ``string_unicode`` at its
  location: it can be neither tokenized nor written back as UTF-8;
- a body that is not an object is ``model_attributes_type``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tierserve.engine.apierror import ApiError, http_error, schema_error

MAX_JSON_DEPTH = 500
"""Deepest nesting of arrays and objects decoded. Python's decoder recurses per level and
stops near its recursion limit (1000 frames, less the handler's own); a fixed bound well
below it keeps the answer the same whatever the stack depth, and leaves room for code that
walks the decoded value. Real requests (tool schemas included) nest a few dozen deep."""

PARSE_ERROR = "There was an error parsing the body"
"""FastAPI's detail for a body ``json.loads`` fails on with anything but a syntax error."""

_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string (skipped whole) or a bracket."""
_SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone surrogate: json joins escaped pairs into one code point, so any left is alone."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Decode a JSON object body; errors as vLLM gives them (``ApiError``)."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            400,
            "Bad Request",
            "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
        )
    try:
        # json.loads' own decoding of bytes, so UTF-16/32 bodies keep working
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise http_error(400, PARSE_ERROR) from exc
    if _too_deep(text):
        raise http_error(400, PARSE_ERROR)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise schema_error(
            "json_invalid", f"body.{exc.pos}", "JSON decode error", {}, {"error": exc.msg}
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise http_error(400, PARSE_ERROR) from exc
    if (_SURROGATE.search(text) or _SURROGATE_ESCAPE.search(text)) and (
        found := _find_surrogate(body)
    ):
        loc, value = found
        raise schema_error(
            "string_unicode",
            loc,
            "Input should be a valid string, unable to parse raw data as a unicode string",
            value,
        )
    if not isinstance(body, dict):
        raise schema_error(
            "model_attributes_type",
            "body",
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )
    return body


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than ``MAX_JSON_DEPTH`` (brackets inside
    strings do not count). Most bodies have fewer brackets in all than the limit."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


def _find_surrogate(body: Any) -> tuple[str, str] | None:
    """``(location, string)`` of the first string or key holding a lone surrogate.

    Iterative, in document order; locations are dotted as pydantic's are
    (``body.messages.0.content``).
    """
    stack: list[tuple[Any, str]] = [(body, "body")]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return loc, value
        elif isinstance(value, dict):
            for key in value:
                if _SURROGATE.search(key):
                    return loc, key
            stack.extend((v, f"{loc}.{k}") for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{loc}.{i}") for i, v in reversed(list(enumerate(value))))
    return None
