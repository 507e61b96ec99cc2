"""GPU gauges of the emulated GPU, named and labelled as dcgm-exporter exports them.

Pod labels come from the environment the runtime sets (``TIERSERVE_NAMESPACE``,
``TIERSERVE_POD``, ``TIERSERVE_CONTAINER``); the UUID is stable per host, port and GPU.
Utilisation is a percentage of an emulated window, so it reads the same at any time scale.
"""

from __future__ import annotations

import hashlib
import os
import socket

from prometheus_client import CollectorRegistry, Gauge

from tierserve.engine.args import EmulatorConfig
from tierserve.engine.perf.cost import memory_used_bytes
from tierserve.engine.perf.hardware import MIB


class DcgmGauges:
    """``DCGM_FI_DEV_GPU_UTIL``, ``DCGM_FI_PROF_SM_ACTIVE``, the per-process SM gauge and
    frame-buffer use, registered on the emulator's registry."""

    def __init__(self, registry: CollectorRegistry, config: EmulatorConfig) -> None:
        gpu = config.shape.gpu
        host = socket.gethostname()
        h = hashlib.sha1(f"{host}:{config.port}:{gpu.name}".encode()).hexdigest()
        uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        labels = {
            "gpu": "0",
            "UUID": uuid,
            "device": "nvidia0",
            "modelName": gpu.product_name,
            "Hostname": host,
            "container": os.environ.get("TIERSERVE_CONTAINER", ""),
            "namespace": os.environ.get("TIERSERVE_NAMESPACE", ""),
            "pod": os.environ.get("TIERSERVE_POD", ""),
        }

        def g(name: str, doc: str, extra: dict[str, str] | None = None) -> Gauge:
            lv = {**labels, **(extra or {})}
            return Gauge(name, doc, tuple(lv), registry=registry).labels(**lv)

        self.gpu_util = g("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
        self.sm_active = g(
            "DCGM_FI_PROF_SM_ACTIVE",
            "The ratio of cycles an SM has at least 1 warp assigned (in %).",
        )
        self.process_sm = g(
            "DCGM_CUSTOM_PROCESS_SM_UTIL",
            "SM utilization of the process on the GPU (in %).",
            {"pid": str(os.getpid())},
        )
        self.fb_used = g("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
        self.fb_free = g("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
        self.fb_used_mib_when_ready = int(memory_used_bytes(config.shape) // MIB)
        self.memory_mib = gpu.memory_mib
        self.fb_free.set(gpu.memory_mib)
        self.fb_used.set(0)

    def set_loaded(self) -> None:
        """The engine holds its memory from start-up on (vLLM pre-allocates the KV cache)."""
        used = self.fb_used_mib_when_ready
        self.fb_used.set(used)
        self.fb_free.set(self.memory_mib - used)

    def set_busy(self, busy_fraction: float) -> None:
        """Set the utilisation gauges from the busy fraction of the window (0-1)."""
        pct = round(100.0 * busy_fraction, 1)
        self.gpu_util.set(pct)
        self.process_sm.set(pct)
        # DCGM's PROF fields are ratios (0-1), not percentages.
        self.sm_active.set(round(busy_fraction, 3))
