"""``tierserve up``'s flags: every help text gives the default and the unit, and the
``--virtual-*`` flags are never silently ignored with ``--cluster``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tierserve.cli.main import app

IDC_ONLY = """\
apiVersion: v1
kind: Node
metadata: {name: idc001}
status:
  capacity: {nvidia.com/gpu: 1, cpu: 16, memory: 64Gi}
"""


def up_options() -> list[typer.core.TyperOption]:
    command = typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]
    return [p for p in command.params if isinstance(p, typer.core.TyperOption)]


def test_every_up_flag_says_its_default_and_unit() -> None:
    for option in up_options():
        name, text = max(option.opts, key=len), option.help or ""
        if name == "--help":
            continue
        # typer prints "[default: X]" itself unless the default is None or False
        shown = option.show_default is not False and option.default is not None
        shown = shown and option.default is not False
        assert shown or "default" in text, f"{name}: no default in {text!r}"
        if name.endswith("-s"):
            assert "second" in text.lower(), f"{name}: no unit in {text!r}"
    helps = {max(o.opts, key=len): o.help or "" for o in up_options()}
    assert "per GPU-hour" in helps["--virtual-price-per-gpu-hour"]
    assert "GPUs" in helps["--virtual-gpu-quota"]


def test_help_prints_the_virtual_node_defaults() -> None:
    # "[default: 45]" inside a help text is rich markup and vanished from the output.
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if "--virtual-cold-start-s" in x)
    assert re.search(r"default: 45\b", line), line
    line = next(x for x in result.stdout.splitlines() if "--virtual-gpu-quota" in x)
    assert re.search(r"default: 8\b", line), line


def up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tierserve.cli.main",
            "up",
            "--state-dir",
            str(tmp_path / "s"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("detach", [[], ["--detach"]])
def test_virtual_flags_with_a_cluster_file_without_a_virtual_node_are_refused(
    tmp_path: Path, detach: list[str]
) -> None:
    cluster = tmp_path / "nodes.yaml"
    cluster.write_text(IDC_ONLY)
    result = up(
        tmp_path, "--cluster", str(cluster), "--virtual-gpu-quota", "2",
        "--virtual-cold-start-s", "1", *detach,
    )  # fmt: skip
    problem = f"{str(cluster)!r} has no virtual node (spec.virtual) to set it on"
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"error: --virtual-cold-start-s: {problem}",
        f"error: --virtual-gpu-quota: {problem}",
    ]
    assert not (tmp_path / "s" / "client.json").exists()


def test_a_bad_cluster_file_fails_up_detach_itself_naming_the_field(tmp_path: Path) -> None:
    cluster = tmp_path / "nodes.yaml"
    cluster.write_text(IDC_ONLY.replace("cpu: 16", "cpu: lots"))
    result = up(tmp_path, "--cluster", str(cluster), "--detach")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {cluster}: Node idc001: status.capacity: cpu: 'lots' is not a Kubernetes "
        "quantity such as 4, 500m, 12Gi or 1k\n"
    )
    missing = up(tmp_path, "--cluster", str(tmp_path / "nope.yaml"), "--detach")
    assert missing.stderr == f"error: --cluster: {str(tmp_path / 'nope.yaml')!r} is not a file\n"
