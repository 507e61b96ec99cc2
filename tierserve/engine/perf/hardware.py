"""Emulated GPUs: the few datasheet numbers the performance model needs.

Every number is the vendor's datasheet value for the SXM/PCIe part named; the
memory total is what ``nvidia-smi`` reports for the card (MiB), since that is
what DCGM's ``DCGM_FI_DEV_FB_*`` gauges and vLLM's ``--gpu-memory-utilization``
are computed from. Dense (non-sparse) tensor-core FP16 rates are used:
decode is memory-bound, prefill is compute-bound, nothing else matters here.

Sources:
- V100-SXM2-32GB: 900 GB/s HBM2, 125 TFLOPS FP16 tensor (NVIDIA V100 datasheet).
- A10-24GB: 600 GB/s GDDR6, 125 TFLOPS FP16 tensor dense (NVIDIA A10 datasheet;
  250 is the sparse figure).
- A100-SXM4-40GB / 80GB: 1,555 / 2,039 GB/s, 312 TFLOPS FP16 dense (A100 datasheet).
- H100-SXM5-80GB: 3,350 GB/s HBM3, 989 TFLOPS FP16 dense (H100 datasheet; 1,979 sparse).
- H200-SXM-141GB: 4,800 GB/s HBM3e, 989 TFLOPS FP16 dense (H200 datasheet).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model as the emulator sees it.

    ``memory_mib``: total frame buffer as ``nvidia-smi`` reports it.
    ``mem_bw_bytes_s``: peak memory bandwidth (bytes/s).
    ``fp16_flops``: peak dense FP16 tensor FLOP/s.
    ``bf16``: whether the card has bfloat16 (compute capability >= 8.0);
    vLLM refuses ``--dtype bfloat16`` on a V100.
    """

    name: str
    product_name: str
    memory_mib: int
    mem_bw_bytes_s: float
    fp16_flops: float
    bf16: bool

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB


GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec("V100-32G", "Tesla V100-SXM2-32GB", 32_510, 900e9, 125e12, bf16=False),
        GpuSpec("A10-24G", "NVIDIA A10", 23_028, 600e9, 125e12, bf16=True),
        GpuSpec("A100-40G", "NVIDIA A100-SXM4-40GB", 40_960, 1_555e9, 312e12, bf16=True),
        GpuSpec("A100-80G", "NVIDIA A100-SXM4-80GB", 81_920, 2_039e9, 312e12, bf16=True),
        GpuSpec("H100-80G", "NVIDIA H100 80GB HBM3", 81_559, 3_350e9, 989e12, bf16=True),
        GpuSpec("H200-141G", "NVIDIA H200", 143_771, 4_800e9, 989e12, bf16=True),
    )
}
"""The registry of emulated GPUs, by the name ``--gpu`` takes."""


def gpu_spec(name: str) -> GpuSpec:
    """Look a GPU up by name, case-insensitively. Raises ``KeyError`` naming the choices."""
    for key, spec in GPUS.items():
        if key.lower() == name.lower():
            return spec
    raise KeyError(f"unknown GPU {name!r}; expected one of {', '.join(GPUS)}")
