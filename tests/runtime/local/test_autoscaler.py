"""The autoscaler controller on virtual time: the HPA algorithm fed by scraped samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierserve.model import InferenceService, Phase, Replica, load_documents
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.runtime.local.autoscaler import Autoscaler
from tierserve.runtime.local.scraper import MetricsScraper
from tierserve.runtime.local.store import SqliteStore
from tierserve.runtime.promtext import parse_metrics

T0 = 1_800_000_000.0
METRIC = "DCGM_CUSTOM_PROCESS_SM_UTIL"
SERVICE = f"""
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: deepseek}}
spec:
  gpus: 1
  replicas: 1
  minReplicas: 1
  maxReplicas: 3
  scaleMetric: {METRIC}
  scaleTarget: 50
  command: vllm serve /model/x
"""


class World:
    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "db"
        self.start()
        (svc,) = load_documents(SERVICE)
        self.store.put(svc)

    def start(self) -> None:
        """A control plane on ``db``: its store, a fresh scraper and a fresh autoscaler."""
        self.store = SqliteStore(self.db)
        self.scraper = MetricsScraper()
        self.autoscaler = Autoscaler(
            self.store,
            self.scraper,
            AutoscalerConfig(period_s=15, downscale_stabilization_s=300, metric_max_age_s=30),
        )

    def restart(self) -> None:
        self.store.close()
        self.start()

    def replica(self, name: str, phase: Phase) -> None:
        r: Replica = Replica.new(
            name, spec={"service": "deepseek"}, status={"phase": phase.value, "createdS": T0}
        )
        self.store.put(r)

    def util(self, now: float, **by_replica: float) -> None:
        for name, value in by_replica.items():
            self.scraper.record(("default", name), now, {METRIC: value})

    def set_phase(self, name: str, phase: Phase) -> None:
        replica = self.store.get(Replica, "default", name)
        assert replica is not None
        self.store.put(replica.with_status(phase=phase))

    def set_replicas(self, n: int) -> None:
        svc = self.store.get(InferenceService, "default", "deepseek")
        assert svc is not None
        self.store.put(svc.model_copy(update={"spec": svc.spec.model_copy(update={"replicas": n})}))

    def desired(self) -> int:
        svc = self.store.get(InferenceService, "default", "deepseek")
        assert svc is not None
        return svc.spec.replicas

    def rescales(self) -> list[str]:
        svc = self.store.get(InferenceService, "default", "deepseek")
        assert svc is not None
        return [e.message for e in self.store.events(svc) if e.reason == "SuccessfulRescale"]


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_seed_load_scales_out_without_runaway_during_cold_start(w: World) -> None:
    w.replica("a", Phase.READY)
    w.util(T0, a=100)
    w.autoscaler.tick(T0)
    # ceil(1 * 100 / 50) = 2
    assert w.desired() == 2
    assert w.rescales() == [f"New size: 2; reason: pods metric {METRIC} above target"]

    # The new replica is provisioning on the virtual node: Pending counts as 0 on
    # scale-up, so (100 + 0) / 2 = 50 -> ratio 1.0 -> no change (no runaway).
    w.replica("b", Phase.PROVISIONING)
    w.util(T0 + 15, a=100)
    w.autoscaler.tick(T0 + 15)
    assert w.desired() == 2

    # Both Ready and busy: ceil(2 * 100 / 50) = 4, clamped to maxReplicas 3.
    w.set_phase("b", Phase.READY)
    w.util(T0 + 30, a=100, b=95)
    w.autoscaler.tick(T0 + 30)
    assert w.desired() == 3


def test_period_is_respected(w: World) -> None:
    w.replica("a", Phase.READY)
    w.util(T0, a=100)
    w.autoscaler.tick(T0)
    assert w.desired() == 2
    w.set_replicas(1)
    w.autoscaler.tick(T0 + 5)  # within the 15 s period: not evaluated
    assert w.desired() == 1


def test_stabilization_holds_scale_down_for_the_window(w: World) -> None:
    for name in ("a", "b", "c"):
        w.replica(name, Phase.READY)
    w.set_replicas(3)
    w.util(T0, a=100, b=100, c=100)
    w.autoscaler.tick(T0)  # ceil(3 * 2) = 6 -> 3: recommendation 3 recorded at T0
    assert w.desired() == 3
    # Load stops: the raw recommendation is 1, but the max over the last 300 s is 3.
    for t in range(15, 300, 15):
        w.util(T0 + t, a=0, b=0, c=0)
        w.autoscaler.tick(T0 + t)
        assert w.desired() == 3, f"scaled down at +{t}s, inside the 300 s window"
    w.util(T0 + 315, a=0, b=0, c=0)
    w.autoscaler.tick(T0 + 315)  # the T0 recommendation has left the window
    assert w.desired() == 1
    assert w.rescales()[-1] == "New size: 1; reason: All metrics below target"


def test_a_restart_keeps_the_stabilization_window(w: World) -> None:
    for name in ("a", "b", "c"):
        w.replica(name, Phase.READY)
    w.set_replicas(3)
    w.util(T0, a=100, b=100, c=100)
    w.autoscaler.tick(T0)  # recommendation 3 recorded at T0
    w.restart()  # a new autoscaler and scraper on the same store
    w.util(T0 + 60, a=0, b=0, c=0)
    w.autoscaler.tick(T0 + 60)  # raw recommendation 1; the window still holds 3
    assert w.desired() == 3, "a restart must not scale in inside the stabilization window"
    w.util(T0 + 315, a=0, b=0, c=0)
    w.autoscaler.tick(T0 + 315)
    assert w.desired() == 1


def test_state_of_a_deleted_service_is_dropped(w: World) -> None:
    w.replica("a", Phase.READY)
    w.util(T0, a=10)
    w.autoscaler.tick(T0)
    assert list(w.store.state_items("autoscaler/")) == ["autoscaler/default/deepseek"]
    svc = w.store.get(InferenceService, "default", "deepseek")
    assert svc is not None
    w.store.delete(svc)
    w.autoscaler.tick(T0 + 15)
    assert w.store.state_items("autoscaler/") == {}


def test_missing_and_stale_metrics(w: World) -> None:
    w.replica("a", Phase.READY)
    w.replica("b", Phase.STARTING)  # running, no metric yet: missing
    w.util(T0, a=100)
    w.autoscaler.tick(T0)
    # ratio 2 > 1: missing b counts 0 -> (100 + 0) / 2 = 50 -> 1.0: keep 1 replica
    # (spec.replicas is 1 while 2 exist: the calculator works on the pods it sees).
    assert w.desired() == 1
    w.autoscaler.tick(T0 + 100)  # a's sample is 100 s old (> 30 s): every metric missing
    assert w.desired() == 1


def test_parse_metrics_sums_series_and_keeps_only_histogram_sums_and_counts() -> None:
    text = """# HELP vllm:num_requests_waiting Waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
# HELP DCGM_CUSTOM_PROCESS_SM_UTIL SM util.
# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge
DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="0",pid="1"} 40.0
DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="1",pid="1"} 20.0
# HELP vllm:e2e_request_latency_seconds E2E.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0"} 2.0
vllm:e2e_request_latency_seconds_count 2.0
vllm:e2e_request_latency_seconds_sum 1.5
"""
    assert parse_metrics(text) == {  # buckets are never a scale metric; sum/count make means
        "vllm:num_requests_waiting": 3.0,
        "DCGM_CUSTOM_PROCESS_SM_UTIL": 60.0,
        "vllm:e2e_request_latency_seconds_count": 2.0,
        "vllm:e2e_request_latency_seconds_sum": 1.5,
    }


def test_the_planners_last_plan_is_in_the_service_status(tmp_path: Path) -> None:
    from tierserve.policy.autoscaling import PlannerContext
    from tierserve.policy.planner import Load, Tier
    from tierserve.runtime.local.cluster import default_nodes

    class Inputs:  # the planner's read, as the local runtime gives it
        def sample(self, service: InferenceService, now: float) -> None:
            pass

        def learn_cold_start(self, tier: str, seconds: float) -> None:
            pass

        def context(self, service, replicas, nodes, policies, now, correction=1.0):  # type: ignore[no-untyped-def]
            tiers = (Tier("idc", 1, 0, 36.0), Tier("cloud", 0, 8, 81.0, 2.5))
            return PlannerContext(Load(3.0, 1500, 256), tiers, 1.2)

    store = SqliteStore(tmp_path / "db")
    store.put_all(default_nodes(None))
    (svc,) = load_documents(
        SERVICE.replace(f"  scaleMetric: {METRIC}\n  scaleTarget: 50\n", "")
        + "  autoscaling: {policy: slo, slo: {ttftSeconds: 2}}\n"
    )
    store.put(svc)
    autoscaler = Autoscaler(store, MetricsScraper(), AutoscalerConfig(period_s=15), Inputs())  # type: ignore[arg-type]
    autoscaler.tick(T0)
    current = store.get(InferenceService, "default", "deepseek")
    assert current is not None and current.spec.replicas == 3
    plan = current.status.autoscaler
    assert plan is not None and plan.policy == "slo" and plan.desired == 3
    assert plan.per_tier == {"idc": 1, "cloud": 2}
    assert plan.expected_cost_per_hour == pytest.approx(5.0)
    assert plan.reason.startswith("load 3.00 req/s needs 3")
    # on the API and in describe it is part of the status
    assert current.to_dict()["status"]["autoscaler"]["perTier"] == {"idc": 1, "cloud": 2}
