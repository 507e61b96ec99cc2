"""The emulator takes vLLM's own command line."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tierserve.engine.args import parse_args
from tierserve.errors import ValidationError
from tierserve.examples import SEED_COMMAND

SEED_CMD = shlex.split(SEED_COMMAND)


def test_the_seed_command_line_parses_as_is() -> None:
    cfg = parse_args([*SEED_CMD[1:], "--gpu", "V100-32G"])
    assert cfg.model == "/model/DeepSeek-R1-Distill-Qwen-7B"
    assert cfg.port == 8080 and cfg.host == "127.0.0.1"
    assert cfg.served_model_names == ("deepseek-r1",)
    assert cfg.shape.max_model_len == 32768
    assert cfg.shape.gpu_memory_utilization == 0.95
    assert cfg.shape.enforce_eager and cfg.shape.dtype_bytes == 2
    assert cfg.shape.gpu.name == "V100-32G"
    assert cfg.shape.profile.name == "deepseek-r1-distill-qwen-7b"
    assert cfg.warnings == ()


def test_without_the_serve_word_and_with_host_and_underscores() -> None:
    cfg = parse_args(["/m/x", "--host", "0.0.0.0", "--max_model_len=4096", "--max-num-seqs", "8"])
    assert cfg.model == "/m/x" and cfg.host == "0.0.0.0"
    assert cfg.shape.max_model_len == 4096 and cfg.shape.max_num_seqs == 8
    assert cfg.served_model_names == ("/m/x",)


def test_unknown_vllm_flags_are_ignored_with_a_warning() -> None:
    cfg = parse_args(["/m/x", "--enable-prefix-caching", "--swap-space", "4", "--port", "9"])
    assert cfg.port == 9
    assert cfg.ignored_args == ("--enable-prefix-caching", "--swap-space", "4")
    assert any("--swap-space" in w for w in cfg.warnings)


def test_emulator_options() -> None:
    cfg = parse_args(
        [
            "/m/x",
            "--gpu",
            "h100-80g",
            "--model-profile",
            "llama-3.1-8b",
            "--load-time-s",
            "3",
            "--seed",
            "7",
            "--time-scale",
            "0.1",
            "--fault-crash-after",
            "2",
            "--fault-hang-after",
            "5",
            "--fault-slow-factor",
            "2.5",
            "--fault-startup-fail",
        ]
    )
    assert cfg.shape.gpu.name == "H100-80G" and cfg.shape.profile.name == "llama-3.1-8b"
    assert cfg.load_time_s == 3 and cfg.seed == 7 and cfg.time_scale == 0.1
    assert cfg.faults.crash_after == 2 and cfg.faults.hang_after == 5
    assert cfg.faults.startup_fail and cfg.shape.slow_factor == 2.5


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--port", "1"], "model"),
        (["/m", "--gpu", "T4"], "--gpu"),
        (["/m", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["/m", "--time-scale", "0"], "--time-scale"),
        (["/m", "--model-profile", "nope"], "--model-profile"),
    ],
)
def test_bad_options_name_the_field(argv: list[str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_args(argv)
    assert field in str(info.value)


@pytest.mark.parametrize("program", ["vllm", "/usr/local/bin/vllm"])
def test_a_leading_vllm_serve_is_the_command_not_the_model(program: str) -> None:
    cfg = parse_args([program, "serve", "/model/X", "--served-model-name", "m", "--port", "9"])
    assert cfg.model == "/model/X" and cfg.served_model_names == ("m",)
    assert cfg.port == 9 and cfg.ignored_args == ()
    assert not any("ignoring" in w for w in cfg.warnings)


def test_a_model_called_vllm_is_still_a_model() -> None:
    assert parse_args(["vllm", "--port", "9"]).model == "vllm"
    assert parse_args(["serve", "vllm"]).model == "vllm"


@pytest.mark.slow
def test_the_cli_takes_a_vllm_serve_command_line() -> None:
    # Start-up fails on purpose (--fault-startup-fail, no load time) right after the emulator
    # has logged what it serves, so the process exits without opening its port.
    argv = [*SEED_CMD, "--load-time-s", "0", "--fault-startup-fail", "--port", "0"]
    assert argv[:2] == ["vllm", "serve"]
    proc = subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "engine", "emulate", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "model=/model/DeepSeek-R1-Distill-Qwen-7B served as deepseek-r1 " in proc.stderr
    assert "ignoring vLLM arguments" not in proc.stderr
