"""Cost of one engine step, KV-cache capacity and start-up time (pure arithmetic).

One continuous-batching step runs every scheduled token through the model once.
Its duration is a roofline plus a fixed host overhead::

    step_s = overhead_s + max(bytes_moved / (mem_bw * BW_EFFICIENCY),
                              flops / (fp16_flops * FLOPS_EFFICIENCY))

- bytes moved: all weights once, plus the KV cache every decode token attends to.
- FLOPs: ``2 * params`` per token (the matmuls) plus attention,
  ``4 * layers * q_heads * head_dim`` per (query token, context token) pair.
- overhead: scheduler, sampling and kernel-launch time the GPU spends idle.

Small batches are memory-bound (a 7B fp16 model reads ~15 GB of weights a step,
so a V100 at 900 GB/s cannot do better than ~17 ms a token), large prefills are
compute-bound. Every constant below names its source.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierserve.engine.perf.hardware import MIB, GpuSpec
from tierserve.engine.perf.profiles import ModelProfile

BW_EFFICIENCY = 0.80
"""Fraction of peak memory bandwidth a decode step achieves. Published: Llama-3.1-8B
at batch 1 on an A100-40GB decodes at ~75 tok/s, "roughly 77% of the GPU's
memory-bandwidth ceiling" (johnmusgrave.com, vLLM throughput-latency sweep on A100);
0.80 with the overhead below reproduces both that and H100's 6.5 ms TPOT."""

FLOPS_EFFICIENCY = 0.60
"""Fraction of peak dense FP16 FLOP/s a prefill achieves (model FLOPs utilisation).
Large-GEMM MFU of 50-70 % is the usual range for vLLM prefill; 0.6 is its middle."""

STEP_OVERHEAD_S = 0.0005
"""Host time per step with CUDA graphs (scheduler, input prep, sampling), seconds."""

EAGER_EXTRA_OVERHEAD_S = 0.0015
"""Extra per-step time under ``--enforce-eager`` (one kernel launch per op instead of
one graph replay). vLLM PR #1440 measured Llama-2-7B, 100 output tokens: 1.05 s with
CUDA graphs vs 1.2 s without, i.e. 1.5 ms a step."""

NON_TORCH_RESERVE_BYTES = 512 * MIB
"""Memory vLLM's profiler counts as non-torch (CUDA context, cuBLAS workspace), bytes."""

LOAD_BANDWIDTH_BYTES_S = 1.0e9
"""Default weight-loading bandwidth from the model volume (bytes/s): a shared NAS/CPFS
PV like the seed's ``llm-model`` delivers on the order of 1 GB/s to one pod."""

ENGINE_INIT_S = 20.0
"""Fixed start-up time besides loading weights (imports, profiling run, KV-cache
allocation), seconds. The reference vLLM on CPU took 46-52 s for a 135M model, almost
all of it this part; GPU start-ups of 7B models typically take 30-90 s in total."""

GRAPH_CAPTURE_S = 15.0
"""Extra start-up time to capture CUDA graphs when ``--enforce-eager`` is not given."""


@dataclass(frozen=True)
class EngineShape:
    """What determines the emulated engine's speed and capacity.

    ``dtype_bytes``: 2 for half/bfloat16, 4 for float32. ``gpu_memory_utilization``:
    vLLM's flag (0-1). ``max_model_len``, ``max_num_seqs``, ``max_num_batched_tokens``
    and ``block_size`` are vLLM's flags. ``slow_factor``: fault injection, every step
    takes this many times longer (1 = healthy).
    """

    gpu: GpuSpec
    profile: ModelProfile
    dtype_bytes: int = 2
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 32768
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    enforce_eager: bool = False
    slow_factor: float = 1.0

    @property
    def weight_bytes(self) -> float:
        return self.profile.weight_bytes(self.dtype_bytes)

    @property
    def kv_bytes_per_token(self) -> int:
        return self.profile.kv_bytes_per_token(self.dtype_bytes)

    @property
    def overhead_s(self) -> float:
        """Fixed host time per step (s)."""
        return STEP_OVERHEAD_S + (EAGER_EXTRA_OVERHEAD_S if self.enforce_eager else 0.0)


def activation_bytes(shape: EngineShape) -> float:
    """Peak activation memory of vLLM's profiling run (bytes): one batch of
    ``max_num_batched_tokens`` through the widest layer (gate+up projection and the
    residual stream), plus fp32 logits for ``max_num_seqs`` sampled rows."""
    p = shape.profile
    per_token = (2 * p.intermediate + 4 * p.hidden) * shape.dtype_bytes
    return shape.max_num_batched_tokens * per_token + shape.max_num_seqs * p.vocab * 4


def kv_cache_bytes(shape: EngineShape) -> float:
    """Memory left for the KV cache (bytes), as vLLM computes it:
    ``total * gpu_memory_utilization - weights - activations - non-torch``. May be <= 0."""
    budget = shape.gpu.memory_bytes * shape.gpu_memory_utilization
    return budget - shape.weight_bytes - activation_bytes(shape) - NON_TORCH_RESERVE_BYTES


def kv_cache_blocks(shape: EngineShape) -> int:
    """Number of KV-cache blocks of ``block_size`` tokens (0 when nothing is left)."""
    per_block = shape.block_size * shape.kv_bytes_per_token
    return max(0, int(kv_cache_bytes(shape) // per_block))


def kv_cache_tokens(shape: EngineShape) -> int:
    """KV-cache capacity in tokens."""
    return kv_cache_blocks(shape) * shape.block_size


def memory_used_bytes(shape: EngineShape) -> float:
    """Frame buffer the engine holds once started (bytes): vLLM pre-allocates its whole
    budget, so this is ``total * gpu_memory_utilization`` whatever the load."""
    return shape.gpu.memory_bytes * shape.gpu_memory_utilization


def load_time_s(
    shape: EngineShape, load_bandwidth_bytes_s: float = LOAD_BANDWIDTH_BYTES_S
) -> float:
    """Start-up time (s): weights over the load bandwidth, engine init, graph capture."""
    capture = 0.0 if shape.enforce_eager else GRAPH_CAPTURE_S
    return shape.weight_bytes / load_bandwidth_bytes_s + ENGINE_INIT_S + capture


def step_time_s(
    shape: EngineShape,
    decode_seqs: int,
    decode_context_tokens: int,
    prefill_tokens: int,
    prefill_attention_pairs: float,
) -> float:
    """Duration of one step (s).

    ``decode_seqs``: sequences producing one token each; ``decode_context_tokens``: sum
    of their context lengths (KV read); ``prefill_tokens``: prompt tokens computed this
    step; ``prefill_attention_pairs``: sum over those tokens of the context each attends
    to (``n * start + n * (n + 1) / 2`` for a chunk of n starting at ``start``).
    Returns 0 for an empty step.
    """
    tokens = decode_seqs + prefill_tokens
    if tokens == 0:
        return 0.0
    p = shape.profile
    kv_read = decode_context_tokens * shape.kv_bytes_per_token
    kv_write = tokens * shape.kv_bytes_per_token
    mem_s = (shape.weight_bytes + kv_read + kv_write) / (shape.gpu.mem_bw_bytes_s * BW_EFFICIENCY)
    attn_flops = (
        4.0 * p.layers * p.q_heads * p.head_dim * (decode_context_tokens + prefill_attention_pairs)
    )
    flops = 2.0 * p.params * tokens + attn_flops
    peak = shape.gpu.fp16_flops if shape.dtype_bytes <= 2 else shape.gpu.fp16_flops / 8.0
    compute_s = flops / (peak * FLOPS_EFFICIENCY)
    return (shape.overhead_s + max(mem_s, compute_s)) * shape.slow_factor
