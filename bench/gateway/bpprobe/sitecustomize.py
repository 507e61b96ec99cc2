"""A backpressure probe for benchmark runs of ``tierserve gateway``:
``PYTHONPATH=bench/gateway/bpprobe`` on the gateway's command makes each of its processes
count the times it paused reading a replica because a client's write buffer was over
its high-water mark (``UpstreamConnection.need_drain``), log each pause over 300 ms, and
every 5 s the count and the longest pause, to ``/tmp/bpprobe/bp-<pid>.log``."""

import os
import sys
import threading
import time
from typing import Any

os.makedirs("/tmp/bpprobe", exist_ok=True)
_log = open(f"/tmp/bpprobe/bp-{os.getpid()}.log", "w", buffering=1)  # noqa: SIM115
_log.write(" ".join(sys.argv) + "\n")
_stats = {"pauses": 0, "longest_s": 0.0}


def _install() -> None:
    from tierserve.gateway.upstream import UpstreamConnection

    flush, resume = UpstreamConnection._flush, UpstreamConnection.resume

    def counted_flush(self: Any) -> None:
        was = self.need_drain
        flush(self)
        if self.need_drain and not was:
            self._probe_paused = time.monotonic()
            _stats["pauses"] += 1

    def timed_resume(self: Any) -> None:
        paused = getattr(self, "_probe_paused", None)
        resume(self)
        if paused is not None:
            took = time.monotonic() - paused
            self._probe_paused = None
            _stats["longest_s"] = max(_stats["longest_s"], took)
            if took > 0.3:
                _log.write(f"{time.time():.3f} paused {took * 1000:.0f} ms\n")

    UpstreamConnection._flush = counted_flush  # type: ignore[method-assign]
    UpstreamConnection.resume = timed_resume  # type: ignore[method-assign]

    def report() -> None:
        while True:
            time.sleep(5)
            _log.write(
                f"{time.time():.3f} pauses {_stats['pauses']} "
                f"longest {_stats['longest_s'] * 1000:.0f} ms\n"
            )

    threading.Thread(target=report, daemon=True).start()


_install()
