"""Profile the gateway's per-request cost with py-spy while wrk drives it.

    .venv/bin/python bench/gateway/profile.py --path up|standalone|workers \
        [--mode json|sse] [--seconds 10] [--label before] [--out bench/gateway/profiles]

Starts the fake upstream and the gateway on the chosen path -- ``up``: the gateway
inside ``tierserve up``'s control plane, with a service whose replica is the fake
upstream; ``standalone``: ``tierserve gateway``; ``workers``: ``tierserve gateway
--workers 2`` (py-spy follows the worker processes) -- drives it with wrk (32
connections), and writes ``<label>-<path>-<mode>.svg`` (flame graph) and
``<label>-<path>-<mode>.txt`` (the top functions by own and inclusive samples) to
``--out``. Needs ``py-spy`` (the ``bench`` extra), ``wrk``, and ``perf`` for the optional
``--perf`` summary (the share of samples in the interpreter, the kernel and the GC).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    BODY_JSON,
    BODY_SSE,
    HOST,
    free_port,
    gateway_up,
    listeners,
    started,
    tierserve_cmd,
    wait_port,
)

HERE = Path(__file__).resolve().parent


def _tierserve(*args: str) -> list[str]:
    return tierserve_cmd(*args)


def _pid_on(port: int) -> int:
    pids = listeners(port)
    if not pids:
        raise RuntimeError(f"nothing listens on {port}")
    return pids[0]


def top(raw: Path, n: int = 25) -> str:
    """Own and inclusive sample shares per function, from py-spy's ``--format raw``."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    plane = sum(k for f, k in incl.items() if "(tierserve/runtime/" in f)
    lines = [f"samples: {total}; the control plane's own loops: {100 * plane / total:.1f}%"]
    lines += ["", "own:"]
    lines += [f"{100 * k / total:5.1f}%  {f}" for f, k in own.most_common(n)]
    lines += ["", "inclusive (below the event loop):"]
    lines += [
        f"{100 * k / total:5.1f}%  {f}"
        for f, k in incl.most_common(n + 20)
        if "(tierserve/runtime/" not in f  # counted above
        and not re.search(r"runpy|typer|click|cli/|run_gateway|_run_until_signal|Runner\.run|"
                         r"run_forever|_run_once|<module>|main \(|_worker|_bootstrap|spawn|"
                         r"BaseProcess", f)
    ][:n]  # fmt: skip
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    path = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", m.group(2))
    path = re.sub(r".*/(tierserve|bench)/", r"\1/", path)
    return f"{m.group(1)} ({path})"


def perf_summary(pid: int, seconds: float) -> str:
    """Where the CPU goes by library (interpreter, kernel, C extensions) and the GC's share."""
    data = Path(tempfile.mkstemp(suffix=".perf")[1])
    subprocess.run(
        ["perf", "record", "-p", str(pid), "-o", str(data), "--", "sleep", str(seconds)],
        capture_output=True,
    )
    by_dso = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-g", "none"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    by_sym = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "symbol", "--stdio", "-g", "none"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    data.unlink(missing_ok=True)
    rows = [ln for ln in by_dso.splitlines() if "%" in ln and not ln.startswith("#")][:8]
    gc = sum(
        float(m.group(1))
        for m in re.finditer(r"([\d.]+)%\s+\[\.\]\s+(gc_collect_main|visit_decref|"
                             r"visit_reachable|move_unreachable|subtract_refs|update_refs)",
                             by_sym)
    )  # fmt: skip
    return "perf, by library:\n" + "\n".join(rows) + f"\ncyclic GC: {gc:.1f}%\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", choices=("up", "standalone", "workers"), default="standalone")
    ap.add_argument("--mode", choices=("json", "sse"), default="json")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--label", default="profile")
    ap.add_argument("--out", type=Path, default=HERE / "profiles")
    ap.add_argument("--perf", action="store_true", help="also a perf summary (needs perf)")
    args = ap.parse_args()
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gwprof-"))
    up = free_port()
    upstream = [sys.executable, str(HERE / "fake_upstream.py"), str(up)]
    body = BODY_JSON if args.mode == "json" else BODY_SSE
    script = tmp / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [[{body}]]\n'
        f'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["Host"] = "{HOST}"\n'
    )
    name = f"{args.label}-{args.path}-{args.mode}"
    with contextlib.ExitStack() as stack:
        if args.path == "up":
            port = free_port()
            stack.enter_context(gateway_up(tmp, port))
            pid = _pid_on(port)
        else:
            stack.enter_context(started(upstream, up))
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
            port = free_port()
            cmd_gw = _tierserve(
                "gateway", "--routes", str(tmp / "routes.json"), "--port", str(port),
                "--log-level", "WARNING",
            )  # fmt: skip
            if args.path == "workers":
                cmd_gw += ["--workers", "2"]
            stack.enter_context(started(cmd_gw, port))
            wait_port(port)
            pid = _pid_on(port)
            if args.path == "workers":  # the parent: py-spy follows its workers
                parent = subprocess.run(
                    ["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True
                )
                pid = int(parent.stdout.strip())
        duration = int(args.seconds + 4)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        load = subprocess.Popen(
            ["wrk", "-t1", "-c32", f"-d{duration}s", "-s", str(script), url],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        spy = ["py-spy", "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "250",
               "--nonblocking"]  # fmt: skip
        if args.path == "workers":
            spy.append("--subprocesses")
        subprocess.run([*spy, "-o", str(args.out / f"{name}.svg"), "--format", "flamegraph"],
                       capture_output=True, check=True)  # fmt: skip
        load.wait()
        rate = re.search(r"Requests/sec:\s+([\d.]+)", load.stdout.read() if load.stdout else "")
        raw = tmp / "raw.txt"
        load = subprocess.Popen(
            ["wrk", "-t1", "-c32", f"-d{duration}s", "-s", str(script), url],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        subprocess.run([*spy, "-o", str(raw), "--format", "raw"], capture_output=True, check=True)
        perf = perf_summary(pid, 4) if args.perf and args.path != "workers" else ""
        load.wait()
        header = (
            f"# {name}: wrk -c32 {args.mode} at {rate.group(1) if rate else '?'} req/s "
            f"while sampled; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores\n"
        )
        text = header + top(raw) + ("\n" + perf if perf else "")
        (args.out / f"{name}.txt").write_text(text)
        print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
