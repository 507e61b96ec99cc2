"""A stream-start probe for benchmark runs of ``tierserve gateway``:
``PYTHONPATH=bench/gateway/startprobe`` on the gateway's command makes each of its
processes time, per request on the raw path, where the wait before its first chunk
went: accept to the handler's attempt (aiohttp's connection, request and handler
task), the attempt to the replica's first payload (``RawClient._send``: connect or
pooled connection, request, the replica's answer), and that to the client's head and
first chunk written (``start_raw_chunked_body``). Every 5 s it writes each one's
p50 / p99 / max in ms to ``/tmp/startprobe/start-<pid>.log``, and every second the
connections accepted in it (the calls of the listener's protocol factory, one per
``accept``) and in how many bursts (runs of accepts less than 1 ms apart)."""

import os
import sys
import threading
import time
from typing import Any

os.makedirs("/tmp/startprobe", exist_ok=True)
_log = open(f"/tmp/startprobe/start-{os.getpid()}.log", "w", buffering=1)  # noqa: SIM115
_log.write(" ".join(sys.argv) + "\n")
_accepted: dict[int, float] = {}
_spans: dict[str, list[float]] = {"accept-to-attempt": [], "send": [], "to-first-chunk": []}


def _install() -> None:
    import tierserve.gateway.rawpath as rawpath
    from tierserve.gateway.connection import ClientConnection

    made = ClientConnection.connection_made

    def timed_made(self: Any, transport: Any) -> None:
        _accepted[id(transport)] = time.monotonic()
        made(self, transport)

    ClientConnection.connection_made = timed_made  # type: ignore[method-assign]
    import tierserve.gateway.run as gwrun

    factory_of = gwrun.connection_factory
    accepts = {"n": 0, "bursts": 0, "last": 0.0}

    def counted_factory_of(*args: Any, **kwargs: Any) -> Any:
        factory = factory_of(*args, **kwargs)

        def counted() -> Any:
            now = time.monotonic()
            accepts["n"] += 1
            if now - accepts["last"] > 0.001:
                accepts["bursts"] += 1
            accepts["last"] = now
            return factory()

        return counted

    gwrun.connection_factory = counted_factory_of

    def accepts_each_second() -> None:
        while True:
            time.sleep(1)
            if accepts["n"]:
                _log.write(f"{time.time():.3f} accepted {accepts['n']} in {accepts['bursts']}\n")
            accepts["n"] = accepts["bursts"] = 0

    threading.Thread(target=accepts_each_second, daemon=True).start()
    attempt, send = rawpath.RawClient.attempt, rawpath.RawClient._send
    start = rawpath.start_raw_chunked_body

    async def timed_attempt(self: Any, request: Any, *args: Any) -> Any:
        began = _accepted.pop(id(request.transport), None)
        if began is not None:
            _spans["accept-to-attempt"].append(time.monotonic() - began)
        return await attempt(self, request, *args)

    async def timed_send(self: Any, *args: Any) -> Any:
        t = time.monotonic()
        try:
            return await send(self, *args)
        finally:
            _spans["send"].append(time.monotonic() - t)

    async def timed_start(*args: Any) -> Any:
        t = time.monotonic()
        try:
            return await start(*args)
        finally:
            _spans["to-first-chunk"].append(time.monotonic() - t)

    rawpath.RawClient.attempt = timed_attempt  # type: ignore[method-assign]
    rawpath.RawClient._send = timed_send  # type: ignore[method-assign]
    rawpath.start_raw_chunked_body = timed_start

    def report() -> None:
        while True:
            time.sleep(5)
            parts = []
            for name, values in _spans.items():
                v = sorted(values)
                if v:
                    q = [v[min(len(v) - 1, int(p * len(v)))] * 1000 for p in (0.5, 0.99)]
                    parts.append(f"{name} n={len(v)} {q[0]:.0f} / {q[1]:.0f} / {v[-1] * 1000:.0f}")
            _log.write(f"{time.time():.3f} " + "; ".join(parts) + "\n")

    threading.Thread(target=report, daemon=True).start()


_install()
