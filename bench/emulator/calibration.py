"""The calibration table of docs/engine.md: the model's predictions for published runs.

Pure: runs the performance model (no emulator process). Each row names its source.

    .venv/bin/python bench/emulator/calibration.py
"""

from __future__ import annotations

from tierserve.engine.perf import EngineShape, gpu_spec, simulate_closed_loop
from tierserve.engine.perf.profiles import PROFILES

# (label, gpu, profile, concurrency, prompt, output, published, metric, source)
ROWS = [
    (
        "A100-40G Llama-3.1-8B c=1",
        "A100-40G",
        "llama-3.1-8b",
        1,
        1024,
        128,
        75.0,
        "tok/s per stream",
        "johnmusgrave.com vLLM sweep (vLLM 0.23, BF16): ~75 tok/s at C=1",
    ),
    (
        "A100-40G Llama-3.1-8B c=8",
        "A100-40G",
        "llama-3.1-8b",
        8,
        1024,
        128,
        6.6 * 75.0,
        "tok/s total",
        "same source: 6.6x the C=1 throughput at C=8 (~495 tok/s)",
    ),
    (
        "H100-80G Llama-3.1-8B c=1",
        "H100-80G",
        "llama-3.1-8b",
        1,
        128,
        128,
        6.48,
        "TPOT ms",
        "yobitelcomm InferenceBench concurrency sweep (vLLM 0.21, fp16): TPOT p50 6.48 ms",
    ),
    (
        "H100-80G Llama-3.1-8B c=4",
        "H100-80G",
        "llama-3.1-8b",
        4,
        128,
        128,
        6.59,
        "TPOT ms",
        "same source: TPOT p50 6.59 ms at conc 4",
    ),
    (
        "H100-80G Llama-3.1-8B c=16",
        "H100-80G",
        "llama-3.1-8b",
        16,
        128,
        128,
        10.94,
        "TPOT ms",
        "same source: TPOT p50 10.94 ms at conc 16",
    ),
]


def main() -> None:
    print(f"{'case':<30} {'metric':<17} {'published':>10} {'model':>8} {'error':>7}")
    for label, gpu, prof, c, pin, pout, published, metric, _src in ROWS:
        shape = EngineShape(gpu_spec(gpu), PROFILES[prof])
        pred = simulate_closed_loop(shape, c, pin, pout, requests_per_client=10)
        if metric == "TPOT ms":
            model = pred.mean_itl_s() * 1e3
        elif metric == "tok/s per stream":
            model = 1.0 / pred.mean_itl_s()
        else:
            model = pred.output_tokens_per_s
        print(
            f"{label:<30} {metric:<17} {published:>10.2f} {model:>8.2f} "
            f"{(model / published - 1) * 100:>+6.1f}%"
        )
    for _label, *_rest, src in ROWS:
        print(f"  - {_label}: {src}")


if __name__ == "__main__":
    main()
