"""The simulator's report: summary arithmetic on a hand-built result (attainment with failed
requests, nearest-rank percentiles, $/1M tokens, the tier split), windows over the
timeline, the rich tables and the PNG."""

from __future__ import annotations

import json
import re
import sys
from array import array
from pathlib import Path

import pytest
from rich.console import Console

from tierserve.errors import TierserveError
from tierserve.sim.report import (
    clock,
    decisions_json,
    nearest_rank,
    render_comparison,
    render_summary,
    summarize,
    windows,
)
from tierserve.sim.world import Decision, Requests, SimResult, SimSettings, Slo, TimelinePoint

# The finished requests, with the SLO at TTFT <= 2 s and TPOT <= 0.1 s. Values are exact in
# float32 (as Requests stores them) except 0.1, which sits exactly at the SLO on purpose.
#   arrival  ttft   tpot    e2e  tokens  tier    meets
FINISHED = [
    (1.0, 0.5, 0.0625, 2.0, 100, 0),  # both
    (2.0, 1.0, 0.1, 3.0, 200, 0),  # both (TPOT at the SLO meets it)
    (3.0, 1.5, 0.25, 5.0, 100, 0),  # TTFT only
    (4.0, 3.0, 0.0625, 6.0, 100, 1),  # TPOT only
    (11.0, 0.25, 0.0625, 1.0, 300, 1),  # both
    (12.0, 2.0, 0.125, 4.0, 100, 1),  # TTFT only (at the SLO)
    (13.0, 4.0, 0.0625, 8.0, 100, 1),  # TPOT only
    (14.0, 0.75, 0.0625, 7.0, 100, 0),  # both
]
FAILED = [5.0, 15.0]


def point(
    t: float, arrivals: int, idc: int, cloud: int, cost: float, ready_cloud: int | None = None
) -> TimelinePoint:
    return TimelinePoint(
        t_s=t,
        desired=idc + cloud,
        allocated={"idc": idc, "cloud": cloud},
        ready={"idc": idc, "cloud": cloud if ready_cloud is None else ready_cloud},
        arrivals=arrivals,
        in_flight=0,
        held=0,
        cloud_cost=cost,
        gpu_seconds={"idc": 0.0, "cloud": 0.0},
    )


def result(
    name: str = "burst",
    cloud_cost: float = 3.0,
    cold_starts: int = 2,
    decisions: list[Decision] | None = None,
) -> SimResult:
    req = Requests()
    for arrival, ttft, tpot, e2e, tokens, tier in FINISHED:
        req.arrival_s.append(arrival)
        req.ttft_s.append(ttft)
        req.tpot_s.append(tpot)
        req.e2e_s.append(e2e)
        req.output_tokens.append(tokens)
        req.tier.append(tier)
    req.failed_arrival_s = array("d", FAILED)
    return SimResult(
        name=name,
        settings=SimSettings(),
        slo=Slo(ttft_s=2.0, tpot_s=0.1),
        duration_s=20.0,
        end_s=25.0,
        requests=req,
        timeline=[
            point(0.0, 0, 1, 0, 0.0),
            point(10.0, 5, 1, 1, 1.0, ready_cloud=0),  # 4 finished + the failed one at 5 s
            point(20.0, 5, 1, 2, cloud_cost),  # 4 finished + the failed one at 15 s
            point(25.0, 0, 1, 0, cloud_cost),  # the drain after the workload
        ],
        decisions=decisions if decisions is not None else DECISIONS,
        gpu_seconds={"idc": 7200.0, "cloud": 1800.0},
        cloud_cost=cloud_cost,
        cold_starts=cold_starts,
        first_scale_out_s=65.0,
        peak_replicas={"idc": 1, "cloud": 2},
        wall_s=0.5,
    )


DECISIONS = [
    Decision(65.0, "SuccessfulRescale", "default/llm", "New size: 2; reason: ttft above target"),
    Decision(66.0, "FailedScheduling", "llm-abcde", "0/1 nodes are available", count=3),
    Decision(3725.0, "Scheduled", "llm-abcde", "Successfully assigned llm-abcde to cloud-1"),
    Decision(3790.0, "Ready", "llm-abcde", "Replica is Ready"),
]


def test_attainment_counts_failed_requests_as_misses() -> None:
    s = summarize(result())
    assert s["requests"] == {"total": 10, "finished": 8, "failed": 2}
    # TTFT met by 6 of 10, TPOT by 6 of 10, both by 4 of 10 (the 2 failed miss all three)
    assert s["attainment_pct"] == {"ttft": 60.0, "tpot": 60.0, "both": 40.0}
    # 4 good requests over the 20 s workload (not the 25 s with the drain); their tokens
    # 100 + 200 + 300 + 100 = 700 -> 35/s
    assert s["goodput"] == {"requests": 4, "requests_per_s": 0.2, "output_tokens_per_s": 35.0}


def test_percentiles_are_nearest_rank() -> None:
    s = summarize(result())
    # sorted TTFT [0.25 0.5 0.75 1 1.5 2 3 4]: p50 = rank ceil(4) = 4 -> 1.0,
    # p90 = rank ceil(7.2) = 8 -> 4.0, p99 = rank ceil(7.92) = 8 -> 4.0
    assert s["latency_s"]["ttft"] == {"p50": 1.0, "p90": 4.0, "p99": 4.0}
    # sorted TPOT [.0625 x5, .1, .125, .25]: rank 4 -> .0625, rank 8 -> .25
    assert s["latency_s"]["tpot"] == {"p50": 0.0625, "p90": 0.25, "p99": 0.25}
    assert s["latency_s"]["e2e"] == {"p50": 4.0, "p90": 8.0, "p99": 8.0}
    assert nearest_rank([], 90) is None
    assert nearest_rank([7.0], 1) == 7.0
    assert nearest_rank(list(range(1, 101)), 90) == 90  # ceil(0.9 * 100) = 90, exactly


def test_tiers_cost_and_tokens() -> None:
    s = summarize(result())
    idc, cloud = s["tiers"]["idc"], s["tiers"]["cloud"]
    # idc served 100 + 200 + 100 + 100 = 500 tokens, cloud 100 + 300 + 100 + 100 = 600
    assert (idc["requests"], idc["output_tokens"]) == (4, 500)
    assert (cloud["requests"], cloud["output_tokens"]) == (4, 600)
    assert idc["paid"] == "owned" and idc["cost"] == 0.0 and idc["usd_per_1m_tokens"] == 0.0
    assert idc["gpu_hours"] == 2.0 and cloud["gpu_hours"] == 0.5
    assert cloud["cost"] == 3.0
    assert cloud["usd_per_1m_tokens"] == pytest.approx(5000.0)  # 3 / 600 * 1e6
    assert s["usd_per_1m_tokens"] == pytest.approx(3 / 1100 * 1e6)
    assert idc["gpu_seconds_per_1m_tokens"] == pytest.approx(7200 / 500 * 1e6)
    assert cloud["peak_replicas"] == 2 and s["peak_replicas"] == {"idc": 1, "cloud": 2}
    assert (s["cloud_gpu_seconds"], s["cloud_cost"], s["cold_starts"]) == (1800.0, 3.0, 2)
    assert s["first_scale_out_s"] == 65.0
    assert (s["end_s"], s["wall_s"], s["speed"]) == (25.0, 0.5, 50.0)
    json.dumps(s)  # plain values only


def test_no_tokens_no_price() -> None:
    r = result()
    r.requests = Requests(failed_arrival_s=array("d", [1.0]))
    s = summarize(r)
    assert s["requests"] == {"total": 1, "finished": 0, "failed": 1}
    assert s["attainment_pct"] == {"ttft": 0.0, "tpot": 0.0, "both": 0.0}
    assert s["tiers"]["cloud"]["usd_per_1m_tokens"] is None
    assert s["usd_per_1m_tokens"] is None
    assert s["latency_s"]["ttft"]["p90"] is None


def test_decisions_by_kind_and_recent() -> None:
    s = summarize(result())
    assert s["decisions"]["by_kind"] == {
        "FailedScheduling": 3,  # one folded decision seen 3 times
        "Ready": 1,
        "Scheduled": 1,
        "SuccessfulRescale": 1,
    }
    assert [d["kind"] for d in s["decisions"]["recent"]] == ["SuccessfulRescale", "Scheduled"]
    assert s["decisions"]["not_shown"] == 4  # 6 in all, 2 listed
    many = [
        Decision(float(i), "SuccessfulRescale", "default/llm", f"New size: {i}") for i in range(20)
    ]
    s = summarize(result(decisions=many))
    assert [d["t_s"] for d in s["decisions"]["recent"]] == [float(i) for i in range(5, 20)]
    assert s["decisions"]["not_shown"] == 5
    assert decisions_json(result(), limit=2) == [
        {"t_s": 65.0, "kind": "SuccessfulRescale", "subject": "default/llm",
         "message": "New size: 2; reason: ttft above target", "count": 1},
        {"t_s": 66.0, "kind": "FailedScheduling", "subject": "llm-abcde",
         "message": "0/1 nodes are available", "count": 3},
    ]  # fmt: skip
    assert len(decisions_json(result())) == 4


def test_windows_bucket_requests_by_arrival() -> None:
    w = windows(result())
    assert [(x["t_s"], x["end_s"]) for x in w] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert [x["arrivals"] for x in w] == [5, 5, 0]
    assert [x["arrivals_per_s"] for x in w] == [0.5, 0.5, 0.0]
    # [0, 10): TTFT [0.5 1 1.5 3], p90 = rank ceil(3.6) = 4 -> 3.0; [10, 20): [0.25 .75 2 4] -> 4
    assert [x["finished"] for x in w] == [4, 4, 0]
    assert [x["ttft_p90_s"] for x in w] == [3.0, 4.0, None]
    assert [x["failed"] for x in w] == [1, 1, 0]
    assert [x["cloud_cost"] for x in w] == [1.0, 2.0, 0.0]
    assert [x["cloud_cost_total"] for x in w] == [1.0, 3.0, 3.0]
    assert w[0]["allocated"] == {"idc": 1, "cloud": 1} and w[0]["ready"] == {"idc": 1, "cloud": 0}
    json.dumps(w)


def test_windows_merge_to_step() -> None:
    # step 20 s: 0 -> 20 is one window; the 5 s tail after it is too short and joins it
    (w,) = windows(result(), step_s=20.0)
    assert (w["t_s"], w["end_s"], w["arrivals"], w["arrivals_per_s"]) == (0.0, 25.0, 10, 0.4)
    assert (w["finished"], w["ttft_p90_s"], w["failed"]) == (8, 4.0, 2)
    assert (w["cloud_cost"], w["allocated"]) == (3.0, {"idc": 1, "cloud": 0})
    r = result()
    r.timeline = r.timeline[:1]
    assert windows(r) == []


def test_clock() -> None:
    assert [clock(t) for t in (0, 65.4, 3599, 3725)] == ["0:00", "1:05", "59:59", "1:02:05"]


def test_render_summary_shows_the_key_figures() -> None:
    console = Console(record=True, width=120)
    render_summary(summarize(result()), console)
    text = console.export_text()
    for figure in (
        "burst",
        "40.0 %",  # both
        "60.0 %",
        "10 (8 finished, 2 failed)",
        "0.200 requests/s",
        "62.5 ms",  # TPOT p50
        "4.00 s",  # TTFT p90
        "$5,000.00",  # cloud $/1M tokens
        "owned",
        "Cold starts: 2",
        "First scale-out: 1:05",
        "1:02:05",  # the Scheduled decision
        "New size: 2",
        "4 more decisions",
    ):
        assert figure in text, figure
    assert "0/1 nodes are available" not in text  # FailedScheduling is only counted


def test_render_comparison_bolds_the_best() -> None:
    cheap = summarize(result("hpa", cloud_cost=1.5, cold_starts=1))
    dear = summarize(result("ttft-signal", cloud_cost=6.0, cold_starts=4))
    console = Console(record=True, width=160, force_terminal=True, color_system="standard")
    render_comparison([("hpa", cheap), ("ttft-signal", dear)], console)
    styled = console.export_text(styles=True, clear=False)
    plain = console.export_text()
    assert "hpa" in plain and "ttft-signal" in plain
    assert "$1.50" in plain and "$6.00" in plain

    def bold(cell: str) -> bool:
        return re.search(r"\x1b\[1m *" + re.escape(cell) + r"\x1b\[0m", styled) is not None

    assert bold("$1.50") and not bold("$6.00")  # the cheaper cloud cost
    assert bold("1") and not bold("4")  # the fewer cold starts
    assert bold("40.0 %")  # a tie: both bold


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tierserve.sim.plot import plot

    out = tmp_path / "run.png"
    plot(result(), out)
    assert out.read_bytes().startswith(b"\x89PNG")
    long = result()
    long.end_s = 4 * 3600.0  # drawn in hours
    plot(long, str(tmp_path / "long.png"), windows=windows(long, step_s=10.0))
    assert (tmp_path / "long.png").read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierserve.sim.plot import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    with pytest.raises(TierserveError, match=r"pip install 'tierserve\[sim\]'"):
        plot(result(), tmp_path / "run.png")
