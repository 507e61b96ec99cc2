"""The emulator's HTTP API (aiohttp): OpenAI endpoints as vLLM serves them.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``, ``GET /ping``, ``GET /load``, ``GET /version``, ``POST /tokenize``,
``GET /metrics``. Unknown routes and wrong methods answer FastAPI's
``{"detail": ...}`` as vLLM does; anything unexpected answers OpenAI's error body
with 500, never an HTML page. Every answer carries ``vary: Origin``, as each of
vLLM 0.32's does.

``make_runner`` serves the app as uvicorn serves vLLM: a client that disconnects cancels
its handler (vLLM aborts the request), idle keep-alive connections close after
``--timeout-keep-alive`` seconds, and request bodies are not decompressed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from tierserve.engine.apierror import ApiError, bad_request, http_error
from tierserve.engine.args import EmulatorConfig
from tierserve.engine.body import PARSE_ERROR, parse_json_body
from tierserve.engine.core import EmulatedEngine, Request
from tierserve.engine.metrics import CONTENT_TYPE, EngineMetrics
from tierserve.engine.perf.cost import kv_cache_tokens
from tierserve.engine.protocol import GenerationRequest, parse_chat, parse_completion
from tierserve.engine.responses import (
    VLLM_VERSION,
    StreamRenderer,
    chat_body,
    completion_body,
    dumps_bytes,
    models_body,
    new_id,
)
from tierserve.engine.textgen import plan_output, request_rng, token_ids

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps_bytes(obj), status=status, content_type="application/json", headers=headers
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(err.body(), status=err.status)


class EmulatorState:
    """What the handlers share: config, engine, metrics, fault counters.

    ``on_crash`` is called for the crash fault; the CLI passes one that kills the
    process, in-process tests pass a fake.
    """

    def __init__(self, config: EmulatorConfig, on_crash: Callable[[], None]) -> None:
        self.config = config
        self.metrics = EngineMetrics(config)
        self.engine = EmulatedEngine(config.shape, self.metrics, config.time_scale)
        self.on_crash = on_crash
        self.requests_seen = 0
        self.created = int(time.time())
        self._unseeded = random.Random(config.seed)

    def count_request(self) -> None:
        """Apply the crash/hang faults when request N+1 arrives."""
        self.requests_seen += 1
        faults = self.config.faults
        if faults.crash_after is not None and self.requests_seen > faults.crash_after:
            log.error("fault injection: engine crashes on request %d", self.requests_seen)
            self.on_crash()
        if faults.hang_after is not None and self.requests_seen > faults.hang_after:
            if not self.engine.hung:
                log.error("fault injection: engine hangs from request %d", self.requests_seen)
            self.engine.hang()

    def seed_for(self, req: GenerationRequest) -> int:
        # Unseeded requests draw from the emulator's own --seed stream: reproducible
        # across runs for the same request order, different between requests.
        return req.seed if req.seed is not None else self._unseeded.getrandbits(63)


STATE_KEY = web.AppKey("tierserve_emulator", EmulatorState)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.RequestPayloadError:  # a body aiohttp could not read (e.g. cut-off chunks)
        return error_response(http_error(400, PARSE_ERROR))
    except web.HTTPMethodNotAllowed as exc:
        return json_response(
            {"detail": "Method Not Allowed"}, 405, {"allow": ", ".join(sorted(exc.allowed_methods))}
        )
    except web.HTTPNotFound:
        return json_response({"detail": "Not Found"}, 404)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a bug: answer in OpenAI's shape, keep serving
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(ApiError(500, "InternalServerError", f"internal error: {exc}"))


async def _generate(request: web.Request, kind: str) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE_KEY]
    cfg = state.config
    body = parse_json_body(await request.read(), request.headers.get("Content-Type", ""))
    if kind == "chat":
        req = parse_chat(body, cfg.served_model_names, cfg.shape.max_model_len, cfg.shape.profile)
    else:
        req = parse_completion(
            body, cfg.served_model_names, cfg.shape.max_model_len, cfg.shape.profile
        )
    if not state.engine.scheduler.fits_ever(req.prompt_tokens, 1):
        raise bad_request(
            f"prompt does not fit in the emulated KV cache ({kv_cache_tokens(cfg.shape)} tokens)",
            "input_tokens",
        )
    state.count_request()
    rng = request_rng(state.seed_for(req), req.prompt_key)
    output = plan_output(rng, req.max_tokens, cfg.mean_output_tokens, req.stops)
    handle = state.engine.submit(req.prompt_tokens, output, req.stream, req.max_tokens_param)
    rid = new_id(kind)
    created = int(time.time())
    try:
        if req.stream:
            return await _stream(request, state, req, handle, rid, created)
        while not handle.done:
            await handle.wait(handle.emitted)
        if handle.aborted:
            raise ApiError(500, "InternalServerError", "request aborted: engine stopped")
        make = chat_body if kind == "chat" else completion_body
        n = len(output.pieces)
        return json_response(
            make(
                rid,
                created,
                req.model,
                output.text,
                output.finish_reason,
                output.stop_reason,
                req.prompt_tokens,
                n,
            )
        )
    finally:
        if not handle.done:  # client disconnected or server stopping
            state.engine.abort(handle)


async def _stream(
    request: web.Request,
    state: EmulatorState,
    req: GenerationRequest,
    handle: Request,
    rid: str,
    created: int,
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    render = StreamRenderer(
        req.kind,
        rid,
        created,
        req.model,
        req.prompt_tokens,
        req.include_usage,
        req.continuous_usage,
    )
    role = render.role_event()
    try:
        if role is not None:
            await resp.write(role)
        await _write_tokens(resp, render, handle)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away; _generate aborts the request
    return resp


async def _write_tokens(resp: web.StreamResponse, render: StreamRenderer, handle: Request) -> None:
    """One SSE event per token, as each step emits it; the final events at the end."""
    pieces = handle.output.pieces
    total = len(pieces)
    sent = 0
    while sent < total:
        await handle.wait(sent)
        if handle.aborted:
            return  # engine stopped: end the stream without [DONE]
        upto = handle.emitted
        while sent < upto:
            sent += 1
            if sent == total:
                out = handle.output
                for ev in render.final_events(pieces[-1], sent, out.finish_reason, out.stop_reason):
                    await resp.write(ev)
            else:
                await resp.write(render.token_event(pieces[sent - 1], sent))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completion")


async def list_models(request: web.Request) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE_KEY]
    cfg = state.config
    return json_response(
        models_body(cfg.served_model_names, cfg.model, cfg.shape.max_model_len, state.created)
    )


async def health(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200)


async def load(request: web.Request) -> web.StreamResponse:
    engine = request.app[STATE_KEY].engine
    return json_response({"server_load": engine.num_running + engine.num_waiting})


async def version(request: web.Request) -> web.StreamResponse:
    return json_response({"version": VLLM_VERSION})


async def tokenize(request: web.Request) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE_KEY]
    body = parse_json_body(await request.read(), request.headers.get("Content-Type", ""))
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise bad_request("prompt must be a string", "prompt")
    ids = token_ids(prompt, state.config.shape.profile.vocab)
    return json_response(
        {
            "count": len(ids),
            "max_model_len": state.config.shape.max_model_len,
            "tokens": ids,
            "token_strs": None,
        }
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE_KEY]
    state.engine.refresh_gauges(state.config.dcgm_window_s)
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def vary_origin(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault(hdrs.VARY, "Origin")


def build_app(state: EmulatorState) -> web.Application:
    """The aiohttp application; the engine starts and stops with it."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    app.on_response_prepare.append(vary_origin)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/ping", health)
    app.router.add_post("/ping", health)
    app.router.add_get("/load", load)
    app.router.add_get("/version", version)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/metrics", metrics)

    async def on_startup(app: web.Application) -> None:
        state.engine.start()
        state.metrics.dcgm.set_loaded()

    async def on_shutdown(app: web.Application) -> None:
        await state.engine.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


def make_runner(state: EmulatorState) -> web.AppRunner:
    """The app's runner, set up as uvicorn runs vLLM (see the module docstring)."""
    return web.AppRunner(
        build_app(state),
        access_log=None,
        # A non-streamed request would otherwise run on after its client is gone,
        # inflating num_requests_running with work nobody reads.
        handler_cancellation=True,
        keepalive_timeout=state.config.timeout_keep_alive_s,
        auto_decompress=False,
    )
