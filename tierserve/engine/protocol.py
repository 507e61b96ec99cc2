"""OpenAI request bodies as vLLM 0.32.0 validates them, and its error answers.

Hand-written checks instead of pydantic models: the emulator must answer with
*vLLM's* messages, ``type`` and ``param`` (``"Bad Request"`` / ``body.<field>`` for
schema errors, ``BadRequestError`` / the bare field for semantic ones, 404
``NotFoundError`` / ``model`` for an unknown model), which the captures in
``tests/engine/fixtures/vllm_reference`` pin down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tierserve.engine.perf.profiles import ModelProfile
from tierserve.engine.textgen import count_tokens
from tierserve.errors import TierserveError

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""vLLM's (and OpenAI's) default ``max_tokens`` for /v1/completions."""


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


def _schema_error(
    kind: str, loc: str, msg: str, value: Any, ctx: dict[str, str] | None = None
) -> ApiError:
    """A pydantic-style validation error, rendered as vLLM renders it."""
    shown = f"<dict of {len(value)} items>" if isinstance(value, dict) else value
    detail: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": shown}
    if ctx:
        detail["ctx"] = ctx
    return ApiError(400, "Bad Request", f"1 validation error:\n  {detail!r}", loc)


def bad_request(message: str, param: str | None) -> ApiError:
    return ApiError(400, "BadRequestError", message, param)


def parse_json_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Decode a JSON object body; errors as vLLM gives them."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            400,
            "Bad Request",
            "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        err = getattr(exc, "msg", "Invalid UTF-8")
        raise _schema_error(
            "json_invalid", f"body.{pos}", "JSON decode error", {}, {"error": err}
        ) from exc
    if not isinstance(body, dict):
        raise _schema_error(
            "model_attributes_type",
            "body",
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )
    return body


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _schema_error(
                "int_parsing",
                f"body.{key}",
                "Input should be a valid integer, unable to parse string as an integer",
                value,
            ) from None
    raise _schema_error("int_type", f"body.{key}", "Input should be a valid integer", value)


def _float(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _schema_error(
                "float_parsing",
                f"body.{key}",
                "Input should be a valid number, unable to parse string as a number",
                value,
            ) from None
    raise _schema_error("float_type", f"body.{key}", "Input should be a valid number", value)


def _bool(value: Any, loc: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise _schema_error("bool_type", loc, "Input should be a valid boolean", value)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise _schema_error("string_type", "body.stop", "Input should be a valid string", stop)


@dataclass(frozen=True)
class GenerationRequest:
    """A validated chat or completion request.

    ``prompt_tokens``: counted prompt length; ``max_tokens``: tokens to allow after
    vLLM's clamp to the context left; ``max_tokens_param``: what the client asked.
    ``seed``: None when the client gave none.
    """

    kind: str
    model: str
    prompt_tokens: int
    prompt_key: str
    max_tokens: int
    max_tokens_param: int
    seed: int | None
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool
    continuous_usage: bool


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _check_model(body: dict[str, Any], served: tuple[str, ...]) -> str:
    model = body.get("model")
    if model is None:
        return served[0]
    if not isinstance(model, str):
        raise _schema_error("string_type", "body.model", "Input should be a valid string", model)
    if model not in served:
        raise ApiError(
            404,
            "NotFoundError",
            f"The model `{model}` does not exist. Valid aliases: {', '.join(served)}.",
            "model",
        )
    return served[0]


def _common(
    body: dict[str, Any],
    kind: str,
    served: tuple[str, ...],
    max_model_len: int,
    prompt_tokens: int,
    prompt_key: str,
    default_max: int | None,
) -> GenerationRequest:
    requested = _int(body, "max_completion_tokens")
    if requested is None:
        requested = _int(body, "max_tokens")
    temperature = _float(body, "temperature")
    top_p = _float(body, "top_p")
    seed = _int(body, "seed")
    n = _int(body, "n")
    stops = _stops(body)
    stream = _bool(body.get("stream", False), "body.stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _schema_error(
            "model_type",
            "body.stream_options",
            "Input should be a valid dictionary or instance of StreamOptions",
            options,
        )
    model = _check_model(body, served)
    if requested is not None and requested < 1:
        raise bad_request(
            f"max_tokens must be at least 1, got {requested}. "
            f"(parameter=max_tokens, value={requested})",
            "max_tokens",
        )
    if requested is not None and requested > max_model_len:
        raise bad_request(
            f"max_tokens={requested} cannot be greater than max_model_len={max_model_len}. "
            f"Please request fewer output tokens. (parameter=max_tokens, value={requested})",
            "max_tokens",
        )
    if temperature is not None and temperature < 0:
        raise bad_request(f"temperature must be non-negative, got {temperature}.", "temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise bad_request(f"top_p must be in (0, 1], got {top_p}.", "top_p")
    if n is not None and n != 1:
        # Deliberate deviation: vLLM serves n > 1; the emulator generates one choice.
        raise bad_request(f"n={n} is not supported by the tierserve emulator (only n=1).", "n")
    if options is not None and not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if prompt_tokens >= max_model_len:
        shown = min(prompt_tokens, max_model_len + 1)
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains at least {shown} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt. "
            f"(parameter=input_tokens, value={shown})",
            "input_tokens",
        )
    room = max_model_len - prompt_tokens
    asked = requested if requested is not None else (default_max or room)
    opts = options or {}
    return GenerationRequest(
        kind=kind,
        model=model,
        prompt_tokens=prompt_tokens,
        prompt_key=prompt_key,
        # Over-long prompt + max_tokens is silently clamped, as vLLM 0.32 does.
        max_tokens=min(asked, room),
        max_tokens_param=asked,
        seed=seed,
        stops=stops,
        stream=stream,
        include_usage=_bool(opts.get("include_usage", False), "body.stream_options.include_usage"),
        continuous_usage=_bool(
            opts.get("continuous_usage_stats", False), "body.stream_options.continuous_usage_stats"
        ),
    )


def parse_chat(
    body: dict[str, Any], served: tuple[str, ...], max_model_len: int, profile: ModelProfile
) -> GenerationRequest:
    """Validate a /v1/chat/completions body."""
    if "messages" not in body:
        raise _schema_error("missing", "body.messages", "Field required", body)
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _schema_error("list_type", "body.messages", "Input should be a valid list", messages)
    texts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _schema_error("missing", f"body.messages.{i}.role", "Field required", m)
        texts.append(_message_text(m.get("content")))
    if not messages:
        raise bad_request(
            "Cannot apply chat template to an empty conversation. Provide at least one message.",
            None,
        )
    tokens = profile.chat_overhead_tokens + sum(
        profile.message_overhead_tokens + count_tokens(t) for t in texts
    )
    key = "\x1e".join(texts)
    return _common(body, "chat", served, max_model_len, tokens, key, None)


def parse_completion(
    body: dict[str, Any], served: tuple[str, ...], max_model_len: int
) -> GenerationRequest:
    """Validate a /v1/completions body (one prompt: a string or token ids)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if prompt is None or prompt == "" or prompt == []:
        raise bad_request(
            "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
            "prompt",
        )
    if isinstance(prompt, str):
        tokens, key = count_tokens(prompt), prompt
    elif isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        tokens, key = len(prompt), ",".join(map(str, prompt))
    else:
        # Deliberate deviation: vLLM batches several prompts into several choices.
        raise bad_request(
            "the tierserve emulator takes one prompt per request "
            "(a string or a list of token ids).",
            "prompt",
        )
    return _common(
        body, "completion", served, max_model_len, tokens, key, COMPLETIONS_DEFAULT_MAX_TOKENS
    )
