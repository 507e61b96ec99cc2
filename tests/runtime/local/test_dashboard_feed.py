"""The dashboard feed over a real store, with fake metrics and gateway: what one point
per service says (replicas per tier, cold starts, rate, quantiles, attainment, cost,
$/1M tokens), the tables, the events, and the live subscribers."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from tierserve.examples import seed_text
from tierserve.model import InferenceService, Replica, load_documents
from tierserve.policy.billing import CLOUD_COST
from tierserve.runtime.local.cluster import IDC_NODE, VIRTUAL_NODE, default_nodes
from tierserve.runtime.local.feed import GENERATED, TPOT, TTFT, DashboardFeed, FeedSettings
from tierserve.runtime.local.store import SqliteStore

INF = math.inf
SERVICE = """\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {name: deepseek}
spec:
  gpus: 1
  replicas: 3
  command: vllm serve /model
  autoscaling: {policy: slo, slo: {ttftSeconds: 0.5, tpotSeconds: 0.05}}
"""


class Metrics:
    """The scraper's answers, set by the test."""

    def __init__(self) -> None:
        self.by_replica: dict[tuple[str, str], dict[str, dict[float, float]]] = {}
        self.values: dict[tuple[str, str], dict[str, float]] = {}

    def buckets(self, key: tuple[str, str]) -> dict[str, dict[float, float]]:
        return self.by_replica.get(key, {})

    def fresh(self, key: tuple[str, str], now_s: float, max_age_s: float) -> dict[str, float]:
        return self.values.get(key, {})


class Gateway:
    def __init__(self) -> None:
        self.count = 0
        self.flying: dict[str, int] = {}

    def arrived(self, namespace: str, service: str) -> int:
        return self.count

    def in_flight(self, replica: str) -> int:
        return self.flying.get(replica, 0)


def replica(name: str, node: str | None, phase: str, scheduled_s: float | None) -> Replica:
    r: Replica = Replica.new(
        name,
        metadata={"labels": {"app": "isvc.deepseek-predictor"}},
        spec={"service": "deepseek", "requests": {"nvidia.com/gpu": 1}},
        status={
            "phase": phase,
            "nodeName": node,
            "createdS": 0.0,
            "scheduledS": scheduled_s,
            "unit": None if node is None else (0 if node == IDC_NODE else 1),
        },
    )
    return r


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "state.db")
    s.put_all(default_nodes())  # the virtual node: 2.5 per GPU-hour (the default price)
    s.put_all(load_documents(seed_text("resourcepolicy.yaml"), "seed"))
    s.put_all(load_documents(SERVICE, "svc"))
    return s


def test_points_tables_and_events(store: SqliteStore) -> None:
    metrics, gateway = Metrics(), Gateway()
    feed = DashboardFeed(store, metrics, gateway, FeedSettings(interval_s=5.0, window_s=10.0))
    service = store.get(InferenceService, "default", "deepseek")
    assert service is not None
    store.put(replica("r-idc", IDC_NODE, "Ready", 0.0))
    first = feed.sample(100.0)["points"]["default/deepseek"]
    assert (first["idcAllocated"], first["idcReady"], first["cloudAllocated"]) == (1, 1, 0)
    assert first["requestRate"] is None  # one look at the counter is no rate yet
    assert first["ttftP50"] is None and first["coldStarts"] == 0

    # Two cloud replicas: one Ready, one still cold-starting; one Pending; 50 requests.
    store.put(replica("r-c1", VIRTUAL_NODE, "Ready", 101.0))
    store.put(replica("r-c2", VIRTUAL_NODE, "Starting", 103.0))
    store.put(replica("r-p", None, "Pending", None))
    store.add_counter(
        CLOUD_COST,
        {"namespace": "default", "service": "deepseek", "tier": "cloud", "node": VIRTUAL_NODE},
        0.01,
    )
    store.record(service, "Normal", "SuccessfulRescale", "New size: 3; reason: SLO", 101.0)
    gateway.count = 50
    gateway.flying = {"r-c1": 2}
    for name in ("r-idc", "r-c1"):
        metrics.by_replica[("default", name)] = {
            TTFT: {0.1: 0.0, 1.0: 0.0, INF: 0.0},
            TPOT: {0.01: 0.0, 0.1: 0.0, INF: 0.0},
        }
        metrics.values[("default", name)] = {GENERATED: 0.0}
    feed.sample(105.0)  # the first look at the buckets: their baseline
    # In the next period: r-idc 10 requests (8 under 0.1 s), r-c1 10 (all under 1 s).
    metrics.by_replica[("default", "r-idc")] = {
        TTFT: {0.1: 8.0, 1.0: 10.0, INF: 10.0},
        TPOT: {0.01: 10.0, 0.1: 10.0, INF: 10.0},
    }
    metrics.by_replica[("default", "r-c1")] = {
        TTFT: {0.1: 0.0, 1.0: 10.0, INF: 10.0},
        TPOT: {0.01: 0.0, 0.1: 10.0, INF: 10.0},
    }
    metrics.values[("default", "r-idc")] = {GENERATED: 3000.0}
    metrics.values[("default", "r-c1")] = {GENERATED: 1000.0}
    store.add_counter(
        CLOUD_COST,
        {"namespace": "default", "service": "deepseek", "tier": "cloud", "node": VIRTUAL_NODE},
        0.02,
    )
    gateway.count = 100
    update = feed.sample(110.0)
    p = update["points"]["default/deepseek"]
    assert (p["idcAllocated"], p["idcReady"]) == (1, 1)
    assert (p["cloudAllocated"], p["cloudReady"], p["pending"]) == (2, 1, 1)
    assert p["requestRate"] == 10.0  # (100 - 50) / 5 s: over rate_s (5 s)
    # 20 TTFTs: 8 <= 0.1, 20 <= 1.0. p50 = rank 10: 0.1 + 0.9 * (10 - 8) / 12 = 0.25
    assert p["ttftP50"] == pytest.approx(0.25)
    # SLO 0.5 s: (8 + 12 * 0.4 / 0.9) / 20 = 0.6667
    assert p["attainmentTtft"] == pytest.approx(0.6667, abs=1e-4)
    # TPOT SLO 0.05: (10 + 10 * 0.04 / 0.09) / 20
    assert p["attainmentTpot"] == pytest.approx((10 + 10 * 0.04 / 0.09) / 20, abs=1e-4)
    # Two cloud replicas billed now at 2.5 per GPU-hour each.
    node_price = next(n for n in update["nodes"] if n["name"] == VIRTUAL_NODE)["pricePerGpuHour"]
    assert p["cloudCostPerHour"] == pytest.approx(2 * node_price)
    assert p["cloudCostTotal"] == pytest.approx(0.03)
    # The window (10 s: 100 -> 110): cost 0.03 for the 1000 tokens the cloud generated.
    assert p["usdPerMTokCloud"] == pytest.approx(0.03 / 1000 * 1e6)
    assert p["usdPerMTokIdc"] == 0.0
    assert p["outputTokensRate"] == pytest.approx(4000 / 10)

    detail = update["services"][0]
    pods = {row["name"]: row for row in detail["pods"]}
    assert pods["r-c1"]["tier"] == "cloud" and pods["r-c1"]["inFlight"] == 2
    assert pods["r-c1"]["costPerHour"] == pytest.approx(node_price)
    assert pods["r-idc"]["costPerHour"] == 0.0 and pods["r-p"]["node"] == ""
    assert pods["r-idc"]["ttftP50"] == pytest.approx(0.1 * 5 / 8)
    units = [(u["index"], u["fill"], u["max"]) for u in detail["units"]]
    assert units[0][:2] == (0, 1) and units[1][:2] == (1, 2)
    assert detail["slo"]["ttftSeconds"] == 0.5
    assert detail["autoscaler"]["policy"] == "slo"
    nodes = {n["name"]: n for n in update["nodes"]}
    assert nodes[IDC_NODE]["gpusUsed"] == 1 and nodes[IDC_NODE]["gpusFree"] == 0
    assert {r["name"] for r in nodes[VIRTUAL_NODE]["replicas"]} == {"r-c1", "r-c2"}

    overview = feed.overview()
    history = overview["services"][0]["history"]
    assert history["t"] == [100.0, 105.0, 110.0]
    assert history["cloudAllocated"] == [0, 2, 2]
    assert history["coldStarts"] == [0, 2, 0]  # two cloud replicas scheduled at 105
    reasons = [e["reason"] for e in overview["events"]]
    assert reasons == ["SuccessfulRescale"]
    assert overview["bytesPerServiceHour"] == 109_440


def test_a_repeated_event_is_sent_again_and_gone_services_are_forgotten(
    store: SqliteStore,
) -> None:
    feed = DashboardFeed(store, Metrics(), Gateway(), FeedSettings(interval_s=1.0))
    service = store.get(InferenceService, "default", "deepseek")
    assert service is not None
    store.record(service, "Warning", "BudgetBlocked", "over budget", 1.0, fold=True)
    assert [e["count"] for e in feed.sample(1.0)["events"]] == [1]
    assert feed.sample(2.0)["events"] == []  # nothing new
    store.record(service, "Warning", "BudgetBlocked", "still over", 2.5, fold=True)
    again = feed.sample(3.0)["events"]
    assert [(e["count"], e["message"]) for e in again] == [(2, "still over")]
    assert len(feed.overview()["events"]) == 1
    store.delete(service)
    feed.sample(4.0)
    assert feed.overview()["services"] == [] and feed.history.series == {}


def test_the_rate_is_over_rate_s_not_one_short_interval(store: SqliteStore) -> None:
    gateway = Gateway()
    feed = DashboardFeed(store, Metrics(), gateway, FeedSettings(interval_s=0.5, rate_s=2.0))
    rates = []
    for i in range(9):  # 4 requests arrive together every 2 s: at t = 0.2, 2.2, 4.2
        gateway.count = 4 * (1 + int((i * 0.5 - 0.2) // 2)) if i else 0
        rates.append(feed.sample(i * 0.5)["points"]["default/deepseek"]["requestRate"])
    assert rates[0] is None
    # Over >= 2 s the rate stays near 2/s instead of jumping between 0 and 8/s.
    assert all(1.0 <= r <= 4.0 for r in rates[4:]), rates


def test_due_every_interval(store: SqliteStore) -> None:
    feed = DashboardFeed(store, Metrics(), Gateway(), FeedSettings(interval_s=5.0))
    assert feed.due(0.0)
    feed.tick(0.0)
    assert not feed.due(4.9) and feed.due(5.0)


async def test_subscribers_get_updates_and_the_end(store: SqliteStore) -> None:
    feed = DashboardFeed(store, Metrics(), Gateway(), FeedSettings(interval_s=1.0))
    queue = feed.subscribe()
    feed.sample(1.0)
    update: Any = await asyncio.wait_for(queue.get(), 1)
    assert "default/deepseek" in update["points"]
    feed.close()
    assert await asyncio.wait_for(queue.get(), 1) is None


async def test_a_subscriber_that_falls_behind_is_dropped(store: SqliteStore) -> None:
    feed = DashboardFeed(store, Metrics(), Gateway(), FeedSettings(interval_s=1.0))
    queue = feed.subscribe()
    for i in range(100):  # never read: past its queue it is let go, with the end mark
        feed.sample(float(i))
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    assert items[-1] is None and len(items) <= 64
