"""The emulator's command line: vLLM's own ``vllm serve`` flags plus emulator options.

``tierserve engine emulate [[vllm] serve] MODEL_PATH --port 8080 --served-model-name x ...``
takes exactly what the runtime would hand ``vllm serve`` (with or without the ``vllm
serve`` words, as ``runtime/local/command.py`` recognises them); vLLM flags the emulator
has no use for are accepted and ignored with a warning, so any deployment's command line
works unchanged.
"""

from __future__ import annotations

import argparse
import os.path
from collections.abc import Sequence
from dataclasses import dataclass, field

from tierserve.engine.perf.cost import LOAD_BANDWIDTH_BYTES_S, EngineShape, load_time_s
from tierserve.engine.perf.hardware import GPUS, gpu_spec
from tierserve.engine.perf.profiles import resolve_profile
from tierserve.errors import FieldError, ValidationError

DTYPE_BYTES = {"auto": 2, "half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4}

TIMEOUT_KEEP_ALIVE_S = 5.0
"""uvicorn's ``timeout_keep_alive`` as vLLM runs it: idle keep-alive connections close
after 5 s, which clients and gateways holding connection pools have to cope with."""


@dataclass(frozen=True)
class Faults:
    """Injected failures (all off by default).

    ``startup_fail``: exit 1 once loading is done, never serving.
    ``crash_after``: the process dies abruptly when request N+1 arrives.
    ``hang_after``: after N requests the engine stops stepping (requests never finish;
    ``/health`` keeps answering, as with a GPU hang).
    """

    startup_fail: bool = False
    crash_after: int | None = None
    hang_after: int | None = None


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything one emulator process needs, validated.

    ``time_scale``: wall seconds per emulated second (0.1 runs 10x faster).
    ``load_time_s``: emulated start-up time. ``mean_output_tokens``: where the
    synthetic model stops on its own. ``dcgm_window_s``: emulated seconds the DCGM
    utilisation gauges average over. ``timeout_keep_alive_s``: wall seconds an idle
    keep-alive connection stays open (uvicorn's default, 5).
    """

    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    shape: EngineShape
    seed: int = 0
    dtype: str = "auto"
    time_scale: float = 1.0
    load_time_s: float = 0.0
    mean_output_tokens: int = 2048
    dcgm_window_s: float = 30.0
    timeout_keep_alive_s: float = TIMEOUT_KEEP_ALIVE_S
    faults: Faults = field(default_factory=Faults)
    ignored_args: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def model_name(self) -> str:
        """The name responses and metrics carry (vLLM uses the first served name)."""
        return self.served_model_names[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierserve engine emulate",
        description="vLLM-compatible engine emulator: `vllm serve` flags plus emulator options.",
        add_help=True,
        allow_abbrev=False,
    )
    p.add_argument("--model", dest="model_flag", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--dtype", default="auto", choices=sorted(DTYPE_BYTES))
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    emu = p.add_argument_group("emulator")
    emu.add_argument("--gpu", default="V100-32G", help=f"one of {', '.join(GPUS)}")
    emu.add_argument("--model-profile", default=None)
    emu.add_argument("--load-time-s", type=float, default=None)
    emu.add_argument("--load-bandwidth-gbps", type=float, default=LOAD_BANDWIDTH_BYTES_S / 1e9)
    emu.add_argument("--time-scale", type=float, default=1.0)
    emu.add_argument("--mean-output-tokens", type=int, default=2048)
    emu.add_argument("--dcgm-window-s", type=float, default=30.0)
    emu.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=TIMEOUT_KEEP_ALIVE_S,
        help="seconds before an idle keep-alive connection is closed (uvicorn's flag)",
    )
    emu.add_argument("--fault-startup-fail", action="store_true")
    emu.add_argument("--fault-crash-after", type=int, default=None)
    emu.add_argument("--fault-hang-after", type=int, default=None)
    emu.add_argument("--fault-slow-factor", type=float, default=1.0)
    return p


def _normalise(arg: str) -> str:
    """``--max_model_len=1`` -> ``--max-model-len=1``: vLLM accepts both spellings."""
    if not arg.startswith("--"):
        return arg
    flag, sep, value = arg.partition("=")
    return flag.replace("_", "-") + sep + value


def _split_leading(argv: list[str]) -> tuple[str | None, list[str]]:
    """Drop a leading ``vllm serve`` (``vllm`` may be a path) or ``serve`` and take a
    leading positional as the model path."""
    argv = [_normalise(a) for a in argv]
    if len(argv) >= 2 and os.path.basename(argv[0]) == "vllm" and argv[1] == "serve":
        argv = argv[2:]
    elif argv and argv[0] == "serve":
        argv = argv[1:]
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return None, argv


def parse_args(argv: Sequence[str]) -> EmulatorConfig:
    """Parse a ``vllm serve``-style command line. Raises ``ValidationError``."""
    positional, rest = _split_leading(list(argv))
    ns, unknown = build_parser().parse_known_args(rest)
    errors: list[FieldError] = []
    model = positional or ns.model_flag
    if not model:
        errors.append(FieldError("model", "missing: give MODEL_PATH or --model"))
        raise ValidationError("engine emulate", errors)
    warnings: list[str] = []
    if unknown:
        warnings.append(f"ignoring vLLM arguments the emulator does not use: {' '.join(unknown)}")
    try:
        gpu = gpu_spec(ns.gpu)
    except KeyError as exc:
        errors.append(FieldError("--gpu", str(exc.args[0])))
    try:
        profile, warning = resolve_profile(ns.model_profile, model)
        if warning:
            warnings.append(warning)
    except ValueError as exc:
        errors.append(FieldError("--model-profile", str(exc)))
    checks = [
        ("--gpu-memory-utilization", 0 < ns.gpu_memory_utilization <= 1, "a number in (0, 1]"),
        ("--time-scale", ns.time_scale > 0, "a number > 0"),
        ("--max-num-seqs", ns.max_num_seqs >= 1, "an integer >= 1"),
        ("--max-num-batched-tokens", ns.max_num_batched_tokens >= 1, "an integer >= 1"),
        ("--block-size", ns.block_size >= 1, "an integer >= 1"),
        ("--fault-slow-factor", ns.fault_slow_factor > 0, "a number > 0"),
        ("--mean-output-tokens", ns.mean_output_tokens >= 1, "an integer >= 1"),
        ("--load-bandwidth-gbps", ns.load_bandwidth_gbps > 0, "a number > 0"),
        ("--timeout-keep-alive", ns.timeout_keep_alive > 0, "a number > 0"),
    ]
    for flag, ok, expected in checks:
        if not ok:
            errors.append(
                FieldError(
                    flag, f"got {getattr(ns, flag[2:].replace('-', '_'))}; expected {expected}"
                )
            )
    if ns.max_model_len is not None and ns.max_model_len < 1:
        errors.append(FieldError("--max-model-len", f"got {ns.max_model_len}; expected >= 1"))
    if errors:
        raise ValidationError("engine emulate", errors)
    max_model_len = ns.max_model_len or 32768
    shape = EngineShape(
        gpu=gpu,
        profile=profile,
        dtype_bytes=DTYPE_BYTES[ns.dtype],
        gpu_memory_utilization=ns.gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=ns.max_num_seqs,
        # vLLM raises the token budget to max_model_len-sized chunks only with chunked
        # prefill off; with it on (V1's default) the budget stays as given.
        max_num_batched_tokens=ns.max_num_batched_tokens,
        block_size=ns.block_size,
        enforce_eager=ns.enforce_eager,
        slow_factor=ns.fault_slow_factor,
    )
    if ns.load_time_s is not None:
        load_time = max(0.0, ns.load_time_s)
    else:
        load_time = load_time_s(shape, ns.load_bandwidth_gbps * 1e9)
    return EmulatorConfig(
        model=model,
        served_model_names=tuple(ns.served_model_name or [model]),
        host=ns.host,
        port=ns.port,
        shape=shape,
        seed=ns.seed,
        dtype=ns.dtype,
        time_scale=ns.time_scale,
        load_time_s=load_time,
        mean_output_tokens=ns.mean_output_tokens,
        dcgm_window_s=ns.dcgm_window_s,
        timeout_keep_alive_s=ns.timeout_keep_alive,
        faults=Faults(
            startup_fail=ns.fault_startup_fail,
            crash_after=ns.fault_crash_after,
            hang_after=ns.fault_hang_after,
        ),
        ignored_args=tuple(unknown),
        warnings=tuple(warnings),
    )
