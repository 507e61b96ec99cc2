"""Command lines and environments for replicas: emulation, ports, data paths, GPUs."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tierserve.errors import NeverPossible, NotFoundError, RetryLater
from tierserve.examples import SEED_COMMAND
from tierserve.model.loader import load_documents
from tierserve.model.node import Node
from tierserve.model.service import InferenceService
from tierserve.model.storage import PersistentVolume, PersistentVolumeClaim
from tierserve.policy.devices import pick_gpus
from tierserve.runtime.local.command import (
    ReplicaContext,
    build_launch_spec,
    needs_shell,
    replica_dirs,
)
from tierserve.runtime.local.volumes import resolve_data_dirs

MOUNT = "llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"
LOCAL = "/srv/models/ds7b"
PY = sys.executable
EMULATE = [PY, "-m", "tierserve.cli.main", "engine", "emulate"]


def service(command: str, data: list[str] | None = None, **spec: Any) -> InferenceService:
    isvc: InferenceService = InferenceService.new(
        "deepseek", spec={"command": command, "data": data or [], **spec}
    )
    return isvc


def node(gpu: str | None = "A10-24G", emulated: bool = True) -> Node:
    spec = {"gpu": {"model": gpu, "emulated": emulated}} if gpu else {}
    built: Node = Node.new("idc001", spec=spec)
    return built


def ctx(**overrides: Any) -> ReplicaContext:
    fields: dict[str, Any] = {
        "namespace": "default",
        "name": "deepseek-predictor-abc12",
        "port": 41000,
        "cwd": "/state/replicas/default/deepseek-predictor-abc12",
        "log_path": "/state/logs/default/deepseek-predictor-abc12.log",
        "data_dirs": {"llm-model": LOCAL},
        "python": PY,
    }
    return ReplicaContext(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("command", "the_node", "argv"),
    [
        pytest.param(  # the seed's command on an emulated A10: same flags, the node's GPU
            SEED_COMMAND,
            node("A10-24G"),
            [
                *EMULATE,
                LOCAL,
                "--port",
                "41000",
                "--trust-remote-code",
                "--served-model-name",
                "deepseek-r1",
                "--max-model-len",
                "32768",
                "--gpu-memory-utilization",
                "0.95",
                "--enforce-eager",
                "--dtype=half",
                "--gpu",
                "A10-24G",
                "--host",
                "127.0.0.1",
            ],
            id="seed-emulated",
        ),
        pytest.param(  # no --served-model-name: keep the name vLLM would serve (the path)
            "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B",
            node("H100-80G"),
            [
                *EMULATE,
                LOCAL,
                "--served-model-name",
                "/model/DeepSeek-R1-Distill-Qwen-7B",
                "--gpu",
                "H100-80G",
                "--port",
                "41000",
                "--host",
                "127.0.0.1",
            ],
            id="served-name-kept",
        ),
        pytest.param(  # real GPUs: vLLM itself runs
            "/opt/venv/bin/vllm serve /model/DeepSeek-R1-Distill-Qwen-7B/ --port=8080 "
            "--host 0.0.0.0",
            node("A100-80G", emulated=False),
            [
                "/opt/venv/bin/vllm",
                "serve",
                f"{LOCAL}/",
                "--port=41000",
                "--host",
                "0.0.0.0",
                "--served-model-name",
                "/model/DeepSeek-R1-Distill-Qwen-7B/",
            ],
            id="real-gpu-port-equals",
        ),
        pytest.param(  # {port} placeholder; a CPU engine; flag=value path rewrite
            "python -m llama_cpp.server --model=/model/DeepSeek-R1-Distill-Qwen-7B/q4.gguf "
            "--port {port}",
            node(None),
            ["python", "-m", "llama_cpp.server", f"--model={LOCAL}/q4.gguf", "--port", "41000"],
            id="cpu-placeholder",
        ),
        pytest.param(  # a plain CPU command is untouched: no port or host added
            "python -m llama_cpp.server --model /data/q4.gguf --n_ctx 4096",
            node(None),
            ["python", "-m", "llama_cpp.server", "--model", "/data/q4.gguf", "--n_ctx", "4096"],
            id="cpu-untouched",
        ),
        pytest.param(  # only whole path components under the mount are rewritten
            "python serve.py /model/DeepSeek-R1-Distill-Qwen-7Bx "
            "/model/DeepSeek-R1-Distill-Qwen-7B",
            node(None),
            ["python", "serve.py", "/model/DeepSeek-R1-Distill-Qwen-7Bx", LOCAL],
            id="path-boundary",
        ),
        pytest.param(  # vLLM's module entry point on a CPU node: port and host still set
            "python3 -m vllm.entrypoints.openai.api_server --model m",
            node(None),
            [
                "python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                "m",
                "--port",
                "41000",
                "--host",
                "127.0.0.1",
            ],
            id="vllm-module",
        ),
        pytest.param(  # the emulator named directly gets the node's GPU, port and host
            "tierserve engine emulate /model/DeepSeek-R1-Distill-Qwen-7B --served-model-name m",
            node("V100-32G"),
            [
                "tierserve",
                "engine",
                "emulate",
                LOCAL,
                "--served-model-name",
                "m",
                "--gpu",
                "V100-32G",
                "--port",
                "41000",
                "--host",
                "127.0.0.1",
            ],
            id="emulator-direct",
        ),
    ],
)
def test_argv(command: str, the_node: Node, argv: list[str]) -> None:
    spec = build_launch_spec(service(command, [MOUNT]), the_node, ctx())
    assert list(spec.argv) == argv
    assert spec.port == 41000


def test_env_markers_data_dirs_and_rewritten_values() -> None:
    env = {"HF_HOME": "/model/DeepSeek-R1-Distill-Qwen-7B/cache", "URL": "http://x:{port}"}
    spec = build_launch_spec(service(SEED_COMMAND, [MOUNT], env=env), node(), ctx())
    assert spec.env["HF_HOME"] == f"{LOCAL}/cache"
    assert spec.env["URL"] == "http://x:41000"
    assert spec.env["TIERSERVE_DATA_0"] == LOCAL
    assert spec.env["TIERSERVE_REPLICA"] == "default/deepseek-predictor-abc12"
    assert spec.replica == "default/deepseek-predictor-abc12"
    assert spec.env["TIERSERVE_PORT"] == "41000"
    assert spec.env["TIERSERVE_POD"] == "deepseek-predictor-abc12"
    assert spec.env["PYTHONUNBUFFERED"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in spec.env  # emulated GPUs need none
    assert (spec.cwd, spec.log_path) == (ctx().cwd, ctx().log_path)


def test_real_gpus_get_cuda_visible_devices() -> None:
    spec = build_launch_spec(
        service(SEED_COMMAND, [MOUNT], gpus=2),
        node("A100-80G", emulated=False),
        ctx(gpu_indices=(1, 3)),
    )
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert spec.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # CUDA's indices = NVML's
    assert spec.argv[:2] == ("vllm", "serve")


def test_shell_command_runs_under_the_services_shell() -> None:
    command = "cd /model/DeepSeek-R1-Distill-Qwen-7B && exec python serve.py --port {port}"
    spec = build_launch_spec(service(command, [MOUNT]), node(), ctx())
    assert spec.argv == ("sh", "-c", f"cd {LOCAL} && exec python serve.py --port 41000")


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        ("vllm serve m --port 1", False),
        ("python -c 'print(1); print(2)'", False),  # quoted ';' is an argument
        ("a && b", True),
        ("a | b", True),
        ("engine > out.log", True),
        ("serve $MODEL", True),
        ("HF_HOME=/x vllm serve m", True),
    ],
)
def test_needs_shell(command: str, shell: bool) -> None:
    assert needs_shell(command) is shell


def test_a_claim_without_a_directory_is_named() -> None:
    with pytest.raises(NotFoundError, match=r"spec.data\[0\].name: claim 'llm-model'"):
        build_launch_spec(service(SEED_COMMAND, [MOUNT]), node(), ctx(data_dirs={}))


def test_replica_dirs() -> None:
    assert replica_dirs("/s", "default", "r1") == (
        "/s/replicas/default/r1",
        "/s/logs/default/r1.log",
    )


# -- volumes ----------------------------------------------------------------------------


def seed_storage() -> tuple[PersistentVolume, PersistentVolumeClaim]:
    """The seed's OSS volume (another name than its claim), given a local directory."""
    pv: PersistentVolume = PersistentVolume.new(
        "oss-pv",
        metadata={
            "labels": {"alicloud-pvname": "llm-model"},
            "annotations": {"tierserve.io/local-path": "/srv/models"},
        },
        spec={"csi": {"driver": "ossplugin.csi.alibabacloud.com", "volumeHandle": "x"}},
    )
    pvc: PersistentVolumeClaim = PersistentVolumeClaim.new(
        "llm-model", spec={"selector": {"matchLabels": {"alicloud-pvname": "llm-model"}}}
    )
    return pv, pvc


def test_claim_binds_by_selector_to_the_seeds_volume() -> None:
    pv, pvc = seed_storage()
    dirs = resolve_data_dirs(service(SEED_COMMAND, [MOUNT]), [pvc], [pv])
    assert dirs == {"llm-model": "/srv/models"}


def test_claim_binds_by_volume_name_or_pv_name() -> None:
    pv = PersistentVolume.new("models", spec={"hostPath": {"path": "/data/models"}})
    pvc = PersistentVolumeClaim.new("llm-model", spec={"volumeName": "models"})
    assert resolve_data_dirs(service(SEED_COMMAND, [MOUNT]), [pvc], [pv]) == {
        "llm-model": "/data/models"
    }
    same = PersistentVolume.new("llm-model", spec={"local": {"path": "/data/x"}})
    assert resolve_data_dirs(service(SEED_COMMAND, [MOUNT]), [], [same]) == {"llm-model": "/data/x"}


def test_the_seed_yaml_needs_a_local_path() -> None:
    from importlib.resources import files

    text = files("tierserve.examples").joinpath("seed/model-storage.yaml").read_text()
    objects = load_documents(text)
    pvs = [o for o in objects if isinstance(o, PersistentVolume)]
    pvcs = [o for o in objects if isinstance(o, PersistentVolumeClaim)]
    with pytest.raises(NotFoundError, match=r"has no local directory.*tierserve\.io/local-path"):
        resolve_data_dirs(service(SEED_COMMAND, [MOUNT]), pvcs, pvs)


def test_an_unbound_claim_is_named() -> None:
    with pytest.raises(NotFoundError, match=r"spec.data\[0\].name: claim 'llm-model' is bound"):
        resolve_data_dirs(service(SEED_COMMAND, [MOUNT]), [], [])


# -- GPUs -------------------------------------------------------------------------------


def test_pick_gpus_lowest_free_first() -> None:
    assert pick_gpus(range(4), in_use={0, 2}, wanted=2) == (1, 3)
    with pytest.raises(RetryLater, match="1 of 4 are free"):
        pick_gpus(range(4), in_use={0, 1, 2}, wanted=2)
    with pytest.raises(NeverPossible, match="the node has 4"):
        pick_gpus(range(4), in_use=set(), wanted=9)
