"""An event-loop lag probe for benchmark runs of ``tierserve gateway``:
``PYTHONPATH=bench/gateway/lagprobe`` on the gateway's command makes each of its
processes run a 10 ms ``call_later`` ticker on its loop and count the replica reads
(``UpstreamConnection.data_received``) between two ticks. A tick runs where the loop runs
timers and task steps; a replica's read runs inside the loop's I/O phase. A late tick
with many reads behind it is an I/O phase that went on while every task step waited (a
stream's end, a new stream's handler). Every 5 s it writes the worst lateness, how many
ticks were over 100 ms and over 500 ms, and the reads during the worst one, to
``/tmp/lagprobe/lag-<pid>.log``."""

import asyncio
import os
import sys
import threading
import time
from typing import Any

os.makedirs("/tmp/lagprobe", exist_ok=True)
_log = open(f"/tmp/lagprobe/lag-{os.getpid()}.log", "w", buffering=1)  # noqa: SIM115
_log.write(" ".join(sys.argv) + "\n")
_stats: dict[str, Any] = {"reads": 0, "worst_s": 0.0, "worst_reads": 0}
_stats.update(over_100=0, over_500=0)
_TICK_S = 0.010


def _ticker(loop: asyncio.AbstractEventLoop) -> None:
    state = {"due": loop.time() + _TICK_S, "reads": 0}

    def tick() -> None:
        late = loop.time() - state["due"]
        reads = _stats["reads"] - state["reads"]
        state["reads"] = _stats["reads"]
        if late > _stats["worst_s"]:
            _stats["worst_s"], _stats["worst_reads"] = late, reads
        if late > 0.1:
            _stats["over_100"] += 1
        if late > 0.5:
            _stats["over_500"] += 1
            _log.write(f"{time.time():.3f} tick {late * 1000:.0f} ms late, {reads} reads\n")
        state["due"] = loop.time() + _TICK_S
        loop.call_later(_TICK_S, tick)

    loop.call_later(_TICK_S, tick)


def _install() -> None:
    import tierserve.gateway.run as run
    from tierserve.gateway.upstream import UpstreamConnection

    received = UpstreamConnection.data_received

    def counted(self: Any, data: bytes) -> None:
        _stats["reads"] += 1
        received(self, data)

    UpstreamConnection.data_received = counted  # type: ignore[method-assign]
    tune = run.tune_gc_for_serving

    def tune_and_tick() -> None:
        tune()
        _ticker(asyncio.get_running_loop())

    run.tune_gc_for_serving = tune_and_tick

    def report() -> None:
        while True:
            time.sleep(5)
            _log.write(
                f"{time.time():.3f} worst {_stats['worst_s'] * 1000:.0f} ms late "
                f"({_stats['worst_reads']} reads), over 100 ms {_stats['over_100']}, "
                f"over 500 ms {_stats['over_500']}, reads {_stats['reads']}\n"
            )

    threading.Thread(target=report, daemon=True).start()


_install()
