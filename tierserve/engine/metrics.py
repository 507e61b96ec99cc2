"""``/metrics`` of the emulator: vLLM's families and labels, plus DCGM-style GPU gauges.

Each server owns a ``CollectorRegistry`` (no global registry), so several emulators
can live in one test process. Family names, types, label names and histogram buckets
are vLLM 0.32.0's (``tests/engine/fixtures/vllm_reference/metrics_names.txt``).

Units: latencies are *emulated* seconds whatever ``--time-scale`` is, so dashboards
and autoscalers read the numbers a real GPU would give; DCGM utilisation is a
percentage of an emulated window and so is the same at any time scale.
"""

from __future__ import annotations

import hashlib
import os
import socket

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from tierserve.engine.args import EmulatorConfig
from tierserve.engine.perf.cost import kv_cache_tokens, memory_used_bytes
from tierserve.engine.perf.hardware import MIB

CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"

_LATENCY_LONG = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
_TTFT = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
_ITL = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
_TOKENS = (
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
    10000.0,
    20000.0,
)
_ITER = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")

# vLLM 0.32.0's cache_config_info labels, with its values for what the emulator
# does not model (prefix caching is reported on but not emulated).
_CACHE_INFO_DEFAULTS: dict[str, str] = {
    "_block_size_resolved": "True",
    "block_size": "16",
    "cache_dtype": "auto",
    "cache_hit_alignment_tokens": "None",
    "effective_attention_block_size": "16",
    "enable_mamba_shared_prefix_checkpoint": "False",
    "enable_prefix_caching": "True",
    "engine": "0",
    "gpu_memory_utilization": "0.9",
    "hash_block_size": "None",
    "is_attention_free": "False",
    "kv_cache_dtype_skip_layers": "[]",
    "kv_cache_layout": "None",
    "kv_cache_max_concurrency": "1",
    "kv_cache_memory_bytes": "0",
    "kv_cache_size_tokens": "0",
    "kv_offloading_backend": "native",
    "kv_offloading_size": "None",
    "kv_sharing_fast_prefill": "False",
    "mamba_block_size": "None",
    "mamba_cache_dtype": "auto",
    "mamba_cache_mode": "none",
    "mamba_page_size_padded": "None",
    "mamba_ssm_cache_dtype": "auto",
    "num_cpu_blocks": "None",
    "num_gpu_blocks": "0",
    "num_gpu_blocks_override": "None",
    "prefix_cache_retention_interval": "0",
    "prefix_caching_hash_algo": "sha256",
    "prefix_match_unit": "None",
    "replayssm_buffer_len": "16",
    "skip_page_size_padded": "None",
    "sliding_window": "None",
    "swa_bounded_replay": "True",
    "use_kda_recoverssm": "False",
    "use_replayssm": "False",
    "user_specified_block_size": "False",
}


class EngineMetrics:
    """The emulator's metric families, with label values bound once (cheap per token)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        process_collector.ProcessCollector(registry=reg)
        platform_collector.PlatformCollector(registry=reg)
        gc_collector.GCCollector(registry=reg)
        base = ("engine", "model_name")
        lv = {"engine": "0", "model_name": config.model_name}

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, base, registry=reg).labels(**lv)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, base, registry=reg).labels(**lv)

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, base, buckets=buckets, registry=reg).labels(**lv)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        by_reason = Gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason.",
            ("engine", "model_name", "reason"),
            registry=reg,
        )
        self.waiting_capacity = by_reason.labels(reason="capacity", **lv)
        by_reason.labels(reason="deferred", **lv).set(0)
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            ("engine", "finished_reason", "model_name"),
            registry=reg,
        )
        self.success = {
            r: success.labels(engine="0", finished_reason=r, model_name=config.model_name)
            for r in FINISHED_REASONS
        }
        self.req_prompt_tokens = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", _TOKENS
        )
        self.req_generation_tokens = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", _TOKENS
        )
        self.iteration_tokens = hist(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", _ITER
        )
        self.params_max_tokens = hist(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            _TOKENS,
        )
        self.params_n = hist(
            "vllm:request_params_n",
            "Histogram of the n request parameter.",
            (1.0, 2.0, 5.0, 10.0, 20.0),
        )
        self.ttft = hist(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            _TTFT,
        )
        self.itl = hist(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", _ITL
        )
        self.tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            _ITL,
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            _LATENCY_LONG,
        )
        self.queue = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            _LATENCY_LONG,
        )
        self.inference = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            _LATENCY_LONG,
        )
        self.prefill = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            _LATENCY_LONG,
        )
        self.decode = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            _LATENCY_LONG,
        )
        shape = config.shape
        tokens = kv_cache_tokens(shape)
        info = dict(_CACHE_INFO_DEFAULTS)
        info.update(
            block_size=str(shape.block_size),
            effective_attention_block_size=str(shape.block_size),
            engine="0",
            gpu_memory_utilization=str(shape.gpu_memory_utilization),
            kv_cache_size_tokens=str(tokens),
            num_gpu_blocks=str(tokens // shape.block_size),
            kv_cache_memory_bytes=str(tokens * shape.kv_bytes_per_token),
            kv_cache_max_concurrency=str(round(tokens / shape.max_model_len, 5)),
        )
        cache = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            tuple(info),
            registry=reg,
        )
        cache.labels(**info).set(1)
        Info("tierserve_emulator", "The emulated GPU and model profile.", registry=reg).info(
            {
                "gpu": shape.gpu.name,
                "model_profile": shape.profile.name,
                "time_scale": str(config.time_scale),
            }
        )
        self._dcgm(config)

    def _dcgm(self, config: EmulatorConfig) -> None:
        """GPU gauges named and labelled as dcgm-exporter does (pod labels from env)."""
        reg = self.registry
        gpu = config.shape.gpu
        host = socket.gethostname()
        uuid_hex = hashlib.sha1(f"{host}:{config.port}:{gpu.name}".encode()).hexdigest()
        h = uuid_hex
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
            return Gauge(name, doc, tuple(lv), registry=reg).labels(**lv)

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
        used = int(memory_used_bytes(config.shape) // MIB)
        self.fb_used_mib_when_ready = used
        self.fb_free.set(gpu.memory_mib)
        self.fb_used.set(0)

    def set_loaded(self, config: EmulatorConfig) -> None:
        used = self.fb_used_mib_when_ready
        self.fb_used.set(used)
        self.fb_free.set(config.shape.gpu.memory_mib - used)

    def set_busy(self, busy_fraction: float) -> None:
        """Set the DCGM utilisation gauges from the busy fraction of the window (0-1)."""
        pct = round(100.0 * busy_fraction, 1)
        self.gpu_util.set(pct)
        self.process_sm.set(pct)
        # DCGM's PROF fields are ratios (0-1), not percentages.
        self.sm_active.set(round(busy_fraction, 3))

    def render(self) -> bytes:
        return generate_latest(self.registry)
