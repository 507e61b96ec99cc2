"""``tierserve serve``: arena's flags and layouts (pure, against golden files) and one
end-to-end run of the seed's walkthrough through the arena-compatible commands."""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tierserve import testing
from tierserve.cli import arena, arena_layout, serve
from tierserve.errors import NotFoundError, ValidationError
from tierserve.examples import seed_text
from tierserve.testing import control_plane, wait_until

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TIERSERVE_UPDATE_GOLDEN") == "1"

# The seed's command, as the tutorial prints it (with the shell's line continuations).
SEED_COMMAND = r"""arena serve kserve \
    --name=deepseek \
    --annotation=k8s.aliyun.com/eci-use-specs=ecs.gn6e-c12g1.3xlarge \
    --annotation=k8s.aliyun.com/eci-vswitch=vsw-*********,vsw-********* \
    --image=kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:v0.6.6 \
    --gpus=1 \
    --cpu=4 \
    --memory=12Gi \
    --scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL \
    --scale-target=50 \
    --min-replicas=1 \
    --max-replicas=3 \
    --data=llm-model:/model/DeepSeek-R1-Distill-Qwen-7B \
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code --served-model-name deepseek-r1 --max-model-len 32768 --gpu-memory-utilization 0.95 --enforce-eager --dtype=half"
"""  # noqa: E501
VLLM = SEED_COMMAND.rsplit('"', 2)[1]


def seed_argv(extra_command: str = "") -> list[str]:
    """``serve kserve ...`` as tierserve takes it: the seed's words after ``arena serve``."""
    words = shlex.split(SEED_COMMAND.replace("\\\n", " "))
    assert words[:3] == ["arena", "serve", "kserve"]
    if extra_command:
        words[-1] += extra_command
    return words[2:]


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"differs from golden/{name}"


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """tierserve (test)"""

    serve.register(app)
    return app


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli_app(), ["serve", *args])


# -- builders ------------------------------------------------------------------------------

NOW = 1739861087.0  # 2025-02-18T06:44:47Z, the seed's chat completion "created"


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def service(
    name: str = "deepseek",
    replicas: int = 1,
    age_s: float = 60,
    gpus: int = 1,
    namespace: str = "default",
) -> dict[str, Any]:
    return {
        "apiVersion": "serving.tierserve.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "u-1",
            "creationTimestamp": rfc3339(NOW - age_s),
        },
        "spec": {
            "gpus": gpus,
            "replicas": replicas,
            "minReplicas": 1,
            "maxReplicas": 3,
            "scaleMetric": "DCGM_CUSTOM_PROCESS_SM_UTIL",
            "scaleTarget": 50.0,
            "command": VLLM,
        },
        "status": {"desiredReplicas": replicas, "availableReplicas": 0},
    }


def pod(
    suffix: str,
    phase: str,
    node: str | None,
    age_s: float,
    tier: str = "idc",
    gpu: str = "1",
    billed_s: float | None = None,
    service_name: str = "deepseek",
    restarts: int = 0,
) -> dict[str, Any]:
    created = NOW - age_s
    status: dict[str, Any] = {"phase": phase, "createdS": created, "restarts": restarts}
    if node is not None:
        status |= {"nodeName": node, "scheduledS": created}
    if billed_s is not None:
        status["billedUntilS"] = created + billed_s
    if phase == "Ready":
        status["readyS"] = created + 1
    return {
        "apiVersion": "tierserve.io/v1alpha1",
        "kind": "Replica",
        "metadata": {
            "name": f"{service_name}-predictor-6b9455f8c5-{suffix}",
            "namespace": "default",
            "labels": {"tierserve.io/tier": tier} if node else {},
        },
        "spec": {"service": service_name, "requests": {"nvidia.com/gpu": gpu}},
        "status": status,
    }


CLOUD = "virtual-kubelet-cn-hangzhou-h"


def seed_after_scale_out() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The seed's second ``arena serve get deepseek``: 18m old, scaled to 3 by the HPA."""
    return service(replicas=3, age_s=18 * 60 + 5), [
        pod("zmpg8", "Ready", CLOUD, 5 * 60 + 30, tier="cloud", billed_s=300),
        pod("wl5lc", "Ready", "idc001", 18 * 60 + 2),
        pod("dtzdv", "Starting", CLOUD, 75, tier="cloud", billed_s=72),
    ]


# -- arena's layouts against golden files ---------------------------------------------------


def test_get_reproduces_the_seeds_first_output() -> None:
    text = arena_layout.format_get(service(age_s=65), [pod("wl5lc", "Ready", "idc001", 62)], NOW)
    golden("serve_get_seed_1.txt", text)
    # The seed, flattened to one line by the page it came from:
    assert " ".join(text.split()) == (
        "Name: deepseek Namespace: default Type: KServe Version: 1 Desired: 1 Available: 1 "
        "Age: 1m Address: http://deepseek-default.example.com Port: :80 GPU: 1 Instances: "
        "NAME STATUS AGE READY RESTARTS GPU NODE ---- ------ --- ----- -------- --- ---- "
        "deepseek-predictor-6b9455f8c5-wl5lc Running 1m 1/1 0 1 idc001"
    )


def test_get_reproduces_the_seeds_output_after_scale_out() -> None:
    svc, pods = seed_after_scale_out()
    text = arena_layout.format_get(svc, pods, NOW)
    golden("serve_get_seed_3.txt", text)
    assert " ".join(text.split()) == (
        "Name: deepseek Namespace: default Type: KServe Version: 1 Desired: 3 Available: 2 "
        "Age: 18m Address: http://deepseek-default.example.com Port: :80 GPU: 3 Instances: "
        "NAME STATUS AGE READY RESTARTS GPU NODE ---- ------ --- ----- -------- --- ---- "
        "deepseek-predictor-6b9455f8c5-dtzdv Running 1m 0/1 0 1 virtual-kubelet-cn-hangzhou-h "
        "deepseek-predictor-6b9455f8c5-wl5lc Running 18m 1/1 0 1 idc001 "
        "deepseek-predictor-6b9455f8c5-zmpg8 Running 5m 1/1 0 1 virtual-kubelet-cn-hangzhou-h"
    )


def test_get_wide_adds_tier_and_cloud_cost() -> None:
    svc, pods = seed_after_scale_out()
    pods.append(pod("q2xkp", "Pending", None, 3))
    text = arena_layout.format_get(svc, pods, NOW, wide=True, prices={CLOUD: 2.5})
    golden("serve_get_wide.txt", text)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[-4:]}
    # 1 GPU x 300 s billed x 2.5 per GPU-hour = 0.2083; 72 s -> 0.05; IDC is not billed.
    assert rows["deepseek-predictor-6b9455f8c5-zmpg8"][-2:] == ["cloud", "0.2083"]
    assert rows["deepseek-predictor-6b9455f8c5-dtzdv"][-2:] == ["cloud", "0.0500"]
    assert rows["deepseek-predictor-6b9455f8c5-wl5lc"][-2:] == ["idc", "-"]
    assert rows["deepseek-predictor-6b9455f8c5-q2xkp"][1:2] + rows[
        "deepseek-predictor-6b9455f8c5-q2xkp"
    ][-3:] == ["Pending", "<none>", "<none>", "-"]


def test_get_without_gpus_leaves_the_gpu_line_and_column_out_like_arena() -> None:
    text = arena_layout.format_get(
        service(gpus=0), [pod("wl5lc", "Provisioning", CLOUD, 4, gpu="0")], NOW
    )
    golden("serve_get_no_gpu.txt", text)
    assert "GPU" not in text
    assert "ContainerCreating" in text


def test_list_and_list_wide() -> None:
    svc, pods = seed_after_scale_out()
    other = service("qwen", replicas=1, age_s=3600, gpus=0)
    pods.append(pod("abcde", "Ready", "idc001", 50, gpu="0", service_name="qwen"))
    golden("serve_list.txt", arena_layout.format_list([svc, other], pods, NOW))
    wide = arena_layout.format_list(
        [svc, other], pods, NOW, wide=True, costs={"default/deepseek": 0.25833}
    )
    golden("serve_list_wide.txt", wide)
    assert wide.splitlines()[1].split()[-2:] == ["cloud=2,idc=1", "0.2583"]
    every = arena_layout.format_list([svc], pods, NOW, all_namespaces=True)
    assert every.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]


def test_job_info_is_arenas_serving_job_info() -> None:
    svc, pods = seed_after_scale_out()
    info = arena_layout.job_info(svc, pods, NOW, {CLOUD: 2.5})
    assert {
        k: info[k]
        for k in (
            "name",
            "type",
            "version",
            "desiredInstances",
            "availableInstances",
            "ip",
            "requestGPUs",
        )
    } == {
        "name": "deepseek",
        "type": "KServe",
        "version": "1",
        "desiredInstances": 3,
        "availableInstances": 2,
        "ip": "http://deepseek-default.example.com",
        "requestGPUs": 3.0,
    }
    assert [i["readyContainers"] for i in info["instances"]] == [0, 1, 1]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (119, "1m"),
        (18 * 60 + 5, "18m"),
        (3600, "1h"),
        (86399, "23h"),
        (86400 * 7 + 5, "7d"),
        (86400 * 400, "1y"),
    ],
)
def test_arena_age_is_one_unit_rounded_down(seconds: float, text: str) -> None:
    assert arena_layout.arena_age(seconds) == text


@pytest.mark.parametrize(
    ("phase", "ready_s", "expected"),
    [
        ("Pending", None, ("Pending", 0)),
        ("Provisioning", None, ("ContainerCreating", 0)),
        ("Starting", None, ("Running", 0)),
        ("Ready", 1.0, ("Running", 1)),
        ("Terminating", 1.0, ("Terminating", 1)),
        ("Terminating", None, ("Terminating", 0)),
        ("Failed", None, ("Error", 0)),
    ],
)
def test_instance_status(phase: str, ready_s: float | None, expected: tuple[str, int]) -> None:
    p = pod("x", phase, "idc001", 1)
    p["status"]["readyS"] = ready_s
    assert arena_layout.instance_status(p) == expected


def test_tabwrite_pads_like_go_tabwriter() -> None:
    assert arena_layout.tabwrite([["A", "BB", "C"], ["aaa", "b", "c"]], indent="  ") == [
        "  A    BB  C",
        "  aaa  b   c",
    ]


def test_submit_lines() -> None:
    svc = arena.service_from_flags(
        arena.KServeFlags(
            name="deepseek", command=["vllm serve"], scale_metric="m", scale_target=50
        )
    )
    assert arena_layout.submit_lines(svc, 2.7) == [
        "horizontalpodautoscaler.autoscaling/deepseek-hpa created",
        "inferenceservice.serving.kserve.io/deepseek created",
        "INFO[0002] The Job deepseek has been submitted successfully",
        "INFO[0002] You can run `tierserve serve get deepseek --type kserve -n default` to "
        "check the job status",
    ]
    plain = arena.service_from_flags(arena.KServeFlags(name="x", command=["vllm serve"]))
    assert arena_layout.submit_lines(plain, 0)[0] == "inferenceservice.serving.kserve.io/x created"


# -- flags -> InferenceService --------------------------------------------------------------


def test_the_seeds_exact_command_line_dry_run() -> None:
    result = invoke(*seed_argv(), "--dry-run")
    assert result.exit_code == 0, result.output
    golden("serve_kserve_seed_dry_run.yaml", result.stdout)
    doc = yaml.safe_load(result.stdout)
    spec = doc["spec"]
    assert doc["metadata"] == {"name": "deepseek", "namespace": "default"}
    assert spec["annotations"] == {
        "k8s.aliyun.com/eci-use-specs": "ecs.gn6e-c12g1.3xlarge",
        "k8s.aliyun.com/eci-vswitch": "vsw-*********,vsw-*********",
    }
    assert spec["data"] == [
        {"name": "llm-model", "mountPath": "/model/DeepSeek-R1-Distill-Qwen-7B"}
    ]
    assert (spec["gpus"], spec["cpu"], spec["memory"]) == (1, "4", "12Gi")
    assert (spec["replicas"], spec["minReplicas"], spec["maxReplicas"]) == (1, 1, 3)
    assert (spec["scaleMetric"], spec["scaleTarget"]) == ("DCGM_CUSTOM_PROCESS_SM_UTIL", 50)
    assert spec["command"] == VLLM


def test_seed_flags_build_the_service_the_policy_selects() -> None:
    words = seed_argv()[1:]
    svc = arena.service_from_flags(
        arena.KServeFlags(
            name="deepseek",
            gpus=1,
            annotation=[w.split("=", 1)[1] for w in words if w.startswith("--annotation=")],
            command=[words[-1]],
        )
    )
    assert svc.replica_labels()["app"] == "isvc.deepseek-predictor"
    assert svc.host == "deepseek-default.example.com"
    assert svc.served_model_name() == "deepseek-r1"


def test_repeated_flags_accumulate_and_a_later_key_wins() -> None:
    svc = arena.service_from_flags(
        arena.KServeFlags(
            name="m",
            command=["vllm", "serve", "/m"],
            data=["a:/a", "b:/b"],
            data_dir=["/host/x:/x"],
            env=["A=1", "B=2", "A=3"],
            annotation=["k=v=w", "k2="],
            label=["team=ml"],
            selector=["pool=idc"],
            toleration=["all", "gpu=yes:NoSchedule", "spot:NoExecute,Exists"],
        )
    )
    spec = svc.spec
    assert [(d.name, d.mount_path) for d in spec.data] == [("a", "/a"), ("b", "/b")]
    assert [(d.host_path, d.mount_path) for d in spec.data_dir] == [("/host/x", "/x")]
    assert spec.env == {"A": "3", "B": "2"}
    assert spec.annotations == {"k": "v=w", "k2": ""}
    assert svc.replica_labels()["team"] == "ml"
    assert spec.node_selector == {"pool": "idc"}
    assert spec.command == "vllm serve /m"
    assert [(t.key, t.operator, t.value, t.effect) for t in spec.tolerations] == [
        ("", "Exists", "", ""),
        ("gpu", "Equal", "yes", "NoSchedule"),
        ("spot", "Exists", "", "NoExecute"),
    ]


def test_repeated_short_flags_on_the_command_line() -> None:
    result = invoke(
        "kserve",
        "--name",
        "m",
        "-e",
        "A=1",
        "-e",
        "B=2",
        "-a",
        "x=1",
        "-a",
        "y=2",
        "-l",
        "t=a",
        "--data",
        "a:/a",
        "--data",
        "b:/b",
        "--dry-run",
        "vllm",
        "serve",
        "/a",
    )
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.stdout)["spec"]
    assert spec["env"] == {"A": "1", "B": "2"}
    assert spec["annotations"] == {"x": "1", "y": "2"}
    assert len(spec["data"]) == 2 and spec["command"] == "vllm serve /a"


@pytest.mark.parametrize(
    ("flags", "replicas"),
    [
        ({}, 1),
        ({"min_replicas": 2, "max_replicas": 3}, 2),
        ({"replicas": 3, "max_replicas": 3}, 3),
        ({"min_replicas": 0}, 0),
    ],
)
def test_replicas_default_to_min_replicas(flags: dict[str, Any], replicas: int) -> None:
    svc = arena.service_from_flags(arena.KServeFlags(name="m", command=["x"], **flags))
    assert svc.spec.replicas == replicas


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--memory", "12GB"],
            "--memory: '12GB' is not a Kubernetes quantity such as 4, 500m, 12Gi or 1k",
        ),
        (
            ["--min-replicas", "5", "--max-replicas", "3"],
            "--min-replicas: 5 is greater than --max-replicas 3; expected --min-replicas <= "
            "--max-replicas",
        ),
        (
            ["--data", "llm-model"],
            "--data: 'llm-model' is not a --data value; expected <name>:<absolute mount path>",
        ),
        (["--data-dir", "/x"], "--data-dir: '/x' is not a --data-dir value; expected"),
        (["--gpus", "-1"], "--gpus: -1: input should be greater than or equal to 0"),
        (["--cpu", "four"], "--cpu: 'four' is not a Kubernetes quantity"),
        (["--env", "FOO"], "--env: 'FOO' is not KEY=VALUE"),
        (["--annotation", "novalue"], "--annotation: 'novalue' is not KEY=VALUE"),
        (["--selector", "=x"], "--selector: '=x' is not KEY=VALUE"),
        (["--label", "a=b c"], "--label: label a='b c': a label value must be"),
        (
            ["--image-pull-policy", "Sometimes"],
            "--image-pull-policy: 'Sometimes' is not one of Always, IfNotPresent, Never",
        ),
        (
            ["--toleration", "k=v:NoWay"],
            "--toleration: 'NoWay' is not one of NoSchedule, PreferNoSchedule, NoExecute",
        ),
        (
            ["--scale-metric", "DCGM_CUSTOM_PROCESS_SM_UTIL"],
            "--scale-metric: given without --scale-target; expected both or neither",
        ),
        (
            ["--scale-target", "50"],
            "--scale-target: given without --scale-metric; expected both or neither",
        ),
        (
            ["--replicas", "5", "--max-replicas", "3"],
            "--replicas: 5 is outside minReplicas..maxReplicas (..3)",
        ),
        (["--port", "70000"], "--port: 70000: input should be less than or equal to 65535"),
    ],
)
def test_bad_flags_name_the_flag_the_value_and_what_was_expected(
    args: list[str], expected: str
) -> None:
    result = invoke("kserve", "--name", "deepseek", *args, "vllm serve /m")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"error: {expected}" in result.stderr


def test_every_bad_flag_is_reported_at_once() -> None:
    result = invoke(
        "kserve",
        "--name",
        "deepseek",
        "--memory",
        "12GB",
        "--data",
        "llm-model",
        "--min-replicas",
        "5",
        "--max-replicas",
        "3",
        "x",
    )
    assert result.exit_code == 1
    flags = [line.split(":")[1].strip() for line in result.stderr.splitlines()]
    assert flags == ["--min-replicas", "--memory", "--data"]


def test_name_and_command_are_required() -> None:
    result = invoke("kserve", "--gpus", "1")
    assert result.exit_code == 1
    assert "error: --name: is required; e.g. --name=deepseek" in result.stderr
    assert "error: COMMAND: the command to serve with is required" in result.stderr
    bad = invoke("kserve", "--name", "Deep_Seek", "x")
    assert "error: --name: 'Deep_Seek' is not a valid name" in bad.stderr


def test_unknown_flag_and_other_serving_types_are_rejected() -> None:
    result = invoke("kserve", "--name", "x", "--gpu", "1", "cmd")
    assert result.exit_code == 2
    assert "--gpu" in result.output
    for command in (["get", "x"], ["list"], ["delete", "x"], ["logs", "x"]):
        other = invoke(*command, "--type", "tf")
        assert other.exit_code == 1
        assert (
            "error: --type: 'tf' (an arena type tierserve does not serve) is not "
            "supported; expected kserve"
        ) in other.stderr
    assert "did you mean 'kserve'" in invoke("get", "x", "--type", "kserv").stderr
    assert (
        "error: -o: 'table' is not one of wide, json, yaml"
        in invoke("get", "x", "-o", "table").stderr
    )
    assert "error: --version: '2' is not a version" in invoke("get", "x", "--version", "2").stderr


def test_update_applies_only_the_given_flags() -> None:
    current = service(replicas=1)
    current["spec"] |= {"env": {"A": "1"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]}
    changed = arena.apply_update(
        current,
        arena.UpdateFlags(
            name="deepseek",
            replicas=3,
            env=["B=2"],
            toleration=["gpu=yes:NoSchedule"],
            image="vllm:v2",
        ),
    )
    assert changed.spec.replicas == 3 and changed.spec.image == "vllm:v2"
    assert changed.spec.env == {"A": "1", "B": "2"}
    assert [(t.key, t.value) for t in changed.spec.tolerations] == [("gpu", "yes"), ("gpu", "")]
    assert changed.spec.min_replicas == 1 and changed.spec.scale_metric is not None
    # A new max below the replicas brings them down with it.
    lowered = arena.apply_update(service(replicas=3), arena.UpdateFlags(max_replicas=2))
    assert (lowered.spec.replicas, lowered.spec.max_replicas) == (2, 2)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"max_replicas": 0}, "--max-replicas: 0 is less than the service's minReplicas 1"),
        ({"min_replicas": 4}, "--min-replicas: 4 is greater than --max-replicas 3"),
        ({"replicas": 9}, "--replicas: 9 is outside minReplicas..maxReplicas (1..3)"),
        ({"memory": "lots"}, "--memory: 'lots' is not a Kubernetes quantity"),
    ],
)
def test_update_rejects_bad_values_by_flag(flags: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        arena.apply_update(service(), arena.UpdateFlags(name="deepseek", **flags))
    assert expected in str(info.value)


def test_update_needs_a_name_and_a_change() -> None:
    assert "error: --name: is required" in invoke("update", "kserve", "--replicas", "2").stderr
    result = invoke("update", "kserve", "--name", "deepseek")
    assert result.exit_code == 1
    assert "nothing to update: give at least one of --replicas" in result.stderr


def test_pick_instance_for_logs() -> None:
    svc, pods = seed_after_scale_out()
    assert arena_layout.pick_instance(svc, pods, None) == "deepseek-predictor-6b9455f8c5-wl5lc"
    starting = [p for p in pods if p["status"]["phase"] == "Starting"]
    assert arena_layout.pick_instance(svc, starting, None) == "deepseek-predictor-6b9455f8c5-dtzdv"
    assert arena_layout.pick_instance(svc, pods, "deepseek-predictor-6b9455f8c5-zmpg8").endswith(
        "zmpg8"
    )
    with pytest.raises(ValidationError, match="--instance: 'nope' is not an instance"):
        arena_layout.pick_instance(svc, pods, "nope")
    with pytest.raises(NotFoundError, match="no instances yet"):
        arena_layout.pick_instance(svc, [], None)
    for p in pods:
        p["status"]["phase"] = "Starting"
    with pytest.raises(ValidationError, match="none is Ready; choose one with -i"):
        arena_layout.pick_instance(svc, pods, None)


# -- end to end: the seed's walkthrough with arena's commands --------------------------------


class Cli(testing.Cli):
    def instances(self, name: str) -> list[list[str]]:
        """Rows of ``serve get NAME``'s Instances table: NAME STATUS AGE READY ... NODE."""
        lines = self("serve", "get", name).stdout.splitlines()
        dashes = next(i for i, line in enumerate(lines) if line.strip().startswith("----"))
        return [line.split() for line in lines[dashes + 1 :] if line.strip()]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    # The HPA would undo a manual `--replicas 3` at idle load; evaluate it once an hour.
    with control_plane(Cli(tmp_path / "state"), "--hpa-period-s", "3600") as c:
        yield c


def placed(rows: list[list[str]]) -> list[tuple[str, str, str]]:
    return sorted((r[-1], r[1], r[3]) for r in rows)  # (NODE, STATUS, READY)


@pytest.mark.slow
def test_seed_walkthrough_with_arena_commands(cli: Cli, tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml"))
    cli("apply", "-f", str(seed))

    # A bad flag creates nothing.
    bad = cli("serve", *seed_argv(), "--memory", "12GB", check=False)
    assert bad.returncode == 1 and "--memory: '12GB'" in bad.stderr
    assert "deepseek" not in cli("serve", "list").stdout

    submitted = cli("serve", *seed_argv(" --time-scale 0.01")).stdout.splitlines()
    assert submitted[:2] == [
        "horizontalpodautoscaler.autoscaling/deepseek-hpa created",
        "inferenceservice.serving.kserve.io/deepseek created",
    ]
    assert re.fullmatch(
        r"INFO\[\d{4}\] The Job deepseek has been submitted successfully", submitted[2]
    )
    assert submitted[3].endswith(
        "You can run `tierserve serve get deepseek --type kserve -n default` to check the job "
        "status"
    )
    again = cli("serve", *seed_argv(), check=False)
    assert again.returncode == 1 and "deepseek already exists" in again.stderr

    wait_until(
        lambda: placed(cli.instances("deepseek")) == [("idc001", "Running", "1/1")],
        timeout_s=60.0,
        message="one Running 1/1 instance on idc001",
    )
    shown = cli("serve", "get", "deepseek", "--type", "kserve").stdout
    assert "Desired:    1\nAvailable:  1\n" in shown and "GPU:        1\n" in shown

    updated = cli("serve", "update", "kserve", "--name", "deepseek", "--replicas", "3").stdout
    assert updated.strip().endswith(
        "The serving job deepseek with version 1 has been updated successfully"
    )
    cloud = "virtual-kubelet-cn-hangzhou-b"
    wait_until(
        lambda: (
            placed(cli.instances("deepseek"))
            == [("idc001", "Running", "1/1"), (cloud, "Running", "1/1"), (cloud, "Running", "1/1")]
        ),
        timeout_s=60.0,
        message="1 on idc001 + 2 on the virtual node",
    )
    wide = cli("serve", "get", "deepseek", "-o", "wide").stdout
    assert wide.count(" cloud ") == 2 and " idc " in wide
    listed = cli("serve", "list", "--type", "kserve").stdout.splitlines()
    assert listed[1].split()[:5] == ["deepseek", "KServe", "1", "3", "3"]
    assert cli("serve", "logs", "deepseek", "--tail", "5").stdout.strip()

    deleted = cli("serve", "delete", "deepseek").stdout.splitlines()
    assert deleted[0] == 'inferenceservice.serving.kserve.io "deepseek" deleted'
    assert deleted[1].endswith(
        "The serving job deepseek with version 1 has been deleted successfully"
    )
    wait_until(lambda: not cli.replica_pids(), timeout_s=60.0, message="replica processes stopped")
    gone = cli("serve", "get", "deepseek", check=False)
    assert gone.returncode == 1 and "Not found serving job deepseek" in gone.stderr
