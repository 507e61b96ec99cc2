"""The embedded control plane end to end: the real CLI, real processes, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tierserve import testing
from tierserve.examples import seed_text
from tierserve.testing import control_plane, seed_service_yaml, wait_until

pytestmark = pytest.mark.slow
ENGINE_FLAGS = "--time-scale 0.01"  # the emulated engine loads in a fraction of a second


class Cli(testing.Cli):
    def pods(self) -> list[dict[str, Any]]:
        """Replicas straight from the API (polled often; the CLI is tested elsewhere)."""
        config = self.config()
        items: list[dict[str, Any]] = json.loads(
            http(config["api_url"] + "/api/v1/pods", config["token"])
        )["items"]
        return items


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with control_plane(Cli(tmp_path / "state")) as c:
        yield c


def phases(cli: Cli) -> list[tuple[str, str]]:
    return sorted((p["status"].get("nodeName", ""), p["status"]["phase"]) for p in cli.pods())


def test_seed_walkthrough_on_the_local_runtime(cli: Cli, tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml"))
    svc = tmp_path / "svc.yaml"
    svc.write_text(seed_service_yaml(1, ENGINE_FLAGS))
    cli("apply", "-f", str(seed))
    assert cli("apply", "-f", str(svc)).stdout.strip() == (
        "inferenceservice.serving.tierserve.io/deepseek created"
    )
    wait_until(lambda: phases(cli) == [("idc001", "Ready")], message="one Ready on idc001")
    wide = cli("get", "pods", "-o", "wide").stdout
    assert "idc001" in wide and "1/1" in wide and "Ready" in wide

    # 1 -> 3: idc001 is full, so two land on the virtual node after its cold start.
    svc.write_text(seed_service_yaml(3, ENGINE_FLAGS))
    cli("apply", "-f", str(svc))
    wait_until(
        lambda: (
            phases(cli)
            == [
                ("idc001", "Ready"),
                ("virtual-kubelet-cn-hangzhou-b", "Ready"),
                ("virtual-kubelet-cn-hangzhou-b", "Ready"),
            ]
        ),
        message="1 on idc001 + 2 on the virtual node",
    )
    assert len(cli.replica_pids()) == 3

    # 3 -> 1: the cloud replicas go first.
    svc.write_text(seed_service_yaml(1, ENGINE_FLAGS))
    cli("apply", "-f", str(svc))
    wait_until(lambda: phases(cli) == [("idc001", "Ready")], message="back to idc001 only")
    wait_until(lambda: len(cli.replica_pids()) == 1, message="cloud processes stopped")

    described = cli("describe", "isvc", "deepseek").stdout
    assert "SuccessfulDelete" in described and "Cloud cost:" in described
    metrics = http(cli.config()["api_url"] + "/metrics", cli.config()["token"])
    assert 'tierserve_cloud_gpu_seconds_total{namespace="default",service="deepseek"}' in metrics
    assert "tierserve_cloud_cost_total" in metrics
    assert 'phase="Ready"' in metrics
    # The gateway's routes, as `tierserve gateway --routes-url` reads them: the one Ready
    # replica left, on idc001 (unit 0).
    routes = json.loads(http(cli.config()["api_url"] + "/api/v1/routes", cli.config()["token"]))
    (route,) = routes["services"]
    assert (route["name"], route["host"]) == ("deepseek", "deepseek-default.example.com")
    (backend,) = route["backends"]
    assert backend["replica"] == cli.pods()[0]["metadata"]["name"]
    assert (backend["unit"], backend["tier"], backend["ready"]) == (0, "idc", True)


def test_control_plane_crash_then_up_readopts_without_duplicates_or_orphans(
    cli: Cli, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        seed_text("model-storage.yaml")
        + "---\n"
        + seed_text("resourcepolicy.yaml")
        + "---\n"
        + seed_service_yaml(1, ENGINE_FLAGS)
    )
    cli("apply", "-f", str(seed))
    wait_until(lambda: phases(cli) == [("idc001", "Ready")], message="Ready")
    (before,) = cli.replica_pids()
    name = cli.pods()[0]["metadata"]["name"]

    os.kill(cli.config()["pid"], signal.SIGKILL)
    time.sleep(0.5)
    assert cli.replica_pids() == [before]  # the replica outlives its control plane
    cli("up", "--detach", "--tick-s", "0.1")
    wait_until(lambda: phases(cli) == [("idc001", "Ready")], message="Ready after re-up")
    time.sleep(1.0)  # a few controller ticks: nothing new may start
    assert cli.replica_pids() == [before]
    assert [p["metadata"]["name"] for p in cli.pods()] == [name]
    assert cli.pods()[0]["status"]["restarts"] == 0


def test_invalid_apply_changes_nothing_and_names_the_field(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text(seed_text("resourcepolicy.yaml"))
    cli("apply", "-f", str(good))
    before = cli("get", "rp", "deepseek", "-o", "json").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        seed_text("resourcepolicy.yaml").replace("resource: eci", "resource: ecx")
        + "---\n"
        + seed_service_yaml(1, ENGINE_FLAGS)
    )
    result = cli("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert "spec.units[1].resource: 'ecx' is not one of ecs, eci, acs, elastic" in result.stderr
    assert cli("get", "rp", "deepseek", "-o", "json").stdout == before
    assert "No resources found" in cli("get", "isvc").stderr  # the good document not applied


def test_api_needs_the_token(cli: Cli) -> None:
    url = cli.config()["api_url"] + "/api/v1/nodes"
    with pytest.raises(urllib.error.HTTPError) as info:
        http(url, None)
    assert info.value.code == 401
    assert "bearer token" in json.loads(info.value.read())["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as wrong:
        http(url, "not-the-token")
    assert wrong.value.code == 401
    assert "idc001" in http(url, cli.config()["token"])
    token_file = cli.root / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600


def http(url: str, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        body: bytes = resp.read()
    return body.decode()


def test_a_second_up_on_the_same_state_dir_is_refused_and_changes_nothing(cli: Cli) -> None:
    before = cli.config()
    again = cli("up", "--detach", check=False)
    assert again.returncode == 1
    assert f"a control plane (pid {before['pid']}) already runs" in again.stderr
    assert cli.config() == before  # the running one stays reachable
    assert "idc001" in cli("get", "nodes").stdout


def post(url: str, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) of a POST with a JSON body."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_hostile_input_is_refused_and_leaks_nothing(cli: Cli, tmp_path: Path) -> None:
    api, token = cli.config()["api_url"], cli.config()["token"]
    # A 400-byte YAML alias bomb: refused at once (it used to freeze the loop for a minute).
    lines = ["l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb = "\n".join(lines) + "\napiVersion: v1\nkind: Node\nmetadata: {name: *l7}\n"
    started = time.monotonic()
    status, answer = post(api + "/api/v1/apply", token, json.dumps({"documents": bomb}).encode())
    assert status == 400 and "alias bomb" in answer["error"]["message"]
    assert time.monotonic() - started < 5 and http(api + "/healthz", None) == "ok"
    # JSON nested too deeply: a 400, not a 500.
    status, answer = post(api + "/api/v1/apply", token, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and answer["error"]["reason"] == "Invalid"
    # Logs name replicas, not paths.
    with pytest.raises(urllib.error.HTTPError) as info:
        http(api + "/api/v1/logs/..%2F..%2F..%2Fetc/passwd", token)
    assert info.value.code == 400
    # A Secret's value is never printed, by the CLI nor through the API.
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: oss}\n"
        "stringData: {akSecret: 884213377120}\n"
    )
    result = cli("apply", "-f", str(secret), check=False)
    assert result.returncode == 1 and "884213377120" not in result.stderr
    assert "stringData.akSecret: (value not shown)" in result.stderr
    # A name whose derived label would be too long is refused at apply, naming the field.
    svc = tmp_path / "svc.yaml"
    svc.write_text(
        seed_service_yaml(1, ENGINE_FLAGS).replace("name: deepseek", "name: " + "d" * 49)
    )
    result = cli("apply", "-f", str(svc), check=False)
    assert result.returncode == 1 and "metadata.name: " in result.stderr
    assert "must be at most 48 so that the label app=isvc.<name>-predictor" in result.stderr
    # The store holds Secret values: it and its WAL/SHM files are private.
    good = tmp_path / "good.yaml"
    good.write_text(seed_text("model-storage.yaml"))
    cli("apply", "-f", str(good))
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert (cli.root / name).stat().st_mode & 0o777 == 0o600, name
