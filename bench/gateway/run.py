"""Gateway benchmark: direct upstream vs nginx (1 worker) vs the tierserve gateway
(``tierserve gateway``, ``--workers N``, and inside ``tierserve up``'s control plane) vs
an optional FastAPI + httpx proxy, side by side in one run.

    .venv/bin/python bench/gateway/run.py [--rounds 3] [--duration 4] [--conns 32]
        [--workers 2] [--no-up] [--peer-python /path/to/python]

Needs ``wrk`` and ``nginx`` (Debian: wrk, nginx-light); the peer baseline needs a Python
with fastapi, uvicorn, httpx and sniffio (skipped when ``--peer-python`` is not given or
lacks them). Every round drives each target in turn (small JSON and 32-chunk SSE, wrk
-t1) and reads the CPU seconds its processes used, so a round's ratios compare figures
taken seconds apart on the same machine. Prints each figure with nginx's own in the
same round, the ratio and the goal, then the unloaded added latency / time to first
chunk, the cores and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "deepseek-default.example.com"
MESSAGES = [{"role": "user", "content": "Say this is a test!"}]
BODY_JSON = json.dumps({"model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 8})
BODY_SSE = json.dumps(
    {"model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 32, "stream": True}
)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream up {{ server 127.0.0.1:{up}; keepalive 512; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


@contextlib.contextmanager
def started(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        wait_port(port)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------------ unloaded latency


def _request(body: str) -> bytes:
    data = body.encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _complete(buf: bytes) -> bool:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", buf[: end + 2])
    if m:
        return len(buf) - end - 4 >= int(m.group(1))
    return buf.endswith(b"0\r\n\r\n")


def unloaded(port: int, body: str, n: int = 300) -> float:
    """p50 in ms: whole response for JSON, time to the first ``data:`` chunk for SSE."""
    req, stream = _request(body), '"stream": true' in body
    samples = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + 50):
            t0 = time.perf_counter()
            s.sendall(req)
            buf, first = b"", None
            while not _complete(buf):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
                if first is None and stream and b"data: " in buf:
                    first = time.perf_counter()
            done = time.perf_counter()
            if i >= 50:
                samples.append(((first if stream and first else done) - t0) * 1000)
    return statistics.median(samples)


# ------------------------------------------------------------------ wrk


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)\b", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def wrk(port: int, body: str, conns: int, duration_s: int, lua_dir: Path) -> dict[str, float]:
    script = lua_dir / f"post_{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{body}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Host"] = "{HOST}"\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"(?m)^\s+50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"(?m)^\s+99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "errors": 1.0 if errs and "timeout 0" not in errs.group(0) else 0.0,
    }


def listeners(port: int) -> list[int]:
    """The pids of the processes listening on ``port`` (nginx's master and worker, each
    ``--workers`` process, the control plane)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out.stdout)})


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tierserve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tierserve.cli.main", *args]


@contextlib.contextmanager
def gateway_up(tmp: Path, port: int) -> Iterator[None]:
    """``tierserve up`` (its own state directory) with one service, ``deepseek``, whose
    replica is the fake upstream: the gateway users of ``up`` get."""
    env = {"TIERSERVE_STATE_DIR": str(tmp / "state")}
    with started(tierserve_cmd("up", "--gateway-port", str(port)), port, env):
        subprocess.run(
            tierserve_cmd(
                "serve", "kserve", "--name", "deepseek", "--model-name", "deepseek-r1",
                f"{sys.executable} {HERE / 'fake_upstream.py'} {{port}}",
            ),
            env={**os.environ, **env}, check=True, capture_output=True,
        )  # fmt: skip
        wait_routed(port)
        try:
            yield
        finally:
            subprocess.run(
                tierserve_cmd("down"), env={**os.environ, **env}, capture_output=True, timeout=60
            )


def wait_routed(port: int, timeout_s: float = 60.0) -> None:
    """Until a chat completion through the gateway on ``port`` answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=BODY_JSON.encode(),
            headers={"Host": HOST, "Content-Type": "application/json"},
        )
        with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing routable on {port}")


def has_peer(python: str | None) -> bool:
    if not python:
        return False
    probe = subprocess.run(
        [python, "-c", "import fastapi, uvicorn, httpx, sniffio"], capture_output=True
    )
    return probe.returncode == 0


Results = dict[tuple[int, str, str, int], dict[str, float]]
"""(round, target, mode, conns) -> req/s, p50, p99, CPU microseconds per request."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every wrk run")
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--conns", default="32", help="wrk connections, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="workers for the --workers run")
    ap.add_argument("--no-up", action="store_true", help="skip the gateway inside tierserve up")
    ap.add_argument(
        "--asyncio", action="store_true", help="also one gateway process on asyncio's own loop"
    )
    ap.add_argument("--peer-python", default=None, help="python with fastapi+uvicorn+httpx")
    args = ap.parse_args()
    conns_list = [int(c) for c in args.conns.split(",")]
    for tool in ("wrk", "nginx", "ss"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool} (apt-get install -y wrk nginx-light iproute2)")
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-"))
    up, ng, gw, gwn, gwu, peer, gwa = (free_port() for _ in range(7))
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, up=up, port=ng))
    routes = {
        "services": [
            {
                "namespace": "default",
                "name": "deepseek",
                "models": ["deepseek-r1"],
                "backends": [{"replica": "fake-0", "url": f"http://127.0.0.1:{up}"}],
            }
        ]
    }
    (tmp / "routes.json").write_text(json.dumps(routes))
    gateway = tierserve_cmd(
        "gateway", "--routes", str(tmp / "routes.json"), "--log-level", "WARNING"
    )
    wn = f"gateway-w{args.workers}"
    targets: dict[str, int] = {"direct": up, "nginx": ng, "gateway": gw, wn: gwn}
    if not args.no_up:
        targets["gateway-up"] = gwu
    if args.asyncio:
        targets["gateway-asyncio"] = gwa
    use_peer = has_peer(args.peer_python)
    if use_peer:
        targets["fastapi+httpx"] = peer
    results: Results = {}
    lat: dict[tuple[str, str], float] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(started([sys.executable, str(HERE / "fake_upstream.py"), str(up)], up))
        stack.enter_context(
            started(["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", "stderr"], ng)
        )
        stack.enter_context(started([*gateway, "--port", str(gw)], gw))
        stack.enter_context(
            started([*gateway, "--port", str(gwn), "--workers", str(args.workers)], gwn)
        )
        if not args.no_up:
            stack.enter_context(gateway_up(tmp, gwu))
        if args.asyncio:
            stack.enter_context(started([*gateway, "--port", str(gwa), "--loop", "asyncio"], gwa))
        if use_peer:
            assert args.peer_python
            stack.enter_context(
                started(
                    [
                        args.peer_python,
                        str(HERE / "httpx_proxy.py"),
                        str(peer),
                        f"http://127.0.0.1:{up}",
                    ],
                    peer,
                )
            )
        time.sleep(1.0)
        for name, port in targets.items():
            if name == wn:
                continue
            for mode, body in (("json", BODY_JSON), ("sse", BODY_SSE)):
                lat[(name, mode)] = unloaded(port, body)
        loads = []
        for rnd in range(1, args.rounds + 1):
            for name, port in targets.items():
                pids = listeners(port)
                for mode, body in (("json", BODY_JSON), ("sse", BODY_SSE)):
                    for conns in conns_list:
                        c0 = cpu_s(pids)
                        r = wrk(port, body, conns, args.duration, tmp)
                        used = cpu_s(pids) - c0
                        r["cpu_us"] = 1e6 * used / max(1.0, r["rps"] * args.duration)
                        results[(rnd, name, mode, conns)] = r
                        print(
                            f"  round {rnd} {name:15} {mode:4} c={conns:<3} {r['rps']:9.0f} req/s "
                            f"p50 {r['p50']:7.2f} ms p99 {r['p99']:7.2f} ms "
                            f"CPU {r['cpu_us']:6.1f} us/req"
                            + (f"  non-2xx {r['non2xx']:.0f}" if r["non2xx"] else ""),
                            flush=True,
                        )
            loads.append(os.getloadavg()[0])
    shutil.rmtree(tmp, ignore_errors=True)
    report(results, lat, targets, args.rounds, conns_list, wn, loads)


def report(
    results: Results,
    lat: dict[tuple[str, str], float],
    targets: dict[str, int],
    rounds: int,
    conns_list: list[int],
    wn: str,
    loads: list[float],
) -> None:
    print("\n| round | target | mode | conns | req/s | p50 ms | p99 ms | CPU us/req |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (rnd, name, mode, conns), r in results.items():
        print(
            f"| {rnd} | {name} | {mode} | {conns} | {r['rps']:.0f} | {r['p50']:.2f} | "
            f"{r['p99']:.2f} | {r['cpu_us']:.1f} |"
        )
    print("\nGoals, per round (each figure, nginx's own in the same round, the ratio):")
    print("| round | figure | gateway | nginx (1 worker) | ratio to | ratio | goal | met |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for rnd in range(1, rounds + 1):
        for conns in conns_list:
            for gw in ("gateway", "gateway-up"):
                if gw not in targets:
                    continue
                for mode, goal in (("json", 0.10), ("sse", 0.60)):
                    g = results[(rnd, gw, mode, conns)]["rps"]
                    n = results[(rnd, "nginx", mode, conns)]["rps"]
                    label = f"{gw} {mode} req/s (c={conns})"
                    _goal_row(rnd, label, f"{g:.0f}", f"{n:.0f}", "nginx", g / n, goal)
            for mode in ("json", "sse"):
                one = results[(rnd, "gateway", mode, conns)]["rps"]
                w = results[(rnd, wn, mode, conns)]["rps"]
                n = results[(rnd, "nginx", mode, conns)]["rps"]
                _goal_row(
                    rnd, f"{wn} {mode} req/s (c={conns})", f"{w:.0f}", f"{n:.0f}",
                    f"1 process ({one:.0f})", w / one, 1.8 if mode == "json" else None,
                )  # fmt: skip
        for gw in ("gateway", wn, "gateway-up", "gateway-asyncio"):
            for mode in ("json", "sse"):
                if (rnd, gw, mode, conns_list[0]) not in results:
                    continue
                g = results[(rnd, gw, mode, conns_list[0])]["cpu_us"]
                n = results[(rnd, "nginx", mode, conns_list[0])]["cpu_us"]
                label = f"{gw} {mode} CPU us/req"
                _goal_row(rnd, label, f"{g:.1f}", f"{n:.1f}", "nginx", g / n, None)
    d = "direct"
    for gw in ("gateway", "gateway-up"):
        if (gw, "json") not in lat:
            continue
        added = lat[(gw, "json")] - lat[(d, "json")]
        ttfc = lat[(gw, "sse")] - lat[(d, "sse")]
        n_added = lat[("nginx", "json")] - lat[(d, "json")]
        n_ttfc = lat[("nginx", "sse")] - lat[(d, "sse")]
        for what, value, base, goal in (
            ("added p50", added, n_added, 0.5),
            ("added TTFC", ttfc, n_ttfc, 1.0),
        ):
            ratio = value / base if base > 0 else float("nan")
            label = f"{gw} {what} ms, unloaded"
            _goal_row(0, label, f"{value:.3f}", f"{base:.3f}", "nginx", ratio, goal, upper=True)
    print("\nUnloaded p50 (one connection): JSON whole response / SSE time to first chunk, ms")
    for name in targets:
        if (name, "json") in lat:
            print(f"  {name:15} json {lat[(name, 'json')]:.3f}  sse-ttfc {lat[(name, 'sse')]:.3f}")
    print(
        f"\n{os.cpu_count()} cores (wrk, upstream and proxy share them); load average at the "
        f"end of each round: {', '.join(f'{x:.2f}' for x in loads)}"
    )


def _goal_row(
    rnd: int,
    label: str,
    value: str,
    nginx: str,
    base: str,
    ratio: float,
    goal: float | None,
    upper: bool = False,
) -> None:
    """One goal line: ``ratio`` is ``value`` over ``base``'s figure; ``upper``: the goal
    bounds the value itself (ms), else the ratio from below."""
    if goal is None:
        met, goal_text = "", ""
    elif upper:
        met, goal_text = ("yes" if float(value) <= goal else "no"), f"<= {goal:g} ms"
    else:
        met, goal_text = ("yes" if ratio >= goal else "no"), f">= {goal:.2f}"
    where = str(rnd) if rnd else "unloaded"
    print(f"| {where} | {label} | {value} | {nginx} | {base} | {ratio:.2f} | {goal_text} | {met} |")


if __name__ == "__main__":
    main()
