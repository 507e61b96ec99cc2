"""The emulator's performance model: pure arithmetic and a pure scheduler.

No I/O, no clock, no asyncio; the emulator and the simulator both drive it with
``now`` and durations (emulated seconds).
"""

from tierserve.engine.perf.cost import EngineShape, kv_cache_tokens, load_time_s, step_time_s
from tierserve.engine.perf.hardware import GPUS, GpuSpec, gpu_spec
from tierserve.engine.perf.predict import LoadPrediction, simulate_arrivals, simulate_closed_loop
from tierserve.engine.perf.profiles import PROFILES, ModelProfile, resolve_profile
from tierserve.engine.perf.scheduler import BatchScheduler, Sequence, StepPlan, TokenEvent

__all__ = [
    "GPUS",
    "PROFILES",
    "BatchScheduler",
    "EngineShape",
    "GpuSpec",
    "LoadPrediction",
    "ModelProfile",
    "Sequence",
    "StepPlan",
    "TokenEvent",
    "gpu_spec",
    "kv_cache_tokens",
    "load_time_s",
    "resolve_profile",
    "simulate_arrivals",
    "simulate_closed_loop",
    "step_time_s",
]
