"""State a restart needs survives a real SIGKILL of the control plane: GPU indices of
adopted replicas, the restart count of a replica whose process died meanwhile, and the
HPA's stabilization window."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tierserve import testing
from tierserve.runtime.local.procfs import read_environ
from tierserve.testing import control_plane, wait_until

pytestmark = pytest.mark.slow

# A machine with two real NVIDIA GPUs, as far as the control plane can tell.
FAKE_PYNVML = textwrap.dedent(
    """
    from types import SimpleNamespace

    class NVMLError(Exception):
        pass

    def nvmlInit(): pass
    def nvmlShutdown(): pass
    def nvmlDeviceGetCount(): return 2
    def nvmlDeviceGetHandleByIndex(i): return i
    def nvmlDeviceGetName(h): return "NVIDIA H100 80GB HBM3"
    def nvmlDeviceGetUUID(h): return f"GPU-{h:08d}"
    def nvmlDeviceGetMemoryInfo(h): return SimpleNamespace(total=80 << 30, used=0)
    def nvmlDeviceGetUtilizationRates(h): return SimpleNamespace(gpu=0, memory=0)
    def nvmlDeviceGetProcessUtilization(h, last): raise NVMLError("Not Found")
    def nvmlDeviceGetComputeRunningProcesses(h): return []
    """
)

CLUSTER = """\
apiVersion: tierserve.io/v1alpha1
kind: Node
metadata: {name: gpu001}
spec:
  gpu: {model: H100-80G, emulated: false}
status:
  capacity: {nvidia.com/gpu: "2", cpu: "16", memory: 64Gi, pods: "110"}
---
apiVersion: tierserve.io/v1alpha1
kind: Node
metadata: {name: virtual-kubelet-cn-hangzhou-b}
spec:
  virtual: {coldStartSeconds: 1, pricePerGpuHour: 3.6}
status:
  capacity: {nvidia.com/gpu: "8", cpu: "64", memory: 512Gi, pods: "100"}
"""

SERVICE = """\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: real}}
spec:
  gpus: 1
  replicas: {replicas}
  command: "{python} {script} --port {{port}}"
"""


class Cli(testing.Cli):
    def ready(self) -> list[dict[str, Any]]:
        return [p for p in self.pods() if p["status"]["phase"] == "Ready"]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    fake = tmp_path / "fake-nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER)
    c = Cli(tmp_path / "state")
    c.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fake), c.env.get("PYTHONPATH")]))
    with control_plane(c, "--cluster", str(cluster)) as running:
        yield running


def sigkill_control_plane(cli: Cli) -> None:
    pid = cli.config()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), message="control plane gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def up_again(cli: Cli, tmp_path: Path) -> None:
    cli("up", "--detach", "--cluster", str(tmp_path / "cluster.yaml"), "--tick-s", "0.1",
        "--stop-grace-s", "2", "--drain-grace-s", "0")  # fmt: skip


def cuda(pod: dict[str, Any]) -> str:
    return read_environ(pod["status"]["pid"]).get("CUDA_VISIBLE_DEVICES", "")


def apply(cli: Cli, tmp_path: Path, script: str, replicas: int) -> None:
    svc = tmp_path / "svc.yaml"
    svc.write_text(SERVICE.format(replicas=replicas, python=sys.executable, script=script))
    cli("apply", "-f", str(svc))


def test_gpu_indices_and_restarts_survive_a_sigkill(
    cli: Cli, tmp_path: Path, server_script: str
) -> None:
    apply(cli, tmp_path, server_script, replicas=2)
    wait_until(lambda: len(cli.ready()) == 2, message="two replicas Ready")
    on_gpu = {cuda(p): p["metadata"]["name"] for p in cli.ready()}
    assert sorted(on_gpu) == ["0", "1"]
    # Leave the replica on GPU 1 alone: delete the one on GPU 0 (its replacement, the
    # newest, takes GPU 0 and is the first to go when the service scales in to 1).
    cli("delete", "pod", on_gpu["0"])
    wait_until(
        lambda: (
            len(cli.ready()) == 2
            and on_gpu["0"] not in {p["metadata"]["name"] for p in cli.ready()}
        ),
        message="the deleted replica replaced",
    )
    apply(cli, tmp_path, server_script, replicas=1)
    wait_until(lambda: [p["metadata"]["name"] for p in cli.pods()] == [on_gpu["1"]],
               message="only the replica on GPU 1 left")  # fmt: skip
    [alone] = cli.pods()

    # The control plane dies; the replica keeps running on GPU 1 and is adopted. A new
    # replica must get GPU 0, not the GPU the adopted process holds.
    sigkill_control_plane(cli)
    up_again(cli, tmp_path)
    apply(cli, tmp_path, server_script, replicas=2)
    wait_until(lambda: len(cli.ready()) == 2, message="two replicas Ready")
    by_name = {p["metadata"]["name"]: p for p in cli.ready()}
    assert by_name[alone["metadata"]["name"]]["status"]["pid"] == alone["status"]["pid"]
    assert cuda(by_name[alone["metadata"]["name"]]) == "1"
    assert sorted(cuda(p) for p in by_name.values()) == ["0", "1"]  # never two on one GPU

    # The control plane dies again, and that replica's process dies while it is down:
    # it is started again, counted as a restart and told in an event.
    sigkill_control_plane(cli)
    os.kill(alone["status"]["pid"], signal.SIGKILL)
    up_again(cli, tmp_path)
    wait_until(lambda: len(cli.ready()) == 2, message="both Ready again")
    again = {p["metadata"]["name"]: p for p in cli.ready()}
    restarted = again[alone["metadata"]["name"]]
    assert restarted["status"]["restarts"] == 1
    assert restarted["status"]["pid"] != alone["status"]["pid"]
    assert sorted(cuda(p) for p in again.values()) == ["0", "1"]
    described = cli("describe", "pod", alone["metadata"]["name"]).stdout
    assert "NotAdopted" in described, described


# Serves /health and a /metrics gauge read from a file, so the test sets the load.
LOAD_ENGINE = textwrap.dedent(
    """
    import http.server, pathlib, sys

    port, path = int(sys.argv[1]), pathlib.Path(sys.argv[2])

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                body = f"# TYPE test_load gauge\\ntest_load {path.read_text().strip()}\\n"
            elif self.path == "/health":
                body = ""
            else:
                return self.send_error(404)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def test_a_sigkill_neither_shortens_nor_restarts_the_stabilization_window(
    tmp_path: Path,
) -> None:
    window = 10.0
    flags = ("--hpa-period-s", "0.2", "--hpa-downscale-stabilization-s", f"{window:g}",
             "--metrics-interval-s", "0.1")  # fmt: skip
    engine, load = tmp_path / "engine.py", tmp_path / "load"
    engine.write_text(LOAD_ENGINE)
    load.write_text("100")
    with control_plane(Cli(tmp_path / "state"), *flags) as cli:
        cli(
            "serve", "kserve", "--name=svc", "--gpus=0", "--min-replicas=1", "--max-replicas=2",
            "--scale-metric=test_load", "--scale-target=50",
            f"{sys.executable} {engine} {{port}} {load}",
        )  # fmt: skip
        # load 100 per replica, target 50: ceil(1 * 100 / 50) = 2
        wait_until(lambda: len(cli.ready()) == 2, message="scaled out to 2")
        time.sleep(0.5)
        load.write_text("0")  # from now the raw recommendation is 1; the window holds 2
        low_since = time.monotonic()
        time.sleep(4)
        sigkill_control_plane(cli)
        cli("up", "--detach", "--tick-s", "0.1", "--stop-grace-s", "2", *flags)
        wait_until(lambda: len(cli.pods()) == 1, timeout_s=30, message="scaled in to 1")
        after = time.monotonic() - low_since
    # The window runs from the last high recommendation (just before low_since), across
    # the restart: not sooner (state kept), and not a whole window after the restart (a
    # forgetful controller would record the current 2 as a new recommendation at +4 s
    # and hold until +14 s or later).
    assert window - 0.5 <= after < window + 3, f"scaled in {after:.1f}s after the load fell"
