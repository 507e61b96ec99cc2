"""Compare HPA scale metrics on the same bursty load: the seed's SM util vs LLM-aware ones.

For each configuration this starts a fresh control plane (``tierserve up --detach``) in a
temporary state directory, applies the seed's storage YAML and ResourcePolicy plus the
seed's InferenceService (its vLLM command line, 1 GPU, min 1 max 3) with that
configuration's scale metric(s) and minReplicas, waits for minReplicas Ready, drives the
same open-loop, bursty load through the gateway with ``tierserve bench --stream --json``
(Poisson arrivals with fixed seeds: every configuration sees the same arrival schedule)
while sampling ``GET /api/v1/pods`` every wall second. At the end of the load timeline
it reads ``GET /api/v1/cost``; every control plane is stopped (``tierserve down``) even on
error. Not a test: run it by hand (about 2 minutes of wall time per configuration; the
five default ones take ~10.5 minutes). Results and the measured table: docs/autoscaling.md.

    .venv/bin/python bench/autoscale/compare.py                  # every configuration
    .venv/bin/python bench/autoscale/compare.py --configs seed-sm50,inflight-10
    .venv/bin/python bench/autoscale/compare.py --configs '' \\
        --config 'x=vllm:num_requests_running:8/1'
    .venv/bin/python bench/autoscale/compare.py --summarize bench/autoscale/results/latest.json
    .venv/bin/python bench/autoscale/compare.py --configs inflight-10 --shorten 0.25   # smoke

Time. The replicas run the V100 emulator at ``--time-scale`` (0.2: 5x faster than real
time). Every delay of the control plane is given in *emulated* seconds and passed to
``tierserve up`` multiplied by the time scale (cold start, HPA period, downscale
stabilisation, scrape interval), and so are the load's rates, durations and SLO, so the
whole run is a consistent 5x-faster replay of real time. Every figure printed is
converted back to emulated seconds (wall seconds / time scale): latencies, times,
GPU-seconds and cost.

Load (emulated time): chat requests with a ~1500-token prompt and ``max_tokens`` 256
(a RAG/chat-with-context shape: prefill is what saturates a V100; with the seed's
11-token prompt continuous batching absorbs hundreds of streams at ~24 ms per token, so
nothing needs scaling). Phases: quiet 0.5 req/s for 90 s, burst 3.0 req/s for 180 s,
quiet 0.5 req/s for 270 s. The performance model (``tierserve.engine.perf``) predicts one
V100 meets TTFT p90 <= 2 s and TPOT p90 <= 100 ms up to ~1.8 req/s of this shape, so the
burst needs all 3 replicas, the quiet phases need one.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierserve.examples import seed_text
from tierserve.runtime.promtext import parse_metrics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent
TIERSERVE = str(BIN / "tierserve") if (BIN / "tierserve").exists() else "tierserve"

SERVICE_COMMAND = (
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code "
    "--served-model-name deepseek-r1 --max-model-len 32768 --gpu-memory-utilization 0.95 "
    "--enforce-eager --dtype=half"
)
HOST = "deepseek-default.example.com"
IDC_TIER, CLOUD_TIER = "idc", "cloud"
TIER_LABEL = "tierserve.io/tier"


@dataclass(frozen=True)
class Config:
    metrics: list[tuple[str, float]]
    """[(metric, target), ...]: the first is scaleMetric/scaleTarget, the rest `metrics:`."""
    min_replicas: int = 1
    autoscaling: dict[str, Any] | None = None
    """``spec.autoscaling`` (the tier planner: ``{policy: slo, ...}``) instead of metrics."""


CONFIGS: dict[str, Config] = {
    "seed-sm50": Config([("DCGM_CUSTOM_PROCESS_SM_UTIL", 50)]),
    "inflight-10": Config([("tierserve:inflight_requests", 10)]),
    "inflight-10-min2": Config([("tierserve:inflight_requests", 10)], min_replicas=2),
    "running-10": Config([("vllm:num_requests_running", 10)]),
    "waiting-1": Config([("vllm:num_requests_waiting", 1)]),
}
_SLO = {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95}
PLANNER_CONFIGS: dict[str, Config] = {
    "slo": Config([], autoscaling={"policy": "slo", "slo": _SLO}),
    "slo-headroom-50": Config([], autoscaling={"policy": "slo", "slo": _SLO, "headroom": 0.5}),
    "slo-min2": Config([], min_replicas=2, autoscaling={"policy": "slo", "slo": _SLO}),
}
"""The tier planner at three settings (``--configs slo,slo-headroom-50,slo-min2``)."""
CONFIGS.update(PLANNER_CONFIGS)


LEAD_S = 3.0
"""Wall seconds a phase's ``tierserve bench`` is started before its first request."""


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float  # emulated requests/s (0: closed loop with ``concurrency`` clients, as hey -c)
    duration_s: float  # emulated seconds
    seed: int
    concurrency: int = 0


PHASES = (
    Phase("quiet-1", 0.5, 90.0, 11),
    Phase("burst", 3.0, 180.0, 12),
    Phase("quiet-2", 0.5, 270.0, 13),
)


@dataclass(frozen=True)
class Settings:
    time_scale: float = 0.2
    cold_start_s: float = 45.0  # the virtual node's default
    hpa_period_s: float = 15.0  # Kubernetes' HPA sync period
    downscale_stabilization_s: float = 60.0  # Kubernetes: 300
    metrics_interval_s: float = 5.0
    tick_s: float = 1.0
    price_per_gpu_hour: float = 2.5  # the virtual node's default (illustrative)
    prompt_words: int = 1495  # + "Summarise:" and the chat template = 1500 prompt tokens
    max_tokens: int = 256
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.1
    max_replicas: int = 3

    def wall(self, emulated_s: float) -> float:
        return emulated_s * self.time_scale


# -- helpers ----------------------------------------------------------------------------------


def _http(url: str, token: str, timeout: float = 10.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _go_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms"


def service_yaml(config: Config, s: Settings) -> str:
    lines = [
        "apiVersion: serving.tierserve.io/v1alpha1",
        "kind: InferenceService",
        "metadata: {name: deepseek, namespace: default}",
        "spec:",
        "  gpus: 1",
        '  cpu: "4"',
        "  memory: 12Gi",
        f"  replicas: {config.min_replicas}",
        f"  minReplicas: {config.min_replicas}",
        f"  maxReplicas: {s.max_replicas}",
    ]
    if config.autoscaling is not None:
        lines.append(f"  autoscaling: {json.dumps(config.autoscaling)}")
    else:
        (first_name, first_target), rest = config.metrics[0], config.metrics[1:]
        lines += [f'  scaleMetric: "{first_name}"', f"  scaleTarget: {first_target:g}"]
    if config.autoscaling is None and rest:
        lines.append("  metrics:")
        lines += [f'    - {{name: "{n}", target: {t:g}}}' for n, t in rest]
    lines += [
        '  data: ["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"]',
        f"  command: {json.dumps(SERVICE_COMMAND)}",
    ]
    return "\n".join(lines) + "\n"


SEED_PHASES = (Phase("hey-c5", 0.0, 300.0, 0, concurrency=5),)
"""``--load seed``: the seed's own load test, ``hey -z 5m -c 5`` with the seed's body."""
SEED_BODY = {
    "model": "deepseek-r1",
    "messages": [{"role": "user", "content": "Say this is a test!"}],
    "max_tokens": 512,
    "temperature": 0.7,
    "top_p": 0.9,
}
"""The seed's request body, verbatim (``hey -d``)."""
LOAD = "burst"


def request_body(s: Settings) -> str:
    if LOAD == "seed":
        return json.dumps(SEED_BODY)
    vocab = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while")
    words = " ".join(vocab[i % len(vocab)] for i in range(s.prompt_words - 2))
    return json.dumps(
        {
            "model": "deepseek-r1",
            "messages": [{"role": "user", "content": f"Summarise: {words}"}],
            "max_tokens": s.max_tokens,
            "temperature": 0.7,
            "top_p": 0.9,
        }
    )


def _tier(pod: dict[str, Any]) -> str:
    labels = pod.get("metadata", {}).get("labels", {}) or {}
    tier = labels.get(TIER_LABEL)
    if tier:
        return str(tier)
    node = pod.get("status", {}).get("nodeName") or pod.get("spec", {}).get("nodeName") or ""
    if not node:
        return "none"
    return IDC_TIER if node == "idc001" else CLOUD_TIER


# -- one configuration -----------------------------------------------------------------------


@dataclass
class Run:
    name: str
    config: Config
    round: int = 1
    samples: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    load_start_epoch: float = 0.0
    gauges: list[dict[str, Any]] = field(default_factory=list)
    """``--gauges-every``: each Ready replica's queue gauges, read from its ``/metrics``."""


GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running")


class GaugeProbe(threading.Thread):
    """Every ``every_s`` wall seconds from the load's start, each Ready replica's queue
    gauges straight from the replica (what the autoscaler's scrape would read at that
    instant): how much a gauge moves between the control plane's 5-s scrapes."""

    def __init__(
        self, api: str, token: str, t0: float, every_s: float, out: list[dict[str, Any]]
    ) -> None:
        super().__init__(daemon=True)
        self.api, self.token, self.t0, self.every_s, self.out = api, token, t0, every_s, out
        self.stop = threading.Event()

    def run(self) -> None:
        self.stop.wait(max(0.0, self.t0 - time.time()))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self.stop.is_set():
            now = time.time()
            with contextlib.suppress(Exception):
                for pod in _http(f"{self.api}/api/v1/pods", self.token)["items"]:
                    status = pod.get("status", {})
                    if status.get("phase") != "Ready" or not status.get("port"):
                        continue
                    url = f"http://127.0.0.1:{status['port']}/metrics"
                    with opener.open(url, timeout=2) as resp:
                        # parsed as the control plane's scraper parses it
                        parsed = parse_metrics(resp.read().decode())
                    values = {k: parsed[k] for k in GAUGES if k in parsed}
                    self.out.append(
                        {"t_wall": now - self.t0, "pod": pod["metadata"]["name"], **values}
                    )
            self.stop.wait(max(0.0, self.every_s - (time.time() - now)))


class Sampler(threading.Thread):
    """GET /api/v1/pods (and the service's desired replicas) once per wall second."""

    def __init__(self, api: str, token: str, t0: float, out: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.api, self.token, self.t0, self.out = api, token, t0, out
        self.stop = threading.Event()

    def run(self) -> None:
        self.stop.wait(max(0.0, self.t0 - time.time()))  # from the load's start
        while not self.stop.is_set():
            now = time.time()
            with contextlib.suppress(Exception):
                pods = _http(f"{self.api}/api/v1/pods", self.token)["items"]
                isvc = _http(f"{self.api}/api/v1/inferenceservices/deepseek", self.token)
                alloc = {IDC_TIER: 0, CLOUD_TIER: 0}
                ready = {IDC_TIER: 0, CLOUD_TIER: 0}
                phases: dict[str, int] = {}
                for p in pods:
                    phase = p.get("status", {}).get("phase", "")
                    phases[phase] = phases.get(phase, 0) + 1
                    tier = _tier(p)
                    if tier in alloc and phase not in ("Pending", "Failed"):
                        alloc[tier] += 1  # billed: Provisioning/Starting/Ready/Terminating
                    if tier in ready and phase == "Ready":
                        ready[tier] += 1
                self.out.append(
                    {
                        "t_wall": now - self.t0,
                        "desired": isvc.get("spec", {}).get("replicas"),
                        "allocated": alloc,
                        "ready": ready,
                        "phases": phases,
                    }
                )
            self.stop.wait(max(0.0, 1.0 - (time.time() - now)))


def run_config(run: Run, s: Settings, keep: bool, gauges_every_s: float = 0.0) -> None:
    state = Path(tempfile.mkdtemp(prefix=f"tierserve-autoscale-{run.name}-"))
    env = {**os.environ, "TIERSERVE_STATE_DIR": str(state)}

    def cli(*args: str, timeout: float = 120.0) -> str:
        res = subprocess.run(
            [TIERSERVE, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if res.returncode != 0:
            raise RuntimeError(f"tierserve {' '.join(args)}: {res.stderr.strip()[-800:]}")
        return res.stdout

    benches: list[subprocess.Popen[str]] = []
    sampler: Sampler | None = None
    probe: GaugeProbe | None = None
    try:
        cli(
            "up", "--detach",
            "--virtual-cold-start-s", f"{s.wall(s.cold_start_s):g}",
            "--virtual-price-per-gpu-hour", f"{s.price_per_gpu_hour:g}",
            "--hpa-period-s", f"{s.wall(s.hpa_period_s):g}",
            "--hpa-downscale-stabilization-s", f"{s.wall(s.downscale_stabilization_s):g}",
            "--metrics-interval-s", f"{s.wall(s.metrics_interval_s):g}",
            "--tick-s", f"{s.wall(s.tick_s):g}",
            "--emulator-time-scale", f"{s.time_scale:g}",
            "--stop-grace-s", "2",
        )  # fmt: skip
        client = json.loads((state / "client.json").read_text())
        api, gw, token = client["api_url"], client["gateway_url"], client["token"]
        manifests = state / "manifests.yaml"
        manifests.write_text(
            seed_text("model-storage.yaml")
            + "\n---\n"
            + seed_text("resourcepolicy.yaml")
            + "\n---\n"
            + service_yaml(run.config, s)
        )
        cli("apply", "-f", str(manifests))
        deadline = time.monotonic() + 120
        while True:
            pods = _http(f"{api}/api/v1/pods", token)["items"]
            ready = sum(p.get("status", {}).get("phase") == "Ready" for p in pods)
            if ready >= run.config.min_replicas:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not {run.config.min_replicas} Ready within 120 s: {pods}")
            time.sleep(0.2)

        body = state / "body.json"
        body.write_text(request_body(s))
        slo = f"ttft={_go_duration(s.wall(s.slo_ttft_s))},tpot={_go_duration(s.wall(s.slo_tpot_s))}"
        t0 = time.time() + LEAD_S  # the first phase's bench starts now, sends from t0
        run.load_start_epoch = t0
        sampler = Sampler(api, token, t0, run.samples)
        sampler.start()
        if gauges_every_s > 0:
            probe = GaugeProbe(api, token, t0, gauges_every_s, run.gauges)
            probe.start()
        start = 0.0
        outs: dict[str, Path] = {}
        for ph in PHASES:
            # Each phase's bench starts LEAD_S early and sends from its scheduled time
            # (--start-at): its ~1 s start-up would otherwise delay the phase by ~5
            # emulated seconds at time scale 0.2.
            while time.time() - t0 < s.wall(start) - LEAD_S:
                time.sleep(0.005)
            out = state / f"bench-{ph.name}.json"
            outs[ph.name] = out
            benches.append(
                subprocess.Popen(
                    [
                        TIERSERVE, "bench", "--stream", "--json", "--no-progress",
                        *(
                            ("-c", str(ph.concurrency)) if ph.concurrency else (
                                "--rate", f"{ph.rate / s.time_scale:g}", "--seed", str(ph.seed),
                                "-c", "1000",
                            )
                        ),
                        "-z", _go_duration(s.wall(ph.duration_s)),
                        "-t", f"{s.wall(600):g}", "--slo", slo,
                        "--start-at", f"{t0 + s.wall(start):.6f}",
                        "-m", "POST", "-host", HOST, "-H", "Content-Type: application/json",
                        "-D", str(body), f"{gw}/v1/chat/completions",
                    ],
                    env=env, stdout=out.open("w"), stderr=subprocess.PIPE, text=True,
                )
            )  # fmt: skip
            start += ph.duration_s
        # The cost at the end of the load timeline (what each configuration paid for it).
        while time.time() - t0 < s.wall(start):
            time.sleep(0.05)
        run.cost = _http(f"{api}/api/v1/cost", token)
        run.cost["t_wall"] = time.time() - t0
        for proc in benches:
            _, err = proc.communicate(timeout=s.wall(900))
            if proc.returncode != 0:
                raise RuntimeError(f"tierserve bench exited {proc.returncode}: {err[-800:]}")
        sampler.stop.set()
        sampler.join()
        if probe is not None:
            probe.stop.set()
            probe.join()
        for ph in PHASES:
            run.phases[ph.name] = json.loads(outs[ph.name].read_text())
        run.events = [
            e
            for e in _http(f"{api}/api/v1/events", token).get("items", [])
            if e.get("reason") in ("SuccessfulRescale", "Provisioned", "Scheduled", "Killing")
        ]
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"[{run.name}] error: {run.error}", file=sys.stderr)
    finally:
        if sampler is not None:
            sampler.stop.set()
        if probe is not None:
            probe.stop.set()
        for proc in benches:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        res = subprocess.run(
            [TIERSERVE, "down"], env=env, capture_output=True, text=True, timeout=120
        )
        if res.returncode != 0:
            print(f"[{run.name}] tierserve down: {res.stderr.strip()}", file=sys.stderr)
        if not keep:
            shutil.rmtree(state, ignore_errors=True)


# -- figures ----------------------------------------------------------------------------------


_NEW_SIZE = re.compile(r"New size: (\d+)")


def first_scale_out(events: list[dict[str, Any]], low: int) -> float | None:
    """The first rescale above ``low`` replicas after the load started (emulated s from
    its start): the event's own time. (The pods sampler ticks once a wall second, i.e.
    every 5 emulated s at time scale 0.2, so its first sample with more desired replicas
    comes 0-5 s after the decision.)"""
    times = []
    for e in events:
        m = _NEW_SIZE.match(e.get("message", ""))
        t = e.get("t_s")
        if e.get("reason") != "SuccessfulRescale" or m is None or t is None or t < 0:
            continue
        if int(m.group(1)) > low:
            times.append(float(t))
    return min(times, default=None)


def summarize(run: Run, s: Settings) -> dict[str, Any]:
    ts = s.time_scale
    load_end = sum(p.duration_s for p in PHASES)
    out: dict[str, Any] = {
        "config": run.name,
        "round": run.round,
        "metrics": run.config.metrics,
        "autoscaling": run.config.autoscaling,
        "min_replicas": run.config.min_replicas,
        "error": run.error,
    }
    if run.error:
        return out
    per_phase = {}
    good = total = 0
    for ph in PHASES:
        llm = run.phases[ph.name]["llm"]
        ttft, tpot = llm["ttft_s"] or {}, llm["tpot_s"] or {}
        gp = llm["goodput"] or {"good_requests": 0, "requests": 0}
        good += gp["good_requests"]
        total += gp["requests"]
        per_phase[ph.name] = {
            "requests": run.phases[ph.name]["summary"]["requests"],
            "ok": llm["requests"],
            "errors": run.phases[ph.name]["errors"],
            "ttft_p50_s": ttft.get("p50", math.nan) / ts,
            "ttft_p90_s": ttft.get("p90", math.nan) / ts,
            "ttft_p99_s": ttft.get("p99", math.nan) / ts,
            "tpot_p50_s": tpot.get("p50", math.nan) / ts,
            "tpot_p90_s": tpot.get("p90", math.nan) / ts,
            "slo_attainment_pct": 100.0 * gp["good_requests"] / max(1, gp["requests"]),
        }
    out["phases"] = per_phase
    out["goodput_pct"] = 100.0 * good / max(1, total)
    out["goodput_req_per_s"] = good / load_end  # emulated
    samples = [x for x in run.samples if x["t_wall"] / ts <= load_end]
    for tier in (IDC_TIER, CLOUD_TIER):
        alloc = [x["allocated"][tier] for x in samples]
        ready = [x["ready"][tier] for x in samples]
        out[f"{tier}_allocated_peak"] = max(alloc, default=0)
        out[f"{tier}_allocated_mean"] = sum(alloc) / len(alloc) if alloc else 0.0
        out[f"{tier}_ready_peak"] = max(ready, default=0)
        out[f"{tier}_ready_mean"] = sum(ready) / len(ready) if ready else 0.0
    low = run.config.min_replicas
    scale_out = first_scale_out(run.events, low)
    if scale_out is None:  # files from before events were recorded: the 1-s samples
        wall = next((x["t_wall"] for x in run.samples if (x["desired"] or 0) > low), None)
        scale_out = None if wall is None else wall / ts
    added = next((x["t_wall"] for x in run.samples if sum(x["ready"].values()) > low), None)
    out["first_scale_out_s"] = scale_out
    out["first_added_ready_s"] = None if added is None else added / ts
    last_cloud = max((x["t_wall"] for x in samples if x["allocated"][CLOUD_TIER] > 0), default=None)
    out["last_cloud_s"] = None if last_cloud is None else last_cloud / ts
    # Cloud GPU-seconds per phase, integrated from the 1 s samples (a cross-check of /cost).
    bounds, start = {}, 0.0
    for ph in PHASES:
        bounds[ph.name] = (start, start + ph.duration_s)
        start += ph.duration_s
    by_phase = {name: 0.0 for name in bounds}
    for prev, cur in itertools.pairwise(samples):
        t = prev["t_wall"] / ts
        dt = (cur["t_wall"] - prev["t_wall"]) / ts
        for name, (lo, hi) in bounds.items():
            if lo <= t < hi:
                by_phase[name] += prev["allocated"][CLOUD_TIER] * dt
    out["cloud_gpu_s_by_phase"] = by_phase
    svc = run.cost.get("services", {}).get("default/deepseek", {})
    out["cloud_gpu_s"] = svc.get("gpuSeconds", {}).get(CLOUD_TIER, 0.0) / ts
    out["idc_gpu_s"] = svc.get("gpuSeconds", {}).get(IDC_TIER, 0.0) / ts
    out["cloud_cost"] = svc.get("cloudCost", 0.0) / ts
    return out


def timeline(run: Run, s: Settings, step_s: float = 30.0) -> str:
    """Replicas per tier (allocated: billed ones, Ready in brackets) every ``step_s``."""
    cells = []
    t = 0.0
    end = sum(p.duration_s for p in PHASES)
    while t <= end + 1e-9:
        near = min(run.samples, key=lambda x: abs(x["t_wall"] / s.time_scale - t), default=None)
        if near is None:
            break
        a, r = near["allocated"], near["ready"]
        cells.append(f"{a[IDC_TIER]}+{a[CLOUD_TIER]}({r[IDC_TIER]}+{r[CLOUD_TIER]})")
        t += step_s
    return " ".join(cells)


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| config | scale metric (target) | burst TTFT p50 / p90 (s) | burst TPOT p90 (ms) "
        "| quiet-2 TTFT p90 (s) | SLO met, all (%) | goodput (req/s) | first scale-out (s) "
        "| added replica Ready (s) | cloud replicas peak / mean | IDC mean "
        "| cloud GPU-s (in quiet-2) | cloud cost ($) |"
    )
    lines = [head, "| " + " | ".join(["---"] * 13) + " |"]
    for r in rows:
        metric = ", ".join(f"`{n}` ({t:g})" for n, t in r["metrics"])
        if r.get("autoscaling"):
            extra = {k: v for k, v in r["autoscaling"].items() if k not in ("policy", "slo")}
            metric = "tier planner (SLO TTFT 2 s, TPOT 100 ms, p95)" + (
                f", {', '.join(f'{k} {v}' for k, v in extra.items())}" if extra else ""
            )
        if r.get("min_replicas", 1) != 1:
            metric += f", minReplicas {r['min_replicas']}"
        if r.get("error"):
            lines.append(f"| {r['config']} | {metric} | error: {r['error']} |" + " |" * 10)
            continue
        names = list(r["phases"])
        # the step burst's phases; the seed load's one phase stands for both
        b = r["phases"].get("burst", r["phases"][names[0]])
        q = r["phases"].get("quiet-2", r["phases"][names[-1]])
        lines.append(
            f"| {r['config']} | {metric} "
            f"| {_f(b['ttft_p50_s'])} / {_f(b['ttft_p90_s'])} "
            f"| {_f(b['tpot_p90_s'] * 1000, '{:.0f}')} "
            f"| {_f(q['ttft_p90_s'])} "
            f"| {_f(r['goodput_pct'], '{:.1f}')} "
            f"| {_f(r['goodput_req_per_s'], '{:.2f}')} "
            f"| {_f(r['first_scale_out_s'], '{:.0f}')} "
            f"| {_f(r['first_added_ready_s'], '{:.0f}')} "
            f"| {r['cloud_allocated_peak']} / {r['cloud_allocated_mean']:.2f} "
            f"| {r['idc_allocated_mean']:.2f} "
            f"| {r['cloud_gpu_s']:.0f} ({r['cloud_gpu_s_by_phase'].get('quiet-2', 0):.0f}) "
            f"| {r['cloud_cost']:.3f} |"
        )
    return "\n".join(lines)


FIGURES = ("slo_pct", "cloud_gpu_s", "burst_ttft_p90_s", "first_scale_out_s")
"""The figures taken per round and their median (fidelity.py compares the same four)."""


def run_figures(row: dict[str, Any]) -> dict[str, float | None]:
    """One run's four figures (emulated seconds)."""
    phases = row["phases"]
    burst = phases.get("burst", next(iter(phases.values())))
    return {
        "slo_pct": row["goodput_pct"],
        "cloud_gpu_s": row["cloud_gpu_s"],
        "burst_ttft_p90_s": burst["ttft_p90_s"],
        "first_scale_out_s": row["first_scale_out_s"],
    }


def _present(rows: list[dict[str, Any]], key: str) -> list[float]:
    """``key``'s values in ``rows``, leaving out missing ones (None or NaN)."""
    return [r[key] for r in rows if r[key] is not None and not math.isnan(r[key])]


def median_figures(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each figure's median over the rows that have it (None when none has)."""
    out: dict[str, float | None] = {}
    for key in rows[0]:
        xs = _present(rows, key)
        out[key] = statistics.median(xs) if xs else None
    return out


def median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration (in first-seen order): each figure's median over the runs that
    finished, with its range. A figure no run has is None."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    out = []
    for config, runs in by.items():
        ok = [run_figures(r) for r in runs if not r.get("error")]
        med: dict[str, Any] = {
            "config": config,
            "rounds": len(ok),
            "planner": bool(runs[0].get("autoscaling")),
        }
        for key in FIGURES:
            xs = _present(ok, key)
            med[key] = statistics.median(xs) if xs else None
            med[f"{key}_range"] = [min(xs), max(xs)] if xs else None
        out.append(med)
    return out


def median_table(medians: list[dict[str, Any]]) -> str:
    def cell(m: dict[str, Any], key: str, fmt: str) -> str:
        lo_hi = m[f"{key}_range"]
        if m[key] is None:
            return "-"
        return f"{fmt.format(m[key])} ({fmt.format(lo_hi[0])}-{fmt.format(lo_hi[1])})"

    lines = [
        "| config | rounds | SLO met (%) | cloud GPU-s | burst TTFT p90 (s) "
        "| first scale-out (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in medians:
        lines.append(
            f"| {m['config']} | {m['rounds']} | {cell(m, 'slo_pct', '{:.1f}')} "
            f"| {cell(m, 'cloud_gpu_s', '{:.0f}')} | {cell(m, 'burst_ttft_p90_s', '{:.2f}')} "
            f"| {cell(m, 'first_scale_out_s', '{:.0f}')} |"
        )
    return "\n".join(lines)


def dominance(medians: list[dict[str, Any]]) -> list[str]:
    """For each HPA configuration, the planner settings at >= its SLO attainment and <= its
    cloud GPU-seconds (the issue's goal: one for every HPA point, one strictly better on
    both somewhere)."""
    ok = [m for m in medians if m["slo_pct"] is not None and m["cloud_gpu_s"] is not None]
    planner = [m for m in ok if m["planner"]]
    lines, strict_any, all_met = [], False, True
    for h in (m for m in ok if not m["planner"]):
        by = [
            p
            for p in planner
            if p["slo_pct"] >= h["slo_pct"] and p["cloud_gpu_s"] <= h["cloud_gpu_s"]
        ]
        strict = [
            p for p in by if p["slo_pct"] > h["slo_pct"] and p["cloud_gpu_s"] < h["cloud_gpu_s"]
        ]
        strict_any |= bool(strict)
        all_met &= bool(by)
        best = (strict or by or [None])[0]
        what = (
            "not dominated"
            if best is None
            else f"dominated by {best['config']} ({best['slo_pct']:.1f} % at "
            f"{best['cloud_gpu_s']:.0f} GPU-s{', strictly on both' if strict else ''})"
        )
        lines.append(
            f"{h['config']} ({h['slo_pct']:.1f} % at {h['cloud_gpu_s']:.0f} GPU-s): {what}"
        )
    lines.append(
        "goal met: every HPA point dominated, one strictly on both"
        if all_met and strict_any
        else "goal NOT met"
    )
    return lines


def report(doc: dict[str, Any], out: Path) -> None:
    """Print the table and timelines of a results document; write it (with its summary)."""
    global PHASES
    PHASES = tuple(Phase(**p) for p in doc["phases"])
    s = Settings(**doc["settings"])
    runs = []
    for r in doc["runs"]:
        known = CONFIGS.get(r["config"])  # files from before runs recorded their autoscaling
        scaling = r.get("autoscaling", known.autoscaling if known else None)
        config = Config([tuple(m) for m in r["metrics"]], r["min_replicas"], scaling)
        run = Run(r["config"], config, r.get("round", 1))
        run.error, run.samples, run.cost = r["error"], r["samples"], r["cost"]
        run.phases, run.events = r["bench"], r["events"]
        run.load_start_epoch = r.get("load_start_epoch", 0.0)
        runs.append(run)
    rows = [summarize(r, s) for r in runs]
    print(
        f"\nEmulated V100-32G replicas at --time-scale {s.time_scale:g}; every figure below is in "
        "emulated seconds (wall / time scale)."
    )
    print(
        "Load: "
        + ", ".join(f"{p.name} {p.rate:g} req/s x {p.duration_s:g} s" for p in PHASES)
        + f"; prompt {s.prompt_words + 5} tokens, max_tokens {s.max_tokens}; "
        f"SLO TTFT <= {s.slo_ttft_s:g} s, TPOT <= {s.slo_tpot_s * 1000:g} ms.\n"
    )
    print(table(rows))
    print("\nReplicas idc+cloud allocated (Ready) every 30 s from load start:")
    for run in runs:
        if not run.error:
            print(f"  {run.name:>16} #{run.round}: {timeline(run, s)}")
    medians = median_rows(rows)
    repeated = any(m["rounds"] > 1 for m in medians)
    if repeated:
        print("\nMedian of the rounds (min-max):\n")
        print(median_table(medians))
    print("\nDominance (" + ("medians" if repeated else "one run") + "):")
    for line in dominance(medians):
        print(f"  {line}")
    doc = {**doc, "summary": rows, "median": medians}
    out.parent.mkdir(parents=True, exist_ok=True)
    # Compact: one line per run's samples would still be long; the summary is what to read.
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"\nraw results: {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=METRIC:TARGET[,METRIC:TARGET][/MIN_REPLICAS]",
        help="an extra configuration (repeatable)",
    )
    ap.add_argument("--time-scale", type=float, default=Settings.time_scale)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state dirs")
    ap.add_argument(
        "--gauges-every",
        type=float,
        default=0.0,
        metavar="WALL_S",
        help="also read each Ready replica's waiting/running gauges this often (0: off)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every configuration; the report adds each figure's median",
    )
    ap.add_argument(
        "--shorten", type=float, default=1.0, help="multiply the phases' durations (smoke runs)"
    )
    ap.add_argument(
        "--load",
        choices=("burst", "seed"),
        default="burst",
        help="burst: the step burst; seed: the seed's hey -z 5m -c 5 with its body",
    )
    ap.add_argument(
        "--summarize",
        type=Path,
        metavar="RESULTS_JSON",
        help="run nothing: print the table of a results file (and rewrite its summary)",
    )
    args = ap.parse_args()
    if args.summarize is not None:
        report(json.loads(args.summarize.read_text()), args.summarize)
        return 0
    global PHASES, LOAD
    LOAD = args.load
    if LOAD == "seed":
        PHASES = SEED_PHASES
    PHASES = tuple(
        Phase(p.name, p.rate, p.duration_s * args.shorten, p.seed, p.concurrency) for p in PHASES
    )
    if args.repeat < 1:
        ap.error(f"--repeat: {args.repeat} is not a number of rounds; expected 1 or more")
    s = Settings(time_scale=args.time_scale)
    chosen: dict[str, Config] = {}
    for name in filter(None, args.configs.split(",")):
        if name not in CONFIGS:
            ap.error(f"--configs: unknown {name!r}; expected some of {', '.join(CONFIGS)}")
        chosen[name] = CONFIGS[name]
    for spec in args.config:
        name, _, rest = spec.partition("=")
        rest, _, low = rest.partition("/")
        try:
            chosen[name] = Config(
                [(m.rpartition(":")[0], float(m.rpartition(":")[2])) for m in rest.split(",")],
                min_replicas=int(low) if low else 1,
            )
        except ValueError:
            ap.error(f"--config: {spec!r} is not NAME=METRIC:TARGET[,METRIC:TARGET][/MIN]")
    runs = []
    started = time.monotonic()
    # Rounds interleave the configurations, so a slow stretch of the machine spreads over all.
    for rnd, (name, config) in itertools.product(range(1, args.repeat + 1), chosen.items()):
        run = Run(name, config, rnd)
        t = time.monotonic()
        print(f"[{name} #{rnd}] running ...", file=sys.stderr, flush=True)
        run_config(run, s, args.keep_state, args.gauges_every)
        print(
            f"[{name} #{rnd}] done in {time.monotonic() - t:.0f} s wall",
            file=sys.stderr,
            flush=True,
        )
        runs.append(run)
    doc = {
        "settings": asdict(s),
        "phases": [asdict(p) for p in PHASES],
        "wall_s": time.monotonic() - started,
        "runs": [
            {
                "config": r.name,
                "round": r.round,
                "metrics": r.config.metrics,
                "min_replicas": r.config.min_replicas,
                "autoscaling": r.config.autoscaling,
                "error": r.error,
                "load_start_epoch": r.load_start_epoch,
                "samples": r.samples,
                **({"gauges": r.gauges} if r.gauges else {}),
                "cost": r.cost,
                "events": [
                    {**e, "t_s": (e["firstTimestamp"] - r.load_start_epoch) / s.time_scale}
                    for e in r.events
                ],
                "bench": {
                    k: {"summary": v["summary"], "llm": v["llm"], "errors": v["errors"]}
                    for k, v in r.phases.items()
                },
            }
            for r in runs
        ],
    }
    report(doc, args.out)
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
