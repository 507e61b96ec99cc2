"""Emulated timing vs the performance model, at 1 / 8 / 64 / 500 concurrent streams.

Runs the emulator as a child process on the wall clock (``--time-scale 1``) and, for
each concurrency, starts that many chat streams together (11 prompt tokens, N output
tokens each), measures TTFT and inter-token latency at the client, and compares them
with ``simulate_arrivals`` (the model's prediction for requests sent at those times). Also reports
the emulator's CPU per streamed token. Not a test: run it by hand.

    .venv/bin/python bench/emulator/timing.py [--gpu V100-32G] [--tokens 64] [--levels 1,8,64,500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import EmulatorProcess, run_wave

from tierserve.engine.args import parse_args
from tierserve.engine.perf import simulate_arrivals
from tierserve.engine.protocol import parse_chat


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", default="V100-32G")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--levels", default="1,8,64,500")
    args = ap.parse_args()
    emu_flags = ["--gpu", args.gpu, "--time-scale", "1", "--max-num-seqs", "512"]
    emu = EmulatorProcess(*emu_flags)
    cfg = parse_args(
        [
            "/model/DeepSeek-R1-Distill-Qwen-7B",
            "--enforce-eager",
            "--gpu-memory-utilization",
            "0.95",
            *emu_flags,
        ]
    )
    prompt = parse_chat(
        {"messages": [{"role": "user", "content": "Say this is a test!"}]},
        ("x",),
        32768,
        cfg.shape.profile,
    ).prompt_tokens
    print(
        f"GPU {args.gpu}, profile {cfg.shape.profile.name}, prompt {prompt} tokens, "
        f"{args.tokens} output tokens per stream"
    )
    print(
        f"{'conc':>5} {'TTFT pred':>10} {'TTFT meas':>10} {'err':>7} "
        f"{'ITL pred':>9} {'ITL meas':>9} {'err':>7} {'ITL p99':>8} {'CPU/token':>10}"
    )
    try:
        await emu.wait_ready()
        await run_wave(emu.url, 2, 4)  # warm up connections and code paths
        for c in (int(x) for x in args.levels.split(",")):
            cpu0 = emu.cpu_s()
            results = await run_wave(emu.url, c, args.tokens)
            # The model's prediction for requests sent at the times the client sent them
            # (a wave of 500 takes the client tens of ms to send).
            t0 = min(r.sent_s for r in results)
            pred = simulate_arrivals(
                cfg.shape, [r.sent_s - t0 for r in results], prompt, args.tokens
            )
            cpu = emu.cpu_s() - cpu0
            tokens = sum(len(r.token_times_s) for r in results)
            assert tokens == c * args.tokens, (tokens, c * args.tokens)
            ttft_m = statistics.fmean(r.ttft_s for r in results)
            itl_m = statistics.fmean(r.itl_s for r in results)
            gaps = sorted(
                b - a
                for r in results
                for a, b in zip(r.token_times_s, r.token_times_s[1:], strict=False)
            )
            p99 = gaps[int(0.99 * (len(gaps) - 1))]
            ttft_p, itl_p = pred.mean_ttft_s(), pred.mean_itl_s()
            print(
                f"{c:>5} {ttft_p * 1e3:>8.1f}ms {ttft_m * 1e3:>8.1f}ms "
                f"{(ttft_m / ttft_p - 1) * 100:>6.1f}% {itl_p * 1e3:>7.2f}ms {itl_m * 1e3:>7.2f}ms "
                f"{(itl_m / itl_p - 1) * 100:>6.1f}% {p99 * 1e3:>6.1f}ms "
                f"{cpu / tokens * 1e6:>8.1f}us",
                flush=True,
            )
    finally:
        emu.stop()


if __name__ == "__main__":
    asyncio.run(main())
