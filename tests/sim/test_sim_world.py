"""The simulator runs the runtimes' decisions on virtual time: scale-out on the metric,
IDC first, cloud after its cold start, held requests, cloud given back first."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierserve.errors import ValidationError
from tierserve.policy import autoscaling
from tierserve.policy.autoscaling import Evaluation
from tierserve.sim import scenario as sc
from tierserve.sim.run import simulate
from tierserve.sim.world import SimResult

EXAMPLES = Path(__file__).resolve().parents[2] / "tierserve" / "examples" / "sim"
SEED_BURST = EXAMPLES / "seed-burst.yaml"


def base() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(SEED_BURST.read_text())
    return doc


def run(doc: dict[str, Any]) -> SimResult:
    return simulate(sc.parse(doc, "test", EXAMPLES))


def kinds(result: SimResult, kind: str) -> list[str]:
    return [d.message for d in result.decisions if d.kind == kind]


def test_seed_burst_scales_out_to_the_cloud_in_kubernetes_words() -> None:
    result = run(base())
    rescales = kinds(result, "SuccessfulRescale")
    assert (
        rescales[0] == "New size: 2; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above target"
    )
    scheduled = kinds(result, "Scheduled")
    assert "to idc001 (unit 0)" in scheduled[0]
    assert all("virtual-kubelet-cn-hangzhou-b (unit 1)" in m for m in scheduled[1:])
    assert result.cold_starts == 2 and result.peak_replicas == {"idc": 1, "cloud": 2}
    assert result.gpu_seconds["cloud"] > 0 and result.cloud_cost > 0
    assert result.first_scale_out_s is not None and 0 < result.first_scale_out_s < 90 + 60
    assert len(result.requests) > 600 and len(result.requests.failed_arrival_s) == 0


def test_the_same_scenario_gives_the_same_numbers() -> None:
    a, b = run(base()), run(base())
    assert list(a.requests.ttft_s) == list(b.requests.ttft_s)
    assert a.cloud_cost == b.cloud_cost
    assert [d.message for d in a.decisions] == [d.message for d in b.decisions]


def test_scale_in_gives_the_cloud_back_first() -> None:
    doc = base()
    doc["spec"]["duration"] = "900s"
    doc["spec"]["workload"]["phases"][-1]["duration"] = "630s"
    (svc,) = [o for o in doc["spec"]["objects"] if o.get("kind") == "InferenceService"]
    # SM util reads ~100 % at any load (it never scales in while traffic flows): in-flight does
    svc["spec"].update(scaleMetric="tierserve:inflight_requests", scaleTarget=10)
    result = run(doc)
    killed = [d for d in result.decisions if d.kind == "Killing"]
    assert killed, "the quiet phase scales in"
    last = result.timeline[-1]
    assert last.allocated == {"idc": 1, "cloud": 0}
    # never an IDC replica terminated while a cloud one ran
    assert all("ScaleDown" in d.message for d in killed)


def test_requests_before_any_replica_is_ready_are_held_then_served_or_failed() -> None:
    doc = base()
    doc["spec"]["warmStart"] = False
    served = run(doc)  # the IDC replica loads in ~36 s: within the 60 s hold
    assert len(served.requests.failed_arrival_s) == 0
    assert max(served.requests.ttft_s) > 20  # the first ones waited for the load
    doc["spec"]["controllers"]["holdTimeoutSeconds"] = 5
    cut = run(doc)
    assert len(cut.requests.failed_arrival_s) > 0


def test_any_autoscaler_policy_offers_runs_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def always_two(service, replicas, metrics, state, now, config, context) -> Evaluation:  # type: ignore[no-untyped-def]
        calls.append(now)
        message = None if service.spec.replicas == 2 else "New size: 2; reason: test"
        return Evaluation(service, "two", 2, state, message)

    monkeypatch.setitem(autoscaling.AUTOSCALERS, "two", always_two)
    doc = base()
    doc["spec"]["autoscaler"] = "two"
    result = run(doc)
    assert calls and kinds(result, "SuccessfulRescale") == ["New size: 2; reason: test"]
    assert result.peak_replicas["cloud"] == 1


def test_vary_autoscaling_merges_into_every_service() -> None:
    key, values = sc.parse_vary("autoscaling=@autoscaling/inflight-10-min2.yaml", EXAMPLES)
    assert key == "autoscaling" and values[0][0] == "inflight-10-min2"
    doc = sc.vary(base(), key, values[0][1], EXAMPLES)
    scenario = sc.parse(doc, "test", EXAMPLES)
    (svc,) = [o for o in scenario.objects if o.kind == "InferenceService"]
    assert svc.spec.scale_metric == "tierserve:inflight_requests"  # type: ignore[attr-defined]
    assert svc.spec.min_replicas == 2  # type: ignore[attr-defined]
    result = simulate(scenario)
    assert kinds(result, "SuccessfulRescale")[0].endswith("below Spec.MinReplicas")


def test_closed_loop_like_hey() -> None:
    doc = base()
    doc["spec"]["workload"] = {"kind": "closed", "concurrency": 5, "duration": "120s"}
    doc["spec"]["duration"] = "120s"
    result = run(doc)
    assert len(result.requests) > 20
    assert result.timeline[-1].in_flight == 0


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["spec"]["controllers"].update(tickSeconds=-1), "spec.controllers.tickSeconds"),
        (
            lambda d: d["spec"]["controllers"].update(slowStartSeconds=-1),
            "spec.controllers.slowStartSeconds",
        ),
        (lambda d: d["spec"].update(autoscaler="nope"), "spec.autoscaler"),
        (lambda d: d["spec"].update(enigne={}), "spec.enigne"),
        (lambda d: d["spec"]["slo"].update(ttftSeconds="fast"), "spec.slo.ttftSeconds"),
        (lambda d: d["spec"].pop("workload"), "spec.workload"),
        (lambda d: d["spec"]["objects"].pop(0), "spec.objects"),
    ],
)
def test_bad_scenarios_name_the_field(change: Any, path: str) -> None:
    doc = copy.deepcopy(base())
    change(doc)
    with pytest.raises(ValidationError) as info:
        sc.parse(doc, "test", EXAMPLES)
    assert path in str(info.value)


def test_slow_start_routes_as_the_policy_over_every_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seed burst's cloud replicas become Ready under load: the incremental index
    with its slow-starting replicas beside it routes every request as
    ``LeastOutstanding.choose`` over all Ready replicas does, and slow start changes
    where requests go (0: off)."""
    from tierserve.sim import world

    indexed = run(base())
    plain_init = world.Simulation.__init__

    def unindexed(self: world.Simulation, *args: Any, **kwargs: Any) -> None:
        plain_init(self, *args, **kwargs)
        self._indexed = False

    monkeypatch.setattr(world.Simulation, "__init__", unindexed)
    every = run(base())
    monkeypatch.undo()
    assert list(indexed.requests.ttft_s) == list(every.requests.ttft_s)
    assert list(indexed.requests.tier) == list(every.requests.tier)
    off = base()
    off["spec"]["controllers"]["slowStartSeconds"] = 0
    assert list(run(off).requests.ttft_s) != list(indexed.requests.ttft_s)


def test_moving_back_to_the_idc_saves_cloud_and_fails_nothing() -> None:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "rebalance.yaml").read_text())
    doc["spec"]["duration"] = "15m"
    results = {}
    for on in (True, False):
        varied = sc.vary(
            doc,
            "autoscaling:deepseek",
            {"autoscaling": {"policy": "slo", "slo": {"ttftSeconds": 2}, "rebalance": on}},
            EXAMPLES,
        )
        results[on] = simulate(sc.parse(varied, "test", EXAMPLES))
    moved, stayed = results[True], results[False]
    assert moved.moves_to_idc == 1 and stayed.moves_to_idc == 0
    assert moved.gpu_seconds["cloud"] < stayed.gpu_seconds["cloud"]
    assert len(moved.requests.failed_arrival_s) == 0
    killed = [d.message for d in moved.decisions if d.kind == "Killing"]
    assert any("MovedToIdc" in m for m in killed)
