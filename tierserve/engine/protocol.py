"""OpenAI request bodies as vLLM 0.32.0 validates them (the answers: ``apierror``).

Hand-written checks instead of pydantic models: the emulator must answer with
*vLLM's* messages, ``type`` and ``param`` (``"Bad Request"`` / ``body.<field>`` for
schema errors, ``BadRequestError`` / the bare field for semantic ones, 404
``NotFoundError`` / ``model`` for an unknown model), which the captures in
``tests/engine/fixtures/vllm_reference`` pin down. The checks run in vLLM's order: the
request model's own validators (``top_logprobs``), field types and bounds, the serving
layer's checks (model, lengths), then the engine's (the ``logprobs`` cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tierserve.engine.apierror import ApiError, bad_request, schema_error, value_error
from tierserve.engine.perf.profiles import ModelProfile
from tierserve.engine.textgen import count_tokens

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""vLLM's (and OpenAI's) default ``max_tokens`` for /v1/completions."""

MAX_LOGPROBS = 20
"""vLLM's default ``--max-logprobs``: the most alternatives a request may ask for."""

SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
"""``seed`` bounds: vLLM's protocol limits it to a torch.long."""


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
            raise schema_error(
                "int_parsing",
                f"body.{key}",
                "Input should be a valid integer, unable to parse string as an integer",
                value,
            ) from None
    raise schema_error("int_type", f"body.{key}", "Input should be a valid integer", value)


def _float(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer past float's range
            raise schema_error(
                "finite_number", f"body.{key}", "Input should be a finite number", value
            ) from None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise schema_error(
                "float_parsing",
                f"body.{key}",
                "Input should be a valid number, unable to parse string as a number",
                value,
            ) from None
    raise schema_error("float_type", f"body.{key}", "Input should be a valid number", value)


def _bool(value: Any, loc: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise schema_error("bool_type", loc, "Input should be a valid boolean", value)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise schema_error("string_type", "body.stop", "Input should be a valid string", stop)


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
        raise schema_error("string_type", "body.model", "Input should be a valid string", model)
    if model not in served:
        raise ApiError(
            404,
            "NotFoundError",
            f"The model `{model}` does not exist. Valid aliases: {', '.join(served)}.",
            "model",
        )
    return served[0]


def _seed(body: dict[str, Any]) -> int | None:
    seed = _int(body, "seed")
    if seed is not None and seed > SEED_MAX:
        raise schema_error(
            "less_than_equal",
            "body.seed",
            f"Input should be less than or equal to {SEED_MAX}",
            seed,
            {"le": SEED_MAX},
        )
    if seed is not None and seed < SEED_MIN:
        raise schema_error(
            "greater_than_equal",
            "body.seed",
            f"Input should be greater than or equal to {SEED_MIN}",
            seed,
            {"ge": SEED_MIN},
        )
    return seed


def _chat_logprobs(body: dict[str, Any]) -> int | None:
    """Alternatives per token a chat request asks for (None: no logprobs; -1: the whole
    vocabulary), after the checks of vLLM's ``check_logprobs`` validator."""
    top = _int(body, "top_logprobs")
    if top is not None and top < 0 and top != -1:
        raise value_error(
            "`top_logprobs` must be a positive value or -1.", "top_logprobs", body, top
        )
    if top is not None and top != 0 and not body.get("logprobs"):
        raise value_error(
            "when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs", body
        )
    if body.get("logprobs") is None or not _bool(body["logprobs"], "body.logprobs"):
        return None
    return top or 0


def _completion_logprobs(body: dict[str, Any]) -> int | None:
    """``logprobs`` of a completion request: alternatives per token (-1: the vocabulary)."""
    asked = _int(body, "logprobs")
    if asked is not None and asked < 0 and asked != -1:
        raise value_error("`logprobs` must be a positive value or -1.", "logprobs", body, asked)
    return asked


def _check_logprobs_cap(asked: int | None, vocab: int) -> None:
    """vLLM's engine refuses more alternatives than ``--max-logprobs`` (after the API checks)."""
    if asked is None:
        return
    count = vocab if asked == -1 else asked
    if count > MAX_LOGPROBS:
        raise bad_request(
            f"Requested sample logprobs of {count}, which is greater than max allowed: "
            f"{MAX_LOGPROBS} (parameter=logprobs, value={count})",
            "logprobs",
        )


def _common(
    body: dict[str, Any],
    kind: str,
    served: tuple[str, ...],
    max_model_len: int,
    prompt_tokens: int,
    prompt_key: str,
    default_max: int | None,
    logprobs: int | None,
    vocab: int,
) -> GenerationRequest:
    requested = _int(body, "max_completion_tokens")
    if requested is None:
        requested = _int(body, "max_tokens")
    temperature = _float(body, "temperature")
    top_p = _float(body, "top_p")
    seed = _seed(body)
    n = _int(body, "n")
    stops = _stops(body)
    stream = _bool(body.get("stream", False), "body.stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise schema_error(
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
    _check_logprobs_cap(logprobs, vocab)
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
    logprobs = _chat_logprobs(body)  # a model validator: runs before the field checks
    if "messages" not in body:
        raise schema_error("missing", "body.messages", "Field required", body)
    messages = body["messages"]
    if not isinstance(messages, list):
        raise schema_error("list_type", "body.messages", "Input should be a valid list", messages)
    texts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise schema_error("missing", f"body.messages.{i}.role", "Field required", m)
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
    return _common(
        body, "chat", served, max_model_len, tokens, key, None, logprobs, profile.vocab
    )


def parse_completion(
    body: dict[str, Any], served: tuple[str, ...], max_model_len: int, profile: ModelProfile
) -> GenerationRequest:
    """Validate a /v1/completions body (one prompt: a string or token ids)."""
    logprobs = _completion_logprobs(body)
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
        body,
        "completion",
        served,
        max_model_len,
        tokens,
        key,
        COMPLETIONS_DEFAULT_MAX_TOKENS,
        logprobs,
        profile.vocab,
    )
