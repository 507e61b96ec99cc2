"""The simulator's fast replica model against the step-by-step reference: error and speed.

Runs ``StepReplica`` (``BatchScheduler`` one step at a time, the emulator's own model) and
``FastReplica`` (closed-form decode stretches) side by side on the same workloads, driven
the way the simulator drives them (advance to the earlier of the next arrival and
``next_event_s()``; closed-loop clients resubmit at each completion), and prints per
workload the TTFT p50/p90/p99, TPOT p50/p90 and E2E p50/p99 of each, their relative
error, the largest per-request error, and the wall time of each with the speed ratio.
``--ops`` also counts executed Python bytecodes (inside tierserve) on the first 300
requests of each workload: a measure of work that does not depend on the machine's load.

Not a test: ``python bench/sim/engine_error.py [--only NAME] [--ops] [--repeat 3]``; wall
times are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any

from tierserve.engine.perf.cost import EngineShape
from tierserve.sim.engine import (
    Completion,
    FastReplica,
    ReplicaModel,
    StepReplica,
    engine_shape_for,
)
from tierserve.sim.report import nearest_rank

Arrivals = list[tuple[float, int, int]]
Closed = tuple[int, int, int, int]  # clients, requests each, prompt, output


@dataclass(frozen=True)
class Workload:
    name: str
    shape: EngineShape
    arrivals: Arrivals
    closed: Closed | None = None


def poisson(
    rate: float, n: int, prompt: int | tuple[int, int], output: int | tuple[int, int], seed: int
) -> Arrivals:
    rng = random.Random(seed)

    def draw(size: int | tuple[int, int]) -> int:
        return size if isinstance(size, int) else rng.randint(*size)

    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append((t, draw(prompt), draw(output)))
    return out


def workloads() -> list[Workload]:
    v100 = engine_shape_for("V100")  # deepseek-r1-distill-qwen-7b, the emulator's defaults
    tight = engine_shape_for("V100", gpu_memory_utilization=0.55)  # ~45k KV tokens
    h100 = engine_shape_for("H100", "llama-3.1-8b")
    mix = ((10, 2000), (1, 512))
    return [
        Workload("closed c=1, 11 + 256", v100, [], (1, 20, 11, 256)),
        Workload("closed c=5, 11 + 256", v100, [], (5, 10, 11, 256)),
        Workload("closed c=32, 1500 + 256", v100, [], (32, 4, 1500, 256)),
        Workload("poisson 0.5/s, mixed", v100, poisson(0.5, 200, *mix, seed=1)),
        Workload("poisson 6/s, mixed", v100, poisson(6.0, 1500, *mix, seed=2)),
        Workload("poisson 3/s, 1500 + 256", v100, poisson(3.0, 600, 1500, 256, seed=3)),
        Workload("batch ~30: 5/s, 100 + 256", v100, poisson(5.0, 3000, 100, 256, seed=4)),
        Workload("batch ~65: 10/s, 100 + 256", v100, poisson(10.0, 3000, 100, 256, seed=5)),
        Workload(
            "kv pressure (0.55 util)", tight, poisson(3.0, 400, (500, 3000), (50, 700), seed=6)
        ),
        Workload("H100 llama 100/s, 20 + 300", h100, poisson(100.0, 2000, 20, 300, seed=7)),
    ]


def drive(model: ReplicaModel, w: Workload, limit: int | None = None) -> list[Completion]:
    """The simulator's loop: advance to the earlier of the next arrival and next event."""
    pending = deque(w.arrivals[:limit] if limit else w.arrivals)
    out: list[Completion] = []
    rid = 0
    left: dict[int, int] = {}
    owner: dict[int, int] = {}
    if w.closed:
        clients, each, prompt, output = w.closed
        if limit:
            each = max(1, min(each, limit // clients))
        for client in range(clients):
            model.submit(rid, 0.0, prompt, output)
            owner[rid], left[client] = client, each - 1
            rid += 1
    while True:
        e = model.next_event_s()
        a = pending[0][0] if pending else math.inf
        if e is None and a == math.inf:
            return sorted(out, key=lambda c: c.request_id)
        t = a if e is None else min(e, a)
        done = model.advance(t)
        model.take_first_tokens()
        out += done
        for c in done:
            who = owner.get(c.request_id)
            if who is not None and left[who] > 0:
                left[who] -= 1
                model.submit(rid, c.end_s, c.prompt_tokens, c.output_tokens)
                owner[rid] = who
                rid += 1
        while pending and pending[0][0] <= t:
            arrival, prompt, output = pending.popleft()
            model.submit(rid, arrival, prompt, output)
            rid += 1


def count_ops(fn: Callable[[], Any]) -> int:
    """Python bytecodes executed in tierserve's code while ``fn`` runs."""
    n = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal n
        if "tierserve" not in frame.f_code.co_filename:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            n += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return n


METRICS: list[tuple[str, str, tuple[int, ...]]] = [
    ("TTFT", "ttft_s", (50, 90, 99)),
    ("TPOT", "tpot_s", (50, 90)),
    ("E2E", "e2e_s", (50, 99)),
]


def rel(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run the workloads whose name contains this")
    ap.add_argument("--ops", action="store_true", help="also count bytecodes (300 requests)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per model; the fastest counts")
    args = ap.parse_args()
    summary: list[tuple[str, int, float, float, float, float, float, float | None]] = []
    for w in workloads():
        if args.only and args.only not in w.name:
            continue
        runs: dict[str, tuple[list[Completion], float, ReplicaModel]] = {}
        for cls in (StepReplica, FastReplica):
            best = math.inf
            for _ in range(args.repeat):  # the best of a few: the machine may be busy
                model = cls(w.shape)
                t0 = time.perf_counter()
                done = drive(model, w)
                best = min(best, time.perf_counter() - t0)
            runs[cls.__name__] = (done, best, model)
        ref, ref_wall, ref_model = runs["StepReplica"]
        fast, fast_wall, _ = runs["FastReplica"]
        assert [c.request_id for c in ref] == [c.request_id for c in fast]
        batch = ref_model.generated_tokens / max(1, ref_model.steps)
        shape = w.shape
        print(
            f"\n== {w.name}: {shape.gpu.name}, {shape.profile.name}; {len(ref)} requests, "
            f"{ref_model.steps} steps, {batch:.1f} tokens a step, "
            f"{ref_model.preemptions} preemptions"
        )
        print(f"   {'metric':10} {'step (s)':>12} {'fast (s)':>12} {'rel err':>9}")
        worst = 0.0
        for label, attr, pcts in METRICS:
            a = sorted(getattr(c, attr) for c in ref)
            b = sorted(getattr(c, attr) for c in fast)
            for p in pcts:
                x, y = nearest_rank(a, p) or 0.0, nearest_rank(b, p) or 0.0
                worst = max(worst, rel(x, y))
                print(f"   {label + ' p' + str(p):10} {x:12.6f} {y:12.6f} {rel(x, y):9.1e}")
        per_request = max(
            rel(getattr(r, attr), getattr(f, attr))
            for r, f in zip(ref, fast, strict=True)
            for _, attr, _ in METRICS
        )
        speed = ref_wall / fast_wall if fast_wall > 0 else math.inf
        print(f"   largest per-request relative error: {per_request:.1e}")
        print(
            f"   wall: step {ref_wall:.3f} s, fast {fast_wall:.3f} s ({speed:.1f}x); fast "
            f"{1e6 * fast_wall / len(fast):.1f} us a request"
        )
        ops_ratio: float | None = None
        if args.ops:
            ops = {
                cls.__name__: count_ops(partial(drive, cls(w.shape), w, 300))
                for cls in (StepReplica, FastReplica)
            }
            ops_ratio = ops["StepReplica"] / ops["FastReplica"]
            print(
                f"   bytecodes (first 300 requests): step {ops['StepReplica']:,}, "
                f"fast {ops['FastReplica']:,} ({ops_ratio:.1f}x)"
            )
        summary.append(
            (w.name, len(ref), batch, worst, per_request, ref_wall, fast_wall, ops_ratio)
        )
    print(
        f"\n{'workload':30} {'reqs':>5} {'tok/step':>8} {'pct err':>8} {'req err':>8} "
        f"{'step s':>7} {'fast s':>7} {'speed':>6}" + (f" {'ops':>6}" if args.ops else "")
    )
    for name, n, batch, worst, per_request, sw, fw, ops_ratio in summary:
        line = (
            f"{name:30} {n:5d} {batch:8.1f} {worst:8.1e} {per_request:8.1e} "
            f"{sw:7.3f} {fw:7.3f} {sw / fw:5.1f}x"
        )
        print(line + (f" {ops_ratio:5.1f}x" if ops_ratio is not None else ""))


if __name__ == "__main__":
    main()
