import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierserve.cli.main import app
from tierserve.examples import seed_text


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    for name in ("model-storage.yaml", "resourcepolicy.yaml"):
        (tmp_path / name).write_text(seed_text(name), encoding="utf-8")
    return tmp_path


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_seed_yaml_applies_with_dry_run(seed_dir: Path) -> None:
    result = run(
        "apply",
        "-f",
        str(seed_dir / "model-storage.yaml"),
        "-f",
        str(seed_dir / "resourcepolicy.yaml"),
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "secret/oss-secret created (dry run)",
        "persistentvolume/llm-model created (dry run)",
        "persistentvolumeclaim/llm-model created (dry run)",
        "resourcepolicy.scheduling.alibabacloud.com/deepseek created (dry run)",
    ]


def test_broken_variant_prints_field_error_and_exits_non_zero(seed_dir: Path) -> None:
    broken = seed_text("resourcepolicy.yaml").replace("resource: eci", "resource: ecx")
    result = run("apply", "-f", "-", "--dry-run", stdin=broken)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: <stdin>: ResourcePolicy deepseek: spec.units[1].resource: "
        "'ecx' is not one of ecs, eci, acs, elastic"
    )


def test_validate_a_directory_reports_every_file(seed_dir: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(seed_dir)])
    assert result.exit_code == 0
    assert "resourcepolicy.scheduling.alibabacloud.com/deepseek valid" in result.stdout


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: no such file or directory" in result.stderr


def test_apply_without_a_control_plane_changes_nothing_and_says_why(
    seed_dir: Path, tmp_path: Path
) -> None:
    state = tmp_path / "no-control-plane"
    result = CliRunner().invoke(app, ["apply", "-f", str(seed_dir), "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "no control plane found" in result.stderr
    assert "tierserve up" in result.stderr and "--dry-run" in result.stderr
