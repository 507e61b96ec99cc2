"""``simulate --html``: one self-contained page whose embedded data is the run's report.

The page must open offline and be shareable as one file (no src/href that fetches
anything); its JSON must hold the dashboard's series per service with figures that add up
to the report's (attainment, cloud cost, GPU-hours, cold starts); a comparison holds one
entry per configuration. When Debian's ``chromium`` is installed, the page is loaded
headless and the charts must have rendered (uPlot canvases, no script error).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tierserve.errors import TierserveError
from tierserve.sim import html, series
from tierserve.sim import scenario as sc
from tierserve.sim.report import summarize
from tierserve.sim.run import simulate
from tierserve.sim.world import SimResult

EXAMPLES = Path(__file__).resolve().parents[2] / "tierserve" / "examples" / "sim"
DATA = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.DOTALL)
# Anything a browser would fetch: a src/href/url() to another host, a <link>, an @import.
FETCHES = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//)|<link\b|@import|url\(\s*["']?(?:https?:)?//""",
    re.IGNORECASE,
)
CHARTS_PER_SERVICE = 7
OVERLAYS_PER_SERVICE = 6


def run(name: str, overrides: dict[str, Any] | None = None) -> SimResult:
    return simulate(sc.load(EXAMPLES / name, overrides or {}))


@pytest.fixture(scope="module")
def burst() -> SimResult:
    return run("seed-burst.yaml")


def embedded(page: str) -> dict[str, Any]:
    found = DATA.search(page)
    assert found is not None, "no <script type=application/json id=report-data>"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_the_page_is_one_file_that_fetches_nothing(burst: SimResult, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    html.write([("", burst)], target)
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert FETCHES.search(page) is None, FETCHES.search(page)
    assert "<script src" not in page and "<img" not in page
    vendored = Path(html.__file__).parents[1] / "web" / "static" / "vendor" / "uPlot.iife.min.js"
    assert vendored.read_text(encoding="utf-8")[:200] in page  # uPlot itself is inline
    assert page.count("</script>") == 3  # the data, uPlot, the report's code: none cut short
    assert oct(target.stat().st_mode & 0o777) != "0o600"  # not the temporary file's mode


def test_the_embedded_series_add_up_to_the_report(burst: SimResult, tmp_path: Path) -> None:
    data = embedded(html.render(html.report_data([("", burst)])))
    assert data["format"] == 1 and data["comparison"] is None
    (entry,) = data["runs"]
    report = json.loads(json.dumps(summarize(burst)))
    summary = entry["summary"]
    for key in ("attainment_pct", "requests", "tiers", "cloud_cost", "cold_starts", "latency_s"):
        assert summary[key] == report[key], key
    assert summary["tiers"]["cloud"]["gpu_hours"] > 0
    (svc,) = entry["services"]
    assert svc["name"] == "default/deepseek"
    s = svc["series"]
    assert set(s) == set(series.COLUMNS)
    assert len({len(v) for v in s.values()}) == 1 and 0 < len(s["t_s"]) <= series.MAX_POINTS
    # Every request in exactly one window; the windows' attainment is the run's.
    assert sum(s["requests"]) == report["requests"]["total"]
    assert 100 * sum(s["met"]) / sum(s["requests"]) == pytest.approx(
        report["attainment_pct"]["both"], abs=1e-3
    )
    assert s["cloud_cost_total"][-1] == pytest.approx(report["cloud_cost"], abs=1e-6)
    # The cloud's $/1M tokens at the end is the report's (its cost over its tokens).
    assert s["usd_per_1m_cloud"][-1] == pytest.approx(
        report["tiers"]["cloud"]["usd_per_1m_tokens"], rel=1e-6
    )
    assert max(s["cloud_allocated"]) == report["peak_replicas"]["cloud"] == 2
    assert max(s["idc_ready"]) == 1 and min(s["idc_allocated"]) == 1
    assert len(svc["cold_starts"]) == report["cold_starts"] == 2
    assert any(v is not None and v > report["slo"]["ttft_s"] for v in s["ttft_p90_s"])
    reasons = [d["message"] for d in entry["decisions"] if d["kind"] == "SuccessfulRescale"]
    assert reasons[0] == (
        "New size: 2; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above target"
    )
    assert all(d["service"] == "default/deepseek" for d in entry["decisions"])


def test_each_service_has_its_own_series() -> None:
    result = run("rebalance.yaml")
    data = html.report_data([("", result)])
    (entry,) = data["runs"]
    names = [svc["name"] for svc in entry["services"]]
    assert names == ["default/batch", "default/deepseek"]
    by_name = {svc["name"]: svc["series"] for svc in entry["services"]}
    summary = entry["summary"]
    assert sum(sum(s["requests"]) for s in by_name.values()) == summary["requests"]["total"]
    # Only deepseek ran on the cloud (batch is pinned to the IDC pool): all the cost is its.
    assert by_name["default/batch"]["cloud_cost_total"][-1] == 0
    assert by_name["default/deepseek"]["cloud_cost_total"][-1] == pytest.approx(
        summary["cloud_cost"], abs=1e-6
    )
    assert max(by_name["default/batch"]["cloud_allocated"]) == 0
    assert max(by_name["default/deepseek"]["cloud_allocated"]) > 0
    moves = [d for d in entry["decisions"] if d["kind"] == "Rebalance"]
    assert moves and all(d["service"] == "default/deepseek" for d in moves)


def test_decisions_are_bounded_scale_decisions_first(burst: SimResult) -> None:
    kept, left_out = series.decisions(burst)
    assert left_out == {} and len(kept) == len(burst.decisions)
    copies = [dataclasses.replace(d) for _ in range(2000) for d in burst.decisions]
    many = dataclasses.replace(burst, decisions=copies)
    kept, left_out = series.decisions(many)
    assert len(kept) == series.MAX_DECISIONS
    rescales = sum(1 for d in burst.decisions if d.kind == "SuccessfulRescale") * 2000
    assert sum(1 for d in kept if d["kind"] == "SuccessfulRescale") == min(
        rescales, series.MAX_DECISIONS
    )
    assert sum(left_out.values()) == len(many.decisions) - series.MAX_DECISIONS
    assert {d["kind"] for d in kept} == {"SuccessfulRescale"}  # 4000 of them: no room left


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("{tmp}", "is a directory"),
        ("{tmp}/missing/report.html", "does not exist"),
        ("{tmp}/file.txt/report.html", "is not a folder"),
    ],
)
def test_a_bad_target_is_refused_before_anything_runs(
    tmp_path: Path, path: str, problem: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    target = Path(path.format(tmp=tmp_path))
    with pytest.raises(TierserveError, match=problem) as caught:
        html.check_path(target)
    assert str(caught.value).startswith(f"--html: {target}: ")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "simulate", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_a_bad_path_is_one_error_line(tmp_path: Path) -> None:
    result = cli("-f", str(EXAMPLES / "seed-burst.yaml"), "--html", str(tmp_path / "no" / "r.html"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: --html: {tmp_path / 'no' / 'r.html'}: folder {tmp_path / 'no'} does not exist"
    )
    assert result.stdout == ""  # refused before the run: no table


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("html") / "compare.html"
    result = cli(
        "-f",
        str(EXAMPLES / "seed-burst.yaml"),
        "--vary",
        "autoscaling=@autoscaling/seed-sm50.yaml,@autoscaling/slo-min2.yaml",
        "--html",
        str(target),
    )
    assert result.returncode == 0, result.stderr
    assert "Comparison" in result.stdout  # the terminal table still prints
    return target


def test_cli_a_comparison_has_one_entry_per_configuration(comparison: Path) -> None:
    page = comparison.read_text(encoding="utf-8")
    assert FETCHES.search(page) is None
    data = embedded(page)
    assert [r["label"] for r in data["runs"]] == ["seed-sm50", "slo-min2"]
    table = data["comparison"]
    assert table["columns"][0] == "SLO % (both)"
    assert [row["label"] for row in table["rows"]] == ["seed-sm50", "slo-min2"]
    for row, entry in zip(table["rows"], data["runs"], strict=True):
        assert row["cells"][0]["value"] == entry["summary"]["attainment_pct"]["both"]
        assert len(entry["services"]) == 1
    # The planner with two replicas keeps the SLO better: its cell is the column's best.
    assert [row["cells"][0]["best"] for row in table["rows"]] == [False, True]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load(page: Path, tmp_path: Path, shot: Path) -> str:
    """The DOM of ``page`` after its scripts ran in headless Chromium (and a screenshot)."""
    binary = chromium()
    assert binary is not None
    common = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # tests run as root in CI
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,2400",
        "--virtual-time-budget=5000",
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    subprocess.run(
        [*common, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        env=env,
    )
    return dom.stdout


def rendered(dom: str) -> int:
    assert 'data-rendered="true"' in dom, re.findall(r'id="report-error"[^<]*', dom)
    charts = int(re.search(r'data-charts="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert len(re.findall(r'<div class="uplot', dom)) == charts
    assert len(re.findall(r"<canvas\b", dom)) == charts
    return charts


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed")
def test_chromium_draws_the_charts(burst: SimResult, comparison: Path, tmp_path: Path) -> None:
    single = tmp_path / "single.html"
    html.write([("", burst)], single)
    dom = load(single, tmp_path, tmp_path / "single.png")
    assert rendered(dom) == CHARTS_PER_SERVICE
    assert "SuccessfulRescale" in dom and "New size: 2" in dom  # the decisions timeline
    assert (tmp_path / "single.png").stat().st_size > 10_000
    dom = load(comparison, tmp_path, tmp_path / "compare.png")
    # the overlays, then every configuration's charts side by side
    assert rendered(dom) == OVERLAYS_PER_SERVICE + 2 * CHARTS_PER_SERVICE
    assert '<table class="comparison">' in dom and "slo-min2" in dom


def test_the_chart_code_is_the_reports_own() -> None:
    """The page does not depend on the dashboard's charts.js: its code ships beside it."""
    static = Path(html.__file__).parents[1] / "web" / "static"
    code = (static / html.REPORT_JS).read_text(encoding="utf-8")
    assert "new uPlot(" in code and "report-data" in code
    assert "</script" not in code.lower()


def test_a_result_without_services_is_one_all_series() -> None:
    """A result built by hand (as the report's tests build one) has no per-service data:
    everything counts for one ``all`` entry, the fleet's timeline."""
    from test_sim_report import result as hand_built

    built = hand_built()
    (entry,) = series.run_series(built)
    assert entry["name"] == "all"
    s = entry["series"]
    summary = summarize(built)
    assert sum(s["requests"]) == summary["requests"]["total"] == 10
    assert 100 * sum(s["met"]) / sum(s["requests"]) == pytest.approx(
        summary["attainment_pct"]["both"], abs=1e-3
    )
    assert s["cloud_cost_total"][-1] == pytest.approx(built.timeline[-1].cloud_cost)
    page = html.render(html.report_data([("by hand", built)]))
    assert embedded(page)["runs"][0]["label"] == "by hand"
