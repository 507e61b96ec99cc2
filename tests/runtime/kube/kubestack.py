"""Helpers for the Kubernetes tests: tierserve's processes on the testbed, and polling."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierserve.testing.kube import ControlPlane, free_port, issue_certificate, stop_group

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """tierserve on the testbed: extender + controller processes and a second scheduler."""

    plane: ControlPlane
    extender_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tls: bool = True
    """Serve the extender over HTTPS, verbs only for kube-scheduler's client certificate."""
    webhook_port: int = field(default_factory=free_port)
    """The pod-defaults admission webhook's port (with TLS)."""

    @property
    def pki(self) -> Path:
        return self.plane.root / "pki"

    @property
    def extender_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.extender_port}"

    def client_context(self, certificate: bool = False) -> ssl.SSLContext | None:
        """TLS to reach the extender (trusting the testbed CA), optionally with the
        scheduler's client certificate; None over plain HTTP."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.plane.ca))
        if certificate:
            ctx.load_cert_chain(
                self.pki / "scheduler-client.crt", self.pki / "scheduler-client.key"
            )
        return ctx

    def scheduler_tls(self) -> dict[str, str] | None:
        """The extender stanza's tlsConfig for kube-scheduler."""
        if not self.tls:
            return None
        return {
            "caFile": str(self.plane.ca),
            "certFile": str(self.pki / "scheduler-client.crt"),
            "keyFile": str(self.pki / "scheduler-client.key"),
        }

    def issue_certificates(self) -> None:
        if self.tls:
            issue_certificate(self.pki, "extender", "tierserve-extender", server=True)
            issue_certificate(self.pki, "scheduler-client", "tierserve-scheduler", server=False)

    @property
    def kubeconfig(self) -> str:
        return str(self.plane.kubeconfig)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.plane.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tierserve.cli.kube", "kube", *args,
             "--kubeconfig", self.kubeconfig],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def start_extender(self) -> None:
        args = ["extender", f"--listen=127.0.0.1:{self.extender_port}"]
        if self.tls:
            args += [
                f"--tls-cert={self.pki / 'extender.crt'}",
                f"--tls-key={self.pki / 'extender.key'}",
                f"--client-ca={self.plane.ca}",
                "--client-name=tierserve-scheduler",
                f"--webhook-listen=127.0.0.1:{self.webhook_port}",
            ]
        self._spawn("extender", args)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            proc = self.procs["extender"]
            if proc.poll() is not None:
                raise RuntimeError(self.log("extender"))
            with contextlib.suppress(OSError):
                url = f"{self.extender_url}/readyz"
                with urllib.request.urlopen(url, timeout=1, context=self.client_context()):
                    return
            time.sleep(0.2)
        raise RuntimeError("extender did not start:\n" + self.log("extender"))

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_group(proc)

    def log(self, name: str) -> str:
        return (self.plane.logs / f"{name}.log").read_text(errors="replace")[-4000:]


async def start_gateway(stack: Stack) -> tuple[asyncio.subprocess.Process, str]:
    """``tierserve gateway`` with Kubernetes discovery on the testbed: the process and its
    URL (from its "listening on" line). The caller stops it."""
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tierserve.cli.main", "gateway", "--port", "0",
        "--discovery", "kubernetes", "--kubeconfig", stack.kubeconfig,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert gateway.stdout is not None
    line = (await asyncio.wait_for(gateway.stdout.readline(), 30)).decode()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, line
    return gateway, match.group(1)


async def until(
    check: Callable[[], Awaitable[object]], timeout_s: float = 30.0, every_s: float = 0.2
) -> object:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s; last: {last!r}")


PODS = "/api/v1/namespaces/default/pods"


async def ready_pods(kube: Any, app: str) -> list[Any]:
    """The pods of ``app`` that are Ready and not being deleted."""
    pods = (await kube.get(PODS, {"labelSelector": f"app={app}"})).get("items") or []
    return [
        p for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or [])
    ]  # fmt: skip


def idc_first_policy(name: str, app: str, idc: dict[str, str], cloud: dict[str, str]) -> Any:
    """A ResourcePolicy for ``app``: the IDC nodes matching ``idc``, then the virtual
    nodes matching ``cloud`` (the node agent's, not the session's idle ones)."""
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": app},
            "units": [
                {"resource": "ecs", "nodeSelector": idc},
                {"resource": "eci", "nodeSelector": cloud},
            ],
        },
    }
