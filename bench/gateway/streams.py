"""What LLM traffic costs a proxy: many long, paced SSE streams at once, through the
gateway and through nginx (1 worker), side by side with the upstream direct.

    .venv/bin/python bench/gateway/streams.py [--streams 500,2000] [--chunks 512]
        [--interval-ms 25] [--ramp-s 2] [--workers 1]

For each concurrency, fresh processes: a pacing fake upstream (one SSE chunk per
``--interval-ms`` per stream, ``--chunks`` chunks, each stamped with the monotonic time
it was written; streams are spread over the interval so writes are even), nginx, and
``tierserve gateway``. A client process opens every stream within ``--ramp-s`` and
reads them to the end. Per target it reports:

- CPU seconds the proxy's processes used per 1 M relayed chunks (and nginx's);
- each chunk's delay, upstream write to client read, p50/p99, and the delay the proxy
  adds over the direct run's at the same percentile;
- the gaps between a stream's chunks at the client (p50, p99, the worst: a stall);
- memory per open stream: the proxy's resident memory with every stream open, less
  before the first one, over the streams.

``--workers N``: N nginx worker processes and ``tierserve gateway --workers N`` (each
process holds two sockets per stream, so 10,000 streams need two processes under a
20,000-file limit). Everything (upstream, client, proxy) shares this machine's cores,
so the figures show what one machine does at each concurrency, not a proxy alone. Subcommands
``upstream PORT CHUNKS INTERVAL_MS`` and ``client PORT N RAMP_S`` are the two helpers.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import HOST, NGINX_CONF, cpu_s, free_port, listeners, started, tierserve_cmd

HERE = Path(__file__).resolve().parent
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
REQUEST_BODY = json.dumps(
    {"model": "deepseek-r1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()
_CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_STAMP = re.compile(rb'"t":([0-9.]+)')
_SEQ = re.compile(rb'"n":(\d+)')
TCP_COUNTERS = (
    "TcpExt:ListenOverflows",
    "TcpExt:TCPSynRetrans",
    "Tcp:RetransSegs",
    "TcpExt:TCPTimeouts",
    "TcpExt:TCPLossProbes",
    "TcpExt:TCPToZeroWindowAdv",
    "TcpExt:PruneCalled",
    "TcpExt:TCPRcvQDrop",
    "TcpExt:TCPBacklogDrop",
    "TcpExt:TCPMemoryPressures",
)
"""The kernel's TCP counters read around each run (/proc/net/netstat, /proc/net/snmp):
dropped SYNs, retransmissions, zero windows, prunes and drops under memory pressure --
what a stall between two chunks could be on loopback. They count the whole network
namespace, so other processes' traffic adds to them."""


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


# ------------------------------------------------------------------ pacing upstream


class _Pacer:
    """Every millisecond, writes the next chunk of the streams whose turn it is: stream
    ``i`` is in slot ``i % interval_ms``, so each stream gets a chunk per interval and
    the writes spread evenly over it."""

    def __init__(self, chunks: int, interval_ms: int) -> None:
        self.chunks = chunks
        self.interval_ms = interval_ms
        self.slots: list[list[Paced]] = [[] for _ in range(interval_ms)]
        self.next_slot = 0

    def add(self, stream: Paced) -> None:
        self.slots[self.next_slot % self.interval_ms].append(stream)
        self.next_slot += 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        start = loop.time()
        while True:
            slot = self.slots[tick % self.interval_ms]
            if slot:
                now = time.monotonic()
                keep = []
                for s in slot:
                    if s.tick(now):
                        keep.append(s)
                slot[:] = keep
            tick += 1
            await asyncio.sleep(max(0.0, start + tick / 1000 - loop.time()))


class Paced(asyncio.Protocol):
    pacer: _Pacer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.sent = 0
        self.active = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        m = _CL.search(self.buf, 0, end + 2)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buf) < total:
            return
        self.buf = self.buf[total:]
        self.t.write(SSE_HEAD)
        self.sent = 0
        if not self.active:
            self.active = True
            self.pacer.add(self)

    def tick(self, now: float) -> bool:
        """Write the next chunk; False once the stream ended (or the client left)."""
        if self.t.is_closing():
            self.active = False
            return False
        if self.sent < self.pacer.chunks:
            event = (
                b'data: {"object":"chat.completion.chunk","choices":[{"index":0,'
                b'"delta":{"content":" tok"}}],"n":%d,"t":%.6f}\n\n' % (self.sent, now)
            )
            self.t.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.sent += 1
            return True
        self.t.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        self.active = False
        return False


async def _upstream(port: int, chunks: int, interval_ms: int) -> None:
    pacer = _Pacer(chunks, interval_ms)
    Paced.pacer = pacer
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Paced, "127.0.0.1", port, backlog=8192)
    async with server:
        await pacer.run()


# ------------------------------------------------------------------ client


class _Reader(asyncio.Protocol):
    """One stream: sends the request, stamps every chunk's delay and the gaps."""

    def __init__(self, stats: _ClientStats, request: bytes) -> None:
        self.stats = stats
        self.request = request
        self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.opened = 0.0
        self.last_stamp = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.opened = time.monotonic()
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.t.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        data = self.tail + data
        cut = data.rfind(b"\n\n")
        self.tail = data[cut + 2 :] if cut >= 0 else data
        body = data[: cut + 2] if cut >= 0 else b""
        stamps = _STAMP.findall(body)
        st = self.stats
        if stamps:
            if self.last:
                gap = now - self.last
                st.gaps.append(gap)
                if gap > st.worst_gap:
                    # Where the worst gap was spent: the upstream's writes of the two
                    # chunks either side of it, and the delay of the one after it.
                    st.worst_gap, st.worst_gap_end = gap, now
                    first = float(stamps[0])
                    st.worst_gap_upstream = first - self.last_stamp
                    st.worst_gap_delay = now - first
                    seq = _SEQ.search(body)
                    st.worst_gap_seq = int(seq.group(1)) if seq else -1
            else:
                st.first_chunk.append(now - self.opened)
            self.last = now
            self.last_stamp = float(stamps[-1])
            for s in stamps:
                st.delays.append(now - float(s))
            st.chunks += len(stamps)
        if b"data: [DONE]" in body:
            if stamps:
                st.end_delays.append(now - float(stamps[-1]))
            if not self.done.done():
                st.completed += 1
                self.done.set_result(None)
                self.t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.stats.broken += 1
            self.done.set_result(None)


class _ClientStats:
    def __init__(self) -> None:
        self.delays = array.array("d")
        self.gaps = array.array("d")
        self.chunks = 0
        self.completed = 0
        self.broken = 0
        self.open = 0
        self.end_delays = array.array("d")
        """The delay of a stream's last chunk when it came in the read that ended it."""
        self.first_chunk = array.array("d")
        """Connect to the first chunk, per stream (a dropped SYN shows here, as 1 s)."""
        self.worst_gap = 0.0
        self.worst_gap_end = 0.0
        """The worst gap and when it ended (monotonic s): during the opening ramp or not."""
        self.worst_gap_upstream = 0.0
        self.worst_gap_delay = 0.0
        self.worst_gap_seq = -1


def spread(name: str, values: list[float], to_ms: float = 1000.0) -> dict[str, float]:
    """``name``'s p50, p99 and max in ms (0 when empty) of sorted ``values``, each
    ``to_ms`` ms."""

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * to_ms if values else 0.0

    return {f"{name}_p50_ms": q(0.50), f"{name}_p99_ms": q(0.99), f"{name}_max_ms": q(1.0)}


async def _client(port: int, n: int, ramp_s: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stats = _ClientStats()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(REQUEST_BODY)}\r\n\r\n"
    ).encode() + REQUEST_BODY
    readers: list[_Reader] = []
    t0 = loop.time()
    t0_mono = time.monotonic()  # the readers' clock
    for i in range(n):
        await asyncio.sleep(max(0.0, t0 + ramp_s * i / n - loop.time()))
        _, reader = await loop.create_connection(lambda: _Reader(stats, request), "127.0.0.1", port)
        readers.append(reader)
    ramp_end = time.monotonic()
    print("all-open", flush=True)  # the driver reads memory now
    await asyncio.gather(*(r.done for r in readers))
    gaps, ends = sorted(stats.gaps), sorted(stats.end_delays)
    return {
        "chunks": stats.chunks,
        "completed": stats.completed,
        "broken": stats.broken,
        **spread("delay", sorted(stats.delays)),
        "end_delay_n": len(ends),
        **spread("end_delay", ends),
        **spread("first_chunk", sorted(stats.first_chunk)),
        **spread("gap", gaps),
        "gap_max_ended_s": stats.worst_gap_end - t0_mono if gaps else 0.0,
        "gap_max_upstream_ms": stats.worst_gap_upstream * 1000,
        "gap_max_next_delay_ms": stats.worst_gap_delay * 1000,
        "gap_max_seq": stats.worst_gap_seq,
        "ramp_ended_s": ramp_end - t0_mono,
        "wall_s": loop.time() - t0,
    }


# ------------------------------------------------------------------ driver


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
            total += int(m.group(1)) if m else 0
    return total


def tcp_counters() -> dict[str, int]:
    """``TCP_COUNTERS`` now (absent ones as 0: kernels differ)."""
    values: dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with contextlib.suppress(OSError):
            lines = Path(path).read_text().splitlines()
            for names, nums in zip(lines[::2], lines[1::2], strict=False):
                keys, vals = names.split(), nums.split()
                for k, v in zip(keys[1:], vals[1:], strict=False):
                    with contextlib.suppress(ValueError):
                        values[keys[0] + k] = int(v)
    return {k: values.get(k, 0) for k in TCP_COUNTERS}


def schedstat(pids: list[int]) -> tuple[float, float]:
    """Seconds ``pids``' threads ran, and waited on a run queue (runnable, not running:
    woken and not yet on a CPU, or preempted), from ``/proc/<pid>/task/*/schedstat``."""
    ran = waited = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError):
                fields = stat.read_text().split()
                ran, waited = ran + int(fields[0]), waited + int(fields[1])
    return ran / 1e9, waited / 1e9


def sched_delays(data: Path, pids: list[int]) -> dict[str, float]:
    """The scheduling delays of ``pids``' threads in a ``perf sched record`` file: each
    time one was woken, how long it waited for a CPU (``perf sched timehist``'s "sch
    delay"). While a proxy waits, every stream's next chunk waits with it."""
    out = subprocess.run(
        ["perf", "sched", "timehist", "-i", str(data), "-p", ",".join(map(str, pids))],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    delays: list[float] = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6 or not fields[0][0].isdigit() or "[" not in line:
            continue
        with contextlib.suppress(ValueError):
            delays.append(float(fields[-2]))
    delays.sort()
    if not delays:
        return {}
    return {
        "sched_wakeups": len(delays),
        **spread("sched_delay", delays, to_ms=1.0),
        "sched_over_1ms_pct": 100 * sum(d > 1 for d in delays) / len(delays),
        "sched_over_2ms_pct": 100 * sum(d > 2 for d in delays) / len(delays),
        "sched_waited_s": sum(delays) / 1000,
    }


def drive(port: int, n: int, ramp_s: float, proxy: list[int]) -> dict[str, float]:
    """Run the client against ``port``; CPU and memory of the ``proxy`` pids and the
    kernel's TCP counters alongside."""
    rss0, cpu0, tcp0 = rss_kib(proxy), cpu_s(proxy), tcp_counters()
    ran0, waited0 = schedstat(proxy)
    proc = subprocess.Popen(
        [sys.executable, __file__, "client", str(port), str(n), str(ramp_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    rss_open = 0
    out = ""
    for line in proc.stdout:
        if line.strip() == "all-open":
            time.sleep(1.0)  # let the last streams start
            rss_open = rss_kib(proxy)
        else:
            out += line
    proc.wait()
    result: dict[str, float] = json.loads(out)
    result["cpu_s"] = cpu_s(proxy) - cpu0
    ran1, waited1 = schedstat(proxy)
    result["ran_s"], result["runqueue_s"] = ran1 - ran0, waited1 - waited0
    tcp1 = tcp_counters()
    for k in TCP_COUNTERS:
        result["tcp_" + k.split(":")[1]] = tcp1[k] - tcp0[k]
    result["rss_per_stream_kib"] = (rss_open - rss0) / n if proxy else 0.0
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", default="500,2000", help="concurrencies, comma-separated")
    ap.add_argument("--chunks", type=int, default=512)
    ap.add_argument("--interval-ms", type=int, default=25)
    ap.add_argument("--ramp-s", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=1, help="nginx workers and gateway processes")
    ap.add_argument("--gateway-loop", default="auto", help="the gateway's --loop")
    ap.add_argument(
        "--perf-sched",
        metavar="DIR",
        default=None,
        help="record the scheduler (perf sched) during each proxy's run and report its "
        "processes' scheduling delays; the recording adds its own load",
    )
    args = ap.parse_args()
    if args.workers < 1:
        ap.error(f"--workers: {args.workers} is not a number of processes; expected 1 or more")
    rows: list[tuple[int, str, dict[str, float]]] = []
    for n in (int(x) for x in args.streams.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="gwstreams-"))
        up, ng, gw = free_port(), free_port(), free_port()
        conf = (
            NGINX_CONF.format(tmp=tmp, up=up, port=ng)
            .replace("worker_connections 8192", "worker_connections 32768")
            .replace("worker_processes 1;", f"worker_processes {args.workers};")
        )
        (tmp / "nginx.conf").write_text(conf)
        routes = {
            "services": [
                {
                    "namespace": "default",
                    "name": "deepseek",
                    "models": ["deepseek-r1"],
                    "backends": [{"replica": "paced-0", "url": f"http://127.0.0.1:{up}"}],
                }
            ]
        }
        (tmp / "routes.json").write_text(json.dumps(routes))
        upstream = [sys.executable, __file__, "upstream", str(up), str(args.chunks)]
        upstream.append(str(args.interval_ms))
        gateway = tierserve_cmd("gateway", "--routes", str(tmp / "routes.json"))
        gateway += ["--port", str(gw), "--log-level", "WARNING", "--workers", str(args.workers)]
        gateway += ["--loop", args.gateway_loop]
        nginx = ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", "stderr"]
        with (
            started(upstream, up),
            started(nginx, ng),
            started(gateway, gw),
        ):
            time.sleep(1.0)
            for name, port in (("direct", up), ("nginx", ng), ("gateway", gw)):
                proxy = [] if name == "direct" else listeners(port)
                perf = None
                if args.perf_sched and proxy:
                    data = Path(args.perf_sched) / f"{n}-{name}.data"
                    data.parent.mkdir(parents=True, exist_ok=True)
                    perf = subprocess.Popen(
                        ["perf", "sched", "record", "-a", "-o", str(data)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(0.5)
                r = drive(port, n, args.ramp_s, proxy)
                if perf is not None:
                    perf.send_signal(signal.SIGINT)
                    perf.wait()
                    r.update(sched_delays(data, proxy))
                rows.append((n, name, r))
                print(f"  {n} streams {name:8} {json.dumps(r)}", flush=True)
    report(rows, args)


def report(rows: list[tuple[int, str, dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.chunks} chunks a stream, one per {args.interval_ms} ms; "
        f"{os.cpu_count()} cores shared by upstream, client and proxy; "
        f"{args.workers} nginx worker(s) and gateway process(es), gateway loop "
        f"{args.gateway_loop}; "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| streams | target | chunks | done / broken | CPU s per 1M chunks | delay p50 / p99 ms "
        "| added p50 / p99 ms | gap p50 / p99 / max ms | KiB per open stream |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    direct = {n: r for n, name, r in rows if name == "direct"}
    nginx_cpu = {n: r["cpu_s"] / max(1, r["chunks"]) for n, name, r in rows if name == "nginx"}
    for n, name, r in rows:
        d = direct[n]
        per_m = r["cpu_s"] / max(1, r["chunks"]) * 1e6
        added = (
            "-"
            if name == "direct"
            else f"{r['delay_p50_ms'] - d['delay_p50_ms']:.2f} / "
            f"{r['delay_p99_ms'] - d['delay_p99_ms']:.2f}"
        )
        cpu = "-" if name == "direct" else f"{per_m:.1f}"
        if name == "gateway" and nginx_cpu.get(n):
            cpu += f" ({per_m / (nginx_cpu[n] * 1e6):.1f}x nginx)"
        mem = "-" if name == "direct" else f"{r['rss_per_stream_kib']:.1f}"
        print(
            f"| {n} | {name} | {r['chunks']:.0f} | {r['completed']:.0f} / {r['broken']:.0f} | "
            f"{cpu} | {r['delay_p50_ms']:.2f} / {r['delay_p99_ms']:.2f} | {added} | "
            f"{r['gap_p50_ms']:.1f} / {r['gap_p99_ms']:.1f} / {r['gap_max_ms']:.0f} | {mem} |"
        )
    print(
        "\n| streams | target | first chunk p50 / p99 / max ms | last chunks with the end: "
        "n, delay p50 / p99 / max ms | worst gap ms: ended at s, "
        "upstream's writes apart, next chunk's delay, its number | "
        + " | ".join(k.split(":")[1] for k in TCP_COUNTERS)
        + " |"
    )
    print("| --- | --- | --- | --- | --- | " + "--- | " * len(TCP_COUNTERS))
    for n, name, r in rows:
        tcp = " | ".join(f"{r.get('tcp_' + k.split(':')[1], 0):.0f}" for k in TCP_COUNTERS)
        print(
            f"| {n} | {name} | {r['first_chunk_p50_ms']:.1f} / {r['first_chunk_p99_ms']:.1f} / "
            f"{r['first_chunk_max_ms']:.0f} | {r['end_delay_n']:.0f}, "
            f"{r['end_delay_p50_ms']:.1f} / {r['end_delay_p99_ms']:.1f} / "
            f"{r['end_delay_max_ms']:.0f} | "
            f"{r['gap_max_ms']:.0f}: {r['gap_max_ended_s']:.1f}, "
            f"{r['gap_max_upstream_ms']:.0f}, {r['gap_max_next_delay_ms']:.0f}, "
            f"#{r['gap_max_seq']:.0f} | {tcp} |"
        )

    print("\n| streams | target | wall s | ran s | waited on a run queue s |")
    print("| --- | --- | --- | --- | --- |")
    for n, name, r in rows:
        if name != "direct":
            print(
                f"| {n} | {name} | {r['wall_s']:.1f} | {r['ran_s']:.2f} | {r['runqueue_s']:.2f} |"
            )
    if any("sched_wakeups" in r for _, _, r in rows):
        print(
            "\n| streams | target | wakeups | scheduling delay p50 / p99 / max ms "
            "| over 1 ms | over 2 ms | waited for a CPU s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for n, name, r in rows:
            if "sched_wakeups" in r:
                print(
                    f"| {n} | {name} | {r['sched_wakeups']:.0f} | "
                    f"{r['sched_delay_p50_ms']:.3f} / {r['sched_delay_p99_ms']:.3f} / "
                    f"{r['sched_delay_max_ms']:.1f} | {r['sched_over_1ms_pct']:.2f} % | "
                    f"{r['sched_over_2ms_pct']:.2f} % | {r['sched_waited_s']:.2f} |"
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        port, chunks, interval = (int(a) for a in sys.argv[2:5])
        with asyncio.Runner(loop_factory=_loop) as runner:
            runner.run(_upstream(port, chunks, interval))
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        port, n = int(sys.argv[2]), int(sys.argv[3])
        with asyncio.Runner(loop_factory=_loop) as runner:
            print(json.dumps(runner.run(_client(port, n, float(sys.argv[4])))), flush=True)
    else:
        main()
