"""Turn a service's command line and one replica's context into what to execute (pure).

``build_launch_spec(service, node, ctx)`` returns a ``LaunchSpec``: argv, the
environment to set on top of the launcher's, working directory, log file and port.
Rules, in order:

* The command is ``shlex``-split. A command that needs a shell (``&&``, ``|``, ``;``,
  redirections, ``$VAR``, a leading ``VAR=value``) runs as ``<spec.shell> -c <text>``;
  only ``{port}`` and data paths are rewritten in it (use ``{port}`` or
  ``$TIERSERVE_PORT`` there; it is never emulated).
* ``--data pvc:/mount/path``: every argument that is the mount path or lies under it
  (also the value of ``--flag=/mount/...``, and values of ``spec.env``) is *rewritten*
  to the PV's local directory. Rewrite, not symlink: a symlink at ``/model/...`` needs
  root (or a mount namespace) and would clash between services mounting the same
  path; a rewrite needs no privileges. ``TIERSERVE_DATA_<i>`` holds the directory of
  ``spec.data[i]``. When vLLM's model argument is rewritten and there is no
  ``--served-model-name``, the original path is passed as ``--served-model-name``, so
  clients keep the model name vLLM would have served.
* On a node whose GPUs are emulated, ``vllm serve ARGS`` becomes
  ``python -m tierserve.cli.main engine emulate ARGS --gpu <node GPU model>``; other
  commands run as given (a CPU engine such as ``python -m llama_cpp.server`` runs on
  a CPU node unchanged). A command that already runs the emulator gets the node's
  ``--gpu`` when it names none.
* ``--port N`` / ``--port=N`` become the assigned port and ``{port}`` is substituted
  (in arguments and ``spec.env`` values);
  vLLM-style commands (``vllm serve``, ``python -m vllm.entrypoints.openai.api_server``,
  the emulator) get ``--port P`` when they name none and ``--host 127.0.0.1`` when
  they name no host.
* On a node with real NVIDIA GPUs, ``CUDA_VISIBLE_DEVICES`` lists the replica's GPU
  indices and ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes those the indices NVML uses.
* ``TIERSERVE_REPLICA=<namespace>/<name>`` and ``TIERSERVE_PORT`` mark the process as
  the replica's; the launcher adds ``TIERSERVE_REPLICA_OWNER``. ``TIERSERVE_NAMESPACE``,
  ``TIERSERVE_POD`` and ``TIERSERVE_CONTAINER`` give the emulator dcgm-exporter's pod
  labels. ``PYTHONUNBUFFERED=1`` unless the service sets it.
"""

from __future__ import annotations

import os.path
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tierserve.errors import NotFoundError
from tierserve.model.node import Node
from tierserve.model.service import InferenceService

EMULATOR_MODULE = "tierserve.cli.main"
EMULATOR_ARGS = ("engine", "emulate")
VLLM_API_MODULE = "vllm.entrypoints.openai.api_server"
LOOPBACK = "127.0.0.1"
CONTAINER_NAME = "kserve-container"
"""The container name KServe gives a predictor's engine (the ``container`` label)."""

ENV_REPLICA = "TIERSERVE_REPLICA"
ENV_PORT = "TIERSERVE_PORT"
ENV_REPLICA_OWNER = "TIERSERVE_REPLICA_OWNER"
"""Marks a replica process with its control plane's state directory. Deliberately not
``TIERSERVE_STATE_DIR``, which users export in their shells: a shell is never ours."""
ENV_DATA = "TIERSERVE_DATA_"

_SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class LaunchSpec:
    """What to execute for one replica. ``env`` is set on top of the launcher's environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    log_path: str
    port: int

    @property
    def replica(self) -> str:
        """``<namespace>/<name>`` of the replica this process serves."""
        return self.env.get(ENV_REPLICA, "")


@dataclass(frozen=True)
class ReplicaContext:
    """Everything about one replica the command depends on, decided by the caller."""

    namespace: str
    name: str
    port: int
    cwd: str
    log_path: str
    data_dirs: Mapping[str, str] = field(default_factory=dict)
    """Claim name → local directory (``volumes.resolve_data_dirs``)."""
    gpu_indices: tuple[int, ...] = ()
    """Real-GPU indices assigned to the replica (``gpus.pick_gpus``); unused when emulated."""
    python: str = sys.executable
    """The interpreter that runs the emulator."""
    emulator_args: tuple[str, ...] = ()
    """Extra emulator options for emulated-GPU nodes (``up --emulator-time-scale``)."""


def replica_dirs(state_dir: str, namespace: str, name: str) -> tuple[str, str]:
    """``(cwd, log_path)`` for a replica: ``<state>/replicas/<ns>/<name>``, ``<state>/logs/...``."""
    cwd = os.path.join(state_dir, "replicas", namespace, name)
    log_path = os.path.join(state_dir, "logs", namespace, f"{name}.log")
    return cwd, log_path


def build_launch_spec(service: InferenceService, node: Node, ctx: ReplicaContext) -> LaunchSpec:
    mounts = _mounts(service, ctx.data_dirs)
    env = {
        key: _rewrite_path(value, mounts).replace("{port}", str(ctx.port))
        for key, value in service.spec.env.items()
    }
    env.setdefault("PYTHONUNBUFFERED", "1")  # engine logs reach the log file as they happen
    for i, data in enumerate(service.spec.data):
        env[f"{ENV_DATA}{i}"] = ctx.data_dirs[data.name]
    gpu = node.spec.gpu
    if gpu is not None and not gpu.emulated:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ctx.gpu_indices)
    env[ENV_REPLICA] = f"{ctx.namespace}/{ctx.name}"
    env[ENV_PORT] = str(ctx.port)
    # dcgm-exporter's pod labels, which the emulator (and nvml.py) put on GPU gauges.
    env["TIERSERVE_NAMESPACE"] = ctx.namespace
    env["TIERSERVE_POD"] = ctx.name
    env["TIERSERVE_CONTAINER"] = CONTAINER_NAME

    command = service.spec.command
    if needs_shell(command):
        argv: tuple[str, ...] = (service.spec.shell, "-c", _rewrite_text(command, ctx.port, mounts))
    else:
        emulate_gpu = gpu.model if gpu is not None and gpu.emulated else None
        argv = tuple(
            rewrite_argv(
                shlex.split(command), ctx.port, mounts, emulate_gpu, ctx.python, ctx.emulator_args
            )
        )
    return LaunchSpec(argv=argv, env=env, cwd=ctx.cwd, log_path=ctx.log_path, port=ctx.port)


def needs_shell(command: str) -> bool:
    """Whether the command line uses shell syntax that an argv cannot express."""
    if "$" in command or "`" in command:
        return True
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    if tokens and _ASSIGNMENT.match(tokens[0]):
        return True
    return any(_SHELL_OPERATOR.match(token) for token in tokens)


def rewrite_argv(
    words: Sequence[str],
    port: int,
    mounts: Sequence[tuple[str, str]] = (),
    emulate_gpu: str | None = None,
    python: str = sys.executable,
    emulator_args: Sequence[str] = (),
) -> list[str]:
    """Apply the data-path, emulator, port and host rules to an argv (see the module doc).

    ``emulator_args`` (e.g. ``--time-scale 0.1`` from ``up --emulator-time-scale``) are
    appended when the command runs the emulator on an emulated-GPU node.
    """
    out = [_rewrite_path(word, mounts) for word in words]
    kind = engine_kind(out)
    if kind == "vllm-serve":
        model = words[2] if len(words) > 2 and not words[2].startswith("-") else None
        if model is not None and out[2] != model and not _has_flag(out, "--served-model-name"):
            out += ["--served-model-name", model]
        if emulate_gpu is not None:
            out = [python, "-m", EMULATOR_MODULE, *EMULATOR_ARGS, *out[2:], "--gpu", emulate_gpu]
            out += emulator_args
    elif kind == "emulator" and emulate_gpu is not None:
        if not _has_flag(out, "--gpu"):
            out += ["--gpu", emulate_gpu]
        out += emulator_args
    found_port = False
    for i, word in enumerate(out):
        if "{port}" in word:
            out[i] = word.replace("{port}", str(port))
            found_port = True
        elif word == "--port" and i + 1 < len(out):
            out[i + 1] = str(port)
            found_port = True
        elif word.startswith("--port="):
            out[i] = f"--port={port}"
            found_port = True
    if kind is not None:
        if not found_port:
            out += ["--port", str(port)]
        if not _has_flag(out, "--host"):
            out += ["--host", LOOPBACK]
    return out


def engine_kind(words: Sequence[str]) -> str | None:
    """``vllm-serve``, ``vllm-module`` or ``emulator`` for vLLM-style command lines, else None."""
    if len(words) < 2:
        return None
    program = os.path.basename(words[0])
    if program == "vllm" and words[1] == "serve":
        return "vllm-serve"
    if program == "tierserve" and tuple(words[1:3]) == EMULATOR_ARGS:
        return "emulator"
    if program.startswith("python") and len(words) >= 3 and words[1] == "-m":
        if words[2] == VLLM_API_MODULE:
            return "vllm-module"
        if words[2] == EMULATOR_MODULE and tuple(words[3:5]) == EMULATOR_ARGS:
            return "emulator"
    return None


def _has_flag(words: Sequence[str], flag: str) -> bool:
    return any(word == flag or word.startswith(flag + "=") for word in words)


def _mounts(service: InferenceService, data_dirs: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(mount path, local dir)`` pairs, longest mount path first so nested mounts win."""
    pairs = []
    for i, data in enumerate(service.spec.data):
        local = data_dirs.get(data.name)
        if local is None:
            raise NotFoundError(
                f"InferenceService {service.namespace}/{service.name}: spec.data[{i}].name: "
                f"claim {data.name!r} has no local directory; expected it in data_dirs"
            )
        mount = data.mount_path.rstrip("/") or "/"
        pairs.append((mount, local.rstrip("/") or "/"))
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def _rewrite_path(word: str, mounts: Sequence[tuple[str, str]]) -> str:
    if word.startswith("-") and "=" in word:
        flag, value = word.split("=", 1)
        return f"{flag}={_rewrite_path(value, mounts)}"
    for mount, local in mounts:
        if word == mount:
            return local
        if mount == "/" and word.startswith("/"):
            return local.rstrip("/") + word
        if word.startswith(mount + "/"):
            return local + word[len(mount) :]
    return word


def _rewrite_text(command: str, port: int, mounts: Sequence[tuple[str, str]]) -> str:
    text = command.replace("{port}", str(port))
    for mount, local in mounts:
        if mount == "/":
            continue  # rewriting every absolute path in a shell line would be a guess
        # The mount path as a whole word: not preceded by a path character, followed by
        # '/', a quote, whitespace or the end.
        pattern = re.compile(r"(?<![\w./-])" + re.escape(mount) + r"(?=[/\s\"';]|$)")
        text = pattern.sub(local.replace("\\", "\\\\"), text)  # a literal replacement
    return text
