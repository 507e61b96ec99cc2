"""Gateway benchmark: direct upstream vs nginx (1 worker) vs the tierserve gateway
(1 process, and ``--workers N``) vs a FastAPI + httpx proxy, side by side in one run.

    .venv/bin/python bench/gateway/run.py [--duration 4] [--peer-python /path/to/python]

Needs ``wrk`` and ``nginx`` (Debian: wrk, nginx-light); the peer baseline needs a Python
with fastapi, uvicorn, httpx and sniffio (skipped when ``--peer-python`` is not given or
lacks them). Prints req/s and p50/p99 for small JSON and 32-chunk SSE at 32 and 128
connections, unloaded added latency / time to first chunk, and the goal ratios.
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


def has_peer(python: str | None) -> bool:
    if not python:
        return False
    probe = subprocess.run(
        [python, "-c", "import fastapi, uvicorn, httpx, sniffio"], capture_output=True
    )
    return probe.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--workers", type=int, default=2, help="workers for the --workers run")
    ap.add_argument("--peer-python", default=None, help="python with fastapi+uvicorn+httpx")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool} (apt-get install -y wrk nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-"))
    up, ng, gw, gwn, peer = (free_port() for _ in range(5))
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
    gateway = [
        sys.executable,
        "-m",
        "tierserve.cli.main",
        "gateway",
        "--routes",
        str(tmp / "routes.json"),
        "--log-level",
        "WARNING",
    ]
    targets: dict[str, int] = {
        "direct": up,
        "nginx": ng,
        "gateway": gw,
        f"gateway-w{args.workers}": gwn,
    }
    use_peer = has_peer(args.peer_python)
    if use_peer:
        targets["fastapi+httpx"] = peer
    results: dict[tuple[str, str, int], dict[str, float]] = {}
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
            if name.startswith("gateway-w"):
                continue
            for mode, body in (("json", BODY_JSON), ("sse", BODY_SSE)):
                lat[(name, mode)] = unloaded(port, body)
        for name, port in targets.items():
            for mode, body in (("json", BODY_JSON), ("sse", BODY_SSE)):
                if name.startswith("gateway-w") and mode == "sse":
                    continue
                for conns in (32, 128):
                    results[(name, mode, conns)] = wrk(port, body, conns, args.duration, tmp)
                    r = results[(name, mode, conns)]
                    print(
                        f"  {name:15} {mode:4} c={conns:<3} {r['rps']:9.0f} req/s "
                        f"p50 {r['p50']:7.2f} ms p99 {r['p99']:7.2f} ms"
                        + (f"  non-2xx {r['non2xx']:.0f}" if r["non2xx"] else ""),
                        flush=True,
                    )
    shutil.rmtree(tmp, ignore_errors=True)
    report(results, lat, targets, use_peer, args.workers)


def report(
    results: dict[tuple[str, str, int], dict[str, float]],
    lat: dict[tuple[str, str], float],
    targets: dict[str, int],
    use_peer: bool,
    workers: int,
) -> None:
    print("\n| target | mode | conns | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, mode, conns), r in results.items():
        print(f"| {name} | {mode} | {conns} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    print("\nUnloaded p50 (one connection): JSON whole response / SSE time to first chunk, ms")
    for name in targets:
        if (name, "json") in lat:
            print(f"  {name:15} json {lat[(name, 'json')]:.3f}  sse-ttfc {lat[(name, 'sse')]:.3f}")
    g, n, d = "gateway", "nginx", "direct"
    print("\nGoals (one gateway process vs one nginx worker):")
    for conns in (32, 128):
        j = results[(g, "json", conns)]["rps"] / results[(n, "json", conns)]["rps"]
        s = results[(g, "sse", conns)]["rps"] / results[(n, "sse", conns)]["rps"]
        print(f"  c={conns}: JSON {j:.0%} of nginx (goal >= 10%), SSE {s:.0%} (goal >= 60%)")
        if use_peer:
            pj = (
                results[(g, "json", conns)]["rps"]
                / results[("fastapi+httpx", "json", conns)]["rps"]
            )
            ps = results[(g, "sse", conns)]["rps"] / results[("fastapi+httpx", "sse", conns)]["rps"]
            print(f"        vs FastAPI+httpx: JSON {pj:.1f}x, SSE {ps:.1f}x (goal >= 5x)")
        w = (
            results[(f"gateway-w{workers}", "json", conns)]["rps"]
            / results[(g, "json", conns)]["rps"]
        )
        print(f"        --workers {workers} JSON: {w:.2f}x one process")
    print(
        f"  added p50 unloaded: {lat[(g, 'json')] - lat[(d, 'json')]:.3f} ms (goal <= 1 ms); "
        f"added TTFC: {lat[(g, 'sse')] - lat[(d, 'sse')]:.3f} ms (goal <= 1.5 ms); "
        f"nginx adds {lat[(n, 'json')] - lat[(d, 'json')]:.3f} / "
        f"{lat[(n, 'sse')] - lat[(d, 'sse')]:.3f} ms"
    )
    print(f"  cores: {os.cpu_count()} (wrk, upstream and proxy share them)")


if __name__ == "__main__":
    main()
