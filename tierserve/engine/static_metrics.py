"""vLLM's metric families whose values the emulator fixes at start-up.

``vllm:cache_config_info`` from the engine shape (vLLM's defaults for what the emulator
does not model, e.g. prefix caching is reported on but not emulated), and the families
for what it does not model at all, at vLLM's values for that case: awake, no prefix or
multi-modal cache hits, no KV transfer, no queue limits, no MFU estimates (vLLM 0.32
leaves those at 0 unless asked for).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from tierserve.engine.args import EmulatorConfig
from tierserve.engine.perf.cost import kv_cache_tokens

CACHED_SOURCES = ("device", "host", "p2p", "disk", "external_unspecified")
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")
ADMISSION_REASONS = ("max_num_queued_reqs", "max_num_queued_tokens")

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


def register_static_families(reg: CollectorRegistry, config: EmulatorConfig) -> None:
    _cache_config_info(reg, config)
    _unmodelled_families(reg, config.model_name)


def _cache_config_info(reg: CollectorRegistry, config: EmulatorConfig) -> None:
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


def _unmodelled_families(reg: CollectorRegistry, model_name: str) -> None:
    base = ("engine", "model_name")
    lv = {"engine": "0", "model_name": model_name}
    sleep = Gauge(
        "vllm:engine_sleep_state",
        "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
        "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
        (*base, "sleep_state"),
        registry=reg,
    )
    for state in SLEEP_STATES:
        sleep.labels(sleep_state=state, **lv).set(1 if state == "awake" else 0)
    for name, doc in (
        ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
        (
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, "
            "in terms of number of queried tokens.",
        ),
        (
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, "
            "in terms of number of cached tokens.",
        ),
        (
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
        ),
        ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
        ("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."),
        (
            "vllm:estimated_flops_per_gpu",
            "Estimated number of floating point operations per GPU "
            "(for Model Flops Utilization calculations).",
        ),
        (
            "vllm:estimated_read_bytes_per_gpu",
            "Estimated number of bytes read from memory per GPU "
            "(for Model Flops Utilization calculations).",
        ),
        (
            "vllm:estimated_write_bytes_per_gpu",
            "Estimated number of bytes written to memory per GPU "
            "(for Model Flops Utilization calculations).",
        ),
    ):
        Counter(name, doc, base, registry=reg).labels(**lv)
    cached = Counter(
        "vllm:prompt_tokens_cached_by_source",
        "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), "
        "host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
        "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
        "vllm:external_prefix_cache_hits.",
        (*base, "source"),
        registry=reg,
    )
    for source in CACHED_SOURCES:
        cached.labels(source=source, **lv)
    # Admission is counted per model, without the engine label, as vLLM 0.32 has it.
    rejections = Counter(
        "vllm:admission_rejections",
        "Number of admission attempts rejected by a queue limit, by reason.",
        ("model_name", "reason"),
        registry=reg,
    )
    for reason in ADMISSION_REASONS:
        rejections.labels(model_name=model_name, reason=reason)
