"""Moving work back to the IDC on the real local runtime, under load: make before break.

The IDC node's one GPU is held by another service, so the seed service's replica runs on
the virtual node. ``hey`` keeps the seed's requests coming through the gateway. The other
service is deleted: the autoscaler (``rebalance: true`` on an HPA-scaled service) starts a
replacement on the IDC node, waits until it is Ready, drains the cloud replica and deletes
it. Not one request fails; the cloud replica is gone and the IDC one serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.examples import seed_text
from tierserve.testing import control_plane, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("hey") is None, reason="needs hey (apt: hey)"),
]

ENGINE_FLAGS = "--time-scale 0.01"
COMMAND = (
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code "
    f"--served-model-name deepseek-r1 --max-model-len 32768 {ENGINE_FLAGS}"
)
BODY = (
    '{"model": "deepseek-r1", "messages": [{"role": "user", "content": "Say this is a test!"}],'
    ' "max_tokens": 64}'
)


def service(name: str, extra: str = "") -> str:
    return f"""\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: {name}}}
spec:
  gpus: 1
  cpu: "4"
  memory: 12Gi
  replicas: 1
  command: "{COMMAND}"
{extra}"""


# The seed service on the HPA, never above 1 replica, with moving back switched on (it is
# off by default for the HPA, as on Kubernetes): only the move changes where it runs.
DEEPSEEK = service(
    "deepseek",
    """\
  data: ["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"]
  scaleMetric: DCGM_CUSTOM_PROCESS_SM_UTIL
  scaleTarget: 50
  minReplicas: 1
  maxReplicas: 1
  autoscaling: {policy: hpa, rebalance: true}
""",
)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    # the product's drain: a replica being removed finishes its requests (the fixture's
    # default, 0, stops it at once)
    flags = ("--hpa-period-s", "0.5", "--drain-grace-s", "30")
    with control_plane(testing.Cli(tmp_path / "state"), *flags) as c:
        yield c


def where(cli: testing.Cli, service: str) -> list[tuple[str, str]]:
    return sorted(
        (p["status"].get("nodeName", ""), p["status"]["phase"])
        for p in cli.pods()
        if p["metadata"]["name"].startswith(f"{service}-")
    )


def test_a_cloud_replica_moves_back_to_the_idc_without_failing_a_request(
    cli: testing.Cli, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml"))
    cli("apply", "-f", str(seed))
    (tmp_path / "filler.yaml").write_text(service("filler"))
    cli("apply", "-f", str(tmp_path / "filler.yaml"))
    wait_until(lambda: where(cli, "filler") == [("idc001", "Ready")], message="filler on IDC")
    (tmp_path / "deepseek.yaml").write_text(DEEPSEEK)
    cli("apply", "-f", str(tmp_path / "deepseek.yaml"))
    cloud = "virtual-kubelet-cn-hangzhou-b"
    wait_until(lambda: where(cli, "deepseek") == [(cloud, "Ready")], message="on the cloud")

    gateway = cli.config()["gateway_url"]
    hey = subprocess.Popen(
        ["hey", "-z", "12s", "-c", "2", "-m", "POST", "-host", "deepseek-default.example.com",
         "-H", "Content-Type: application/json", "-d", BODY, f"{gateway}/v1/chat/completions"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2.0)  # the load is on the cloud replica
    cli("delete", "inferenceservice", "filler")
    began = time.monotonic()
    wait_until(
        lambda: where(cli, "deepseek") == [("idc001", "Ready")],
        timeout_s=60,
        message="the replica moved back to idc001",
    )
    moved_s = time.monotonic() - began
    report, _ = hey.communicate(timeout=60)
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", report)
    assert codes and all(code == "200" for code, _ in codes), report
    assert "Error distribution" not in report, report
    events = cli("get", "events").stdout
    assert "Rebalance" in events, events
    print(f"moved back in {moved_s:.1f} s; hey: {', '.join(f'[{c}] {n}' for c, n in codes)}")
