"""``/metrics`` of the emulator: vLLM's families and labels, plus DCGM-style GPU gauges
(``dcgm``).

Each server owns a ``CollectorRegistry`` (no global registry), so several emulators
can live in one test process. Family names, types, label names and histogram buckets
are vLLM 0.32.0's (``tests/engine/fixtures/vllm_reference/metrics_names.txt``).

Units: latencies are *emulated* seconds whatever ``--time-scale`` is, so dashboards
and autoscalers read the numbers a real GPU would give; DCGM utilisation is a
percentage of an emulated window and so is the same at any time scale.
"""

from __future__ import annotations

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
from tierserve.engine.dcgm import DcgmGauges
from tierserve.engine.static_metrics import register_static_families

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
_PREEMPTIONS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")

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
        by_source = Counter(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            ("engine", "model_name", "source"),
            registry=reg,
        )
        # Every prompt token is computed here: no prefix caching, no KV transfer.
        self.prompt_tokens_computed = by_source.labels(source="local_compute", **lv)
        for source in PROMPT_SOURCES[1:]:
            by_source.labels(source=source, **lv)
        self.prefix_cache_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        )
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
        self.req_max_generation_tokens = hist(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            _TOKENS,
        )
        self.req_preemptions = hist(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            _PREEMPTIONS,
        )
        self.req_prefill_computed = hist(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
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
        Info("tierserve_emulator", "The emulated GPU and model profile.", registry=reg).info(
            {
                "gpu": shape.gpu.name,
                "model_profile": shape.profile.name,
                "time_scale": str(config.time_scale),
            }
        )
        register_static_families(reg, config)
        self.dcgm = DcgmGauges(reg, config)

    def render(self) -> bytes:
        return generate_latest(self.registry)
