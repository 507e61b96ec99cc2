"""``tierserve simulate`` as a user runs it: the seed burst, a plot, JSON, a comparison,
and a bad scenario as a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "tierserve" / "examples" / "sim"


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_seed_burst_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    result = simulate("-f", str(EXAMPLES / "seed-burst.yaml"), "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert "SLO" in result.stdout and "cloud" in result.stdout
    flat = " ".join(result.stdout.split())  # rich wraps long lines
    assert "SuccessfulRescale" in flat
    assert "New size: 2; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above target" in flat
    assert png.read_bytes().startswith(b"\x89PNG")


def test_vary_compares_configurations_as_json() -> None:
    result = simulate(
        "-f",
        str(EXAMPLES / "seed-burst.yaml"),
        "--vary",
        "autoscaling=@autoscaling/seed-sm50.yaml,@autoscaling/slo-min2.yaml",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["seed-sm50", "slo-min2"]
    assert all(r["requests"]["total"] > 600 for r in rows)
    assert rows[1]["attainment_pct"]["both"] > rows[0]["attainment_pct"]["both"]


def test_a_bad_scenario_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (EXAMPLES / "seed-burst.yaml").read_text().replace("tickSeconds: 1", "tickSeconds: -1")
    bad.write_text(text)
    (tmp_path / "seed-cluster.yaml").write_text((EXAMPLES / "seed-cluster.yaml").read_text())
    result = simulate("-f", str(bad))
    assert result.returncode == 1
    assert "spec.controllers.tickSeconds" in result.stderr and "Traceback" not in result.stderr
