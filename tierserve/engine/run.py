"""Running one emulator process: start-up checks, emulated load time, serve, faults.

Like vLLM 0.32, the port is not opened until the engine is ready: during the
emulated load time connections are refused, then ``/health`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from tierserve.aio import loop_factory
from tierserve.engine.args import EmulatorConfig, parse_args
from tierserve.engine.perf.cost import kv_cache_bytes, kv_cache_tokens
from tierserve.engine.server import EmulatorState, make_runner
from tierserve.errors import ValidationError

log = logging.getLogger("tierserve.engine")

CRASH_EXIT_CODE = 1
"""Exit status of the crash fault (what a Python process dying of an error returns)."""


def startup_errors(cfg: EmulatorConfig) -> list[str]:
    """What real vLLM would refuse at start-up with this GPU, model and flags."""
    shape = cfg.shape
    errors = []
    if cfg.shape.dtype_bytes == 2 and not shape.gpu.bf16 and _asked_bf16(cfg):
        errors.append(
            f"Bfloat16 is only supported on GPUs with compute capability of at least 8.0. "
            f"Your {shape.gpu.product_name} GPU has compute capability 7.0. "
            "You can use float16 instead by explicitly setting the `dtype` flag in CLI, "
            "for example: --dtype=half."
        )
    if kv_cache_bytes(shape) <= 0:
        errors.append(
            "No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine."
        )
    elif kv_cache_tokens(shape) < shape.max_model_len:
        errors.append(
            f"The model's max seq len ({shape.max_model_len}) is larger than the maximum number "
            f"of tokens that can be stored in KV cache ({kv_cache_tokens(shape)}). Try increasing "
            "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
        )
    return errors


def _asked_bf16(cfg: EmulatorConfig) -> bool:
    return cfg.dtype == "bfloat16"


def crash_now() -> None:
    """The crash fault: die at once, no cleanup, connections reset (like a dying engine)."""
    sys.stderr.write("ERROR: EngineCore encountered a fatal error (fault injection); exiting\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


async def serve(
    cfg: EmulatorConfig, on_crash: Callable[[], None] = crash_now, stop: asyncio.Event | None = None
) -> int:
    """Load (emulated), then serve until ``stop`` is set or SIGTERM/SIGINT; the exit code."""
    for warning in cfg.warnings:
        log.warning(warning)
    shape = cfg.shape
    log.info(
        "emulating vLLM %s: model=%s served as %s on %s (%s), profile %s, KV cache %d tokens",
        "serve",
        cfg.model,
        ",".join(cfg.served_model_names),
        shape.gpu.name,
        shape.gpu.product_name,
        shape.profile.name,
        kv_cache_tokens(shape),
    )
    errors = startup_errors(cfg)
    if errors:
        for e in errors:
            log.error("ValueError: %s", e)
        return 1
    log.info(
        "loading weights: %.1f emulated s (%.2f wall s)",
        cfg.load_time_s,
        cfg.load_time_s * cfg.time_scale,
    )
    await asyncio.sleep(cfg.load_time_s * cfg.time_scale)
    if cfg.faults.startup_fail:
        log.error(
            "fault injection: engine start-up failed (RuntimeError: Engine core "
            "initialization failed)"
        )
        return 1
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    runner = make_runner(EmulatorState(cfg, on_crash))
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
        await site.start()
        log.info("Starting vLLM API server on http://%s:%d", cfg.host, cfg.port)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point of ``tierserve engine emulate``."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(asctime)s %(name)s: %(message)s"
    )
    try:
        cfg = parse_args(argv)
    except ValidationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    # uvloop (when installed) lowers the per-request overhead that shows up in TTFT.
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        return runner.run(serve(cfg))
