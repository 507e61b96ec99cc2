"""The seed's load on the 7B profile on a V100-32G: emulated throughput vs the model.

``hey -z 5m -c 5`` with the seed's body (11 prompt tokens, max_tokens 512, every
response ends by length). Runs ``--rounds`` rounds of 5 concurrent requests at
``--time-scale`` (0.2 by default: 5x faster than real time) and converts the measured
throughput back to emulated seconds. Not a test: run it by hand.

    .venv/bin/python bench/emulator/seed_throughput.py [--rounds 2] [--time-scale 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import EmulatorProcess, run_wave

from tierserve.engine.args import parse_args
from tierserve.engine.perf import simulate_closed_loop


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--time-scale", type=float, default=0.2)
    args = ap.parse_args()
    flags = ["--gpu", "V100-32G", "--time-scale", str(args.time_scale)]
    cfg = parse_args(
        [
            "/model/DeepSeek-R1-Distill-Qwen-7B",
            "--enforce-eager",
            "--gpu-memory-utilization",
            "0.95",
            *flags,
        ]
    )
    pred = simulate_closed_loop(cfg.shape, 5, 11, 512, requests_per_client=args.rounds)
    emu = EmulatorProcess(*flags)
    try:
        await emu.wait_ready()
        t0 = time.monotonic()
        tokens = 0
        for _ in range(args.rounds):
            results = await run_wave(emu.url, 5, 512)
            tokens += sum(len(r.token_times_s) for r in results)
        wall = time.monotonic() - t0
    finally:
        emu.stop()
    emulated = wall / args.time_scale
    measured = tokens / emulated
    print(
        "seed load: V100-32G, deepseek-r1-distill-qwen-7b, --enforce-eager, 5 concurrent, "
        "11 prompt + 512 output tokens"
    )
    print(
        f"  predicted: {pred.output_tokens_per_s:7.1f} output tokens/s "
        f"({pred.output_tokens_per_s / 5:.1f} per stream, ITL {pred.mean_itl_s() * 1e3:.2f} ms)"
    )
    print(
        f"  emulated:  {measured:7.1f} output tokens/s over {tokens} tokens "
        f"({emulated:.1f} emulated s); "
        f"error {(measured / pred.output_tokens_per_s - 1) * 100:+.1f}%"
    )


if __name__ == "__main__":
    asyncio.run(main())
