"""``tierserve demo``: the seed walkthrough end to end on the embedded default, narrated.

Every step runs the real ``tierserve`` command a user would type (shown as ``$ ...``)
against a fresh control plane in its own state directory: the local cluster, the seed's
PV/PVC and ResourcePolicy, ``serve kserve`` with the seed's exact flags and ``vllm serve``
command, the seed's curl, the seed's hey load (``tierserve bench``, shortened), the
scale-out to two replicas on the virtual node, the scale-in back to idc001 (cloud
first) and the cloud GPU-seconds and cost. ``--autoscaler slo`` runs it with the tier
planner: the seed's load stays on idc001 (no cloud rented), then a real burst goes to
the cloud and comes back. Delays are shortened by the flags below;
everything is stopped at the end unless ``--keep``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.rule import Rule

from tierserve.cli.dashboard import dashboard_url
from tierserve.errors import TierserveError
from tierserve.examples import SEED_COMMAND, seed_text
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.config import ENV_STATE_DIR, TOKEN_FILE, ClientConfig

SEED_REQUEST = (
    '{"model": "deepseek-r1", "messages": [{"role": "user", "content": "Say this is a test!"}],'
    ' "max_tokens": 512, "temperature": 0.7, "top_p": 0.9, "seed": 10}'
)
SEED_SERVE = [
    "serve",
    "kserve",
    "--name=deepseek",
    "--annotation=k8s.aliyun.com/eci-use-specs=ecs.gn6e-c12g1.3xlarge",
    "--annotation=k8s.aliyun.com/eci-vswitch=vsw-*********,vsw-*********",
    "--image=kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:v0.6.6",
    "--gpus=1",
    "--cpu=4",
    "--memory=12Gi",
    "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL",
    "--scale-target=50",
    "--min-replicas=1",
    "--max-replicas=3",
    "--data=llm-model:/model/DeepSeek-R1-Distill-Qwen-7B",
    SEED_COMMAND,
]
HOST = "deepseek-default.example.com"
VIRTUAL = "virtual-kubelet-cn-hangzhou-b"


def _bench_summary(report: str) -> str:
    """hey's Summary block and status-code distribution, from a ``tierserve bench`` report."""
    lines = report.strip().splitlines()
    keep: list[str] = []
    section = ""
    for line in lines:
        if line and not line.startswith(" "):
            section = line.rstrip(":")
        if section in ("Summary", "Status code distribution", "Error distribution"):
            keep.append(line)
    return "\n".join(keep)


class DemoError(Exception):
    """A step of the walkthrough did not happen in time."""


@dataclass
class DemoSettings:
    cold_start_s: float = 15.0
    time_scale: float = 0.1
    hpa_period_s: float = 5.0
    stabilization_s: float = 30.0
    load_timeout_s: float = 120.0
    step_timeout_s: float = 120.0
    keep: bool = False
    state_dir: Path | None = None
    autoscaler: str = "hpa"
    """``hpa``: the seed's SM-util HPA; ``slo``: the tier planner at the seed's SLO."""
    burst_s: float = 300.0
    """With ``slo``: the emulated seconds of the burst that follows the seed's load."""


PLANNER_FLAGS = ["--autoscaler=slo", "--slo=ttft=2s,tpot=100ms"]
BURST_RATE = 3.0
"""Emulated requests/s of the demo's burst: 1500-token prompts, 256 tokens out (one V100
carries ~2 of these at the SLO: the planner needs the cloud for the rest)."""


class Walkthrough:
    def __init__(self, settings: DemoSettings, console: Console) -> None:
        self.s = settings
        self.console = console
        self.root = settings.state_dir or Path(tempfile.mkdtemp(prefix="tierserve-demo-"))
        self.env = {**os.environ, ENV_STATE_DIR: str(self.root)}
        self.started = time.monotonic()

    # -- plumbing ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"\n[bold cyan][{elapsed:5.1f}s][/] {text}")

    def run(self, args: list[str], show: bool = True, check: bool = True) -> str:
        if show:
            self.console.print(f"[bold]$ tierserve {shlex.join(args)}[/]", highlight=False)
        result = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if show:
            self.console.print(result.stdout.rstrip(), markup=False, highlight=False)
        if check and result.returncode != 0:
            raise DemoError(f"tierserve {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def config(self) -> ClientConfig:
        return ClientConfig.load(self.root)

    def api(self, path: str) -> Any:
        return Client(self.config(), timeout_s=10).request("GET", path)

    def pods(self) -> list[tuple[str, str]]:
        """(node, phase) of every replica, sorted."""
        items = self.api("/api/v1/pods")["items"]
        return sorted((p["status"].get("nodeName") or "", p["status"]["phase"]) for p in items)

    def show_pods(self, last: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The replicas now, printed when they differ from ``last``."""
        now = self.pods()
        if now != last:
            summary = ", ".join(f"{p} on {n or '<none>'}" for n, p in now)
            self.console.print(f"  replicas: {summary}", highlight=False)
        return now

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.s.step_timeout_s)
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.5)
        raise DemoError(f"timed out waiting for {what}; replicas: {self.pods()}")

    # -- the walkthrough -----------------------------------------------------------------------

    def up(self) -> None:
        self.say("Start the embedded control plane: API, controllers, autoscaler, gateway.")
        self.run(
            [
                "up",
                "--detach",
                f"--virtual-cold-start-s={self.s.cold_start_s:g}",
                f"--hpa-period-s={self.s.hpa_period_s:g}",
                f"--hpa-downscale-stabilization-s={self.s.stabilization_s:g}",
                f"--emulator-time-scale={self.s.time_scale:g}",
                "--tick-s=0.2",
                "--metrics-interval-s=0.5",
            ]
        )
        self.say("The cluster mirrors the seed: one IDC node with a V100 and a virtual node.")
        self.run(["get", "nodes", "-o", "wide"])

    def storage_and_policy(self) -> None:
        manifests = self.root / "manifests"
        manifests.mkdir(exist_ok=True)
        for name in ("model-storage.yaml", "resourcepolicy.yaml"):
            (manifests / name).write_text(seed_text(name), encoding="utf-8")
        self.say("Step 1: the model volume (the seed's Secret + PV + PVC, verbatim).")
        self.run(["apply", "-f", str(manifests / "model-storage.yaml")])
        self.say(
            "Step 2: the seed's ResourcePolicy: IDC pool first (ecs), then the virtual node (eci)."
        )
        self.run(["apply", "-f", str(manifests / "resourcepolicy.yaml")])

    def deploy(self) -> None:
        if self.s.autoscaler == "slo":
            self.say(
                "Step 3: deploy DeepSeek-R1-Distill-Qwen-7B with the seed's arena flags, "
                "sized by the tier planner for the SLO (TTFT 2 s, TPOT 100 ms) instead of "
                "the SM-util HPA."
            )
            flags = [a for a in SEED_SERVE if not a.startswith("--scale-")]
            self.run([*flags[:-1], *PLANNER_FLAGS, flags[-1]])
        else:
            self.say("Step 3: deploy DeepSeek-R1-Distill-Qwen-7B with the seed's arena flags.")
            self.run(SEED_SERVE)
        self.wait("the first replica to be Ready", lambda: self.pods() == [("idc001", "Ready")])
        self.run(["serve", "get", "deepseek"])

    def curl(self) -> None:
        gateway = self.config().gateway_url
        self.say("Step 3b: the seed's request through the gateway, routed by Host header.")
        self.console.print(
            f'[bold]$ curl -H "Host: {HOST}" -H "Content-Type: '
            f'application/json" {gateway}/v1/chat/completions -d '
            f"'{SEED_REQUEST}'[/]",
            highlight=False,
        )
        req = urllib.request.Request(
            gateway + "/v1/chat/completions",
            data=SEED_REQUEST.encode(),
            method="POST",
            headers={"Host": HOST, "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=60) as resp:
            body = json.loads(resp.read())
        content = body["choices"][0]["message"]["content"]
        body["choices"][0]["message"]["content"] = content[:120] + "..."
        self.console.print(json.dumps(body), markup=False, highlight=False)

    def load(self) -> None:
        gateway = self.config().gateway_url
        args = [
            "bench",
            "-z",
            f"{self.s.load_timeout_s:g}s",
            "-c",
            "5",
            "-m",
            "POST",
            "-host",
            HOST,
            "-H",
            "Content-Type: application/json",
            "-d",
            SEED_REQUEST,
            "--no-progress",
            f"{gateway}/v1/chat/completions",
        ]
        self.say(
            "Step 4: the seed's load (hey -c 5, here `tierserve bench`) drives SM "
            "utilisation over the 50 % target."
        )
        self.console.print(f"[bold]$ tierserve {shlex.join(args)} &[/]", highlight=False)
        bench = subprocess.Popen(
            [sys.executable, "-m", "tierserve.cli.main", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        want = [("idc001", "Ready"), (VIRTUAL, "Ready"), (VIRTUAL, "Ready")]
        try:
            last: list[tuple[str, str]] = []
            deadline = time.monotonic() + self.s.load_timeout_s
            while time.monotonic() < deadline and bench.poll() is None:
                now = last = self.show_pods(last)
                if now == want:
                    break
                time.sleep(0.5)
            if last != want:
                raise DemoError(f"the load did not scale deepseek out to {want}: {last}")
            self.say("Scaled out: one replica on idc001, two on the virtual node.")
            self.run(["serve", "get", "deepseek", "-o", "wide"])
        finally:
            if bench.poll() is None:
                bench.send_signal(signal.SIGINT)  # stops the run; bench prints its report
            out, _ = bench.communicate(timeout=60)
        self.say("Load stopped. What the load tool saw:")
        self.console.print(_bench_summary(out), markup=False, highlight=False)

    def scale_in(self) -> None:
        self.say(
            f"Step 5: load gone; after the {self.s.stabilization_s:g}s stabilization "
            "window the autoscaler scales in, cloud replicas first."
        )
        self.wait(
            "scale-in back to idc001",
            lambda: self.pods() == [("idc001", "Ready")],
            timeout_s=self.s.stabilization_s + self.s.step_timeout_s,
        )
        self.run(["serve", "get", "deepseek"])
        events = self.api("/api/v1/events?resource=inferenceservices&name=deepseek")["items"]
        self.console.print("  Autoscaler and service events:", highlight=False)
        for e in events:
            self.console.print(
                f"    {e['reason']:<18} {e['message']}", markup=False, highlight=False
            )

    def cost(self) -> None:
        cost = self.api("/api/v1/cost")["services"].get("default/deepseek", {})
        gpu_s = cost.get("gpuSeconds", {})
        self.say("Cost of the burst: only the virtual node's GPU-seconds are billed.")
        self.console.print(
            f"  cloud GPU-seconds: {gpu_s.get('cloud', 0.0):.1f}   IDC GPU-seconds: "
            f"{gpu_s.get('idc', 0.0):.1f}   cloud cost: {cost.get('cloudCost', 0.0):.4f}",
            highlight=False,
        )

    def down(self) -> None:
        url = ""
        with contextlib.suppress(TierserveError, OSError, ValueError):
            url = dashboard_url(self.config())
        if self.s.keep:
            self.say(
                f"--keep: still running (state {self.root}); stop with "
                f"`tierserve down --state-dir {self.root}`."
            )
            if url:
                self.console.print(
                    f"  Dashboard: {url}  (sign in with the token in {self.root / TOKEN_FILE}; "
                    f"`tierserve top --state-dir {self.root}` shows it in the terminal)",
                    highlight=False,
                )
            return
        if url:
            self.console.print(
                f"  Dashboard: {url}  (run the demo with --keep to look at it afterwards)",
                highlight=False,
            )
        self.run(["down"], check=False)

    def seed_load_with_planner(self) -> None:
        """The seed's load under the tier planner: one V100 carries it within the SLO."""
        gateway = self.config().gateway_url
        seconds = max(10.0, self.s.burst_s * self.s.time_scale)
        args = [
            "bench", "-z", f"{seconds:g}s", "-c", "5", "-m", "POST", "-host", HOST,
            "-H", "Content-Type: application/json", "-d", SEED_REQUEST, "--no-progress",
            f"{gateway}/v1/chat/completions",
        ]  # fmt: skip
        self.say(
            "Step 4: the seed's load (hey -c 5, here `tierserve bench`). The tier planner "
            "compares it with what one replica carries at the SLO for this token mix "
            "(an 11-token prompt: a V100 batches five streams far inside TTFT 2 s / TPOT "
            "100 ms), so it rents no cloud GPU — where the SM-util HPA goes to 3."
        )
        out = self.run(args)
        self.console.print(_bench_summary(out), markup=False, highlight=False)
        if self.pods() != [("idc001", "Ready")]:
            raise DemoError(f"the planner rented capacity for the seed's load: {self.pods()}")
        self.say("Still one replica, on idc001:")
        self.run(["serve", "get", "deepseek"])

    def burst(self) -> None:
        """A burst the IDC cannot carry: the planner rents the cloud for it, then gives it
        back first."""
        gateway = self.config().gateway_url
        body = self.root / "burst.json"
        words = " ".join(["the quick brown fox jumps over a lazy dog"] * 166)
        body.write_text(
            json.dumps(
                {
                    "model": "deepseek-r1",
                    "messages": [{"role": "user", "content": f"Summarise: {words}"}],
                    "max_tokens": 256,
                }
            ),
            encoding="utf-8",
        )
        rate = BURST_RATE / self.s.time_scale
        seconds = self.s.burst_s * self.s.time_scale
        args = [
            "bench", "--stream", "--rate", f"{rate:g}", "--seed", "12", "-z", f"{seconds:g}s",
            "-c", "1000", "-m", "POST", "-host", HOST, "-H", "Content-Type: application/json",
            "-D", str(body), "--no-progress", "--slo", "ttft=2s,tpot=100ms",
            f"{gateway}/v1/chat/completions",
        ]  # fmt: skip
        self.say(
            f"Step 5: a real burst: {BURST_RATE:g} req/s of 1500-token prompts (RAG-shaped; "
            "prefill is what saturates a V100), more than one replica carries at the SLO. "
            "The planner sizes for it — IDC first, the cloud for the rest — and says why."
        )
        self.console.print(f"[bold]$ tierserve {shlex.join(args)} &[/]", highlight=False)
        bench = subprocess.Popen(
            [sys.executable, "-m", "tierserve.cli.main", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        last: list[tuple[str, str]] = []
        while bench.poll() is None:
            last = self.show_pods(last)
            time.sleep(0.5)
        out, _ = bench.communicate(timeout=60)
        self.console.print(_bench_summary(out), markup=False, highlight=False)
        self.say("The burst is over: the planner gives the cloud back first.")
        self.wait(
            "the cloud to be given back",
            lambda: self.pods() == [("idc001", "Ready")],
            timeout_s=self.s.step_timeout_s,
        )
        events = self.api("/api/v1/events?resource=inferenceservices&name=deepseek")["items"]
        self.console.print("  The planner's decisions:", highlight=False)
        for e in events:
            if e["reason"] in ("SuccessfulRescale", "BudgetBlocked", "Rebalance"):
                self.console.print(
                    f"    {e['reason']:<18} {e['message']}", markup=False, highlight=False
                )

    def run_all(self) -> None:
        self.console.print(Rule("tierserve demo: IDC first, cloud on overflow, cloud back first"))
        try:
            self.up()
            self.storage_and_policy()
            self.deploy()
            self.curl()
            if self.s.autoscaler == "slo":
                self.seed_load_with_planner()
                self.burst()
            else:
                self.load()
                self.scale_in()
            self.cost()
            self.say("Done.")
        finally:
            self.down()  # the last lines: where the dashboard is (and with --keep, stays)


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        cold_start_s: float = typer.Option(15.0, min=0, help="Virtual node cold start."),
        time_scale: float = typer.Option(
            0.1, min=0.001, max=1.0, help="Emulated replicas run this much faster."
        ),
        hpa_period_s: float = typer.Option(5.0, min=0.1, help="Autoscaler period."),
        stabilization_s: float = typer.Option(
            30.0, min=0, help="Scale-down stabilization window (Kubernetes: 300 s)."
        ),
        step_timeout_s: float = typer.Option(120.0, min=1, help="Give up on a step after."),
        keep: bool = typer.Option(False, "--keep", help="Leave the control plane running."),
        autoscaler: str = typer.Option(
            "hpa",
            "--autoscaler",
            help="hpa: the seed's SM-util HPA; slo: the tier planner (the seed's load, then "
            "a real burst).",
        ),
        state_dir: Path | None = typer.Option(
            None, "--state-dir", help="State directory (default: a new temporary one)."
        ),
    ) -> None:
        """Run the seed walkthrough end to end on this machine, narrated (~2-3 minutes)."""
        if autoscaler not in ("hpa", "slo"):
            typer.echo(f"error: --autoscaler: {autoscaler!r} is not one of hpa, slo", err=True)
            raise typer.Exit(1)
        settings = DemoSettings(
            autoscaler=autoscaler,
            cold_start_s=cold_start_s,
            time_scale=time_scale,
            hpa_period_s=hpa_period_s,
            stabilization_s=stabilization_s,
            load_timeout_s=step_timeout_s,
            step_timeout_s=step_timeout_s,
            keep=keep,
            state_dir=state_dir,
        )
        try:
            Walkthrough(settings, Console(highlight=False, soft_wrap=True)).run_all()
        except DemoError as exc:
            typer.echo(f"error: demo: {exc}", err=True)
            raise typer.Exit(1) from None
