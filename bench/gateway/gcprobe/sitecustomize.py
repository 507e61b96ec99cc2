"""A cyclic-GC probe for benchmark runs: ``PYTHONPATH=bench/gateway/gcprobe`` makes every
Python process of the run log its collections over 20 ms (with the generation and what
was collected) to ``/tmp/gcprobe/gc-<pid>.log``, its command line on the first line."""

import gc
import os
import sys
import time
from typing import Any

os.makedirs("/tmp/gcprobe", exist_ok=True)
_started: dict[str, float] = {}
_log = open(f"/tmp/gcprobe/gc-{os.getpid()}.log", "w", buffering=1)  # noqa: SIM115
_log.write(" ".join(sys.argv) + "\n")


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started["t"] = time.perf_counter()
        return
    took = time.perf_counter() - _started.get("t", time.perf_counter())
    if took > 0.02:
        _log.write(
            f"{time.time():.3f} gen{info['generation']} {took * 1000:.1f} ms "
            f"collected {info['collected']}\n"
        )


gc.callbacks.append(_callback)
