"""The local controllers on virtual time, with fake processes: placement, cold start,
scale-in order, failure replacement and billing (the seed scenario)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tierserve.examples import seed_text
from tierserve.model import InferenceService, Node, Phase, Replica, load_documents
from tierserve.policy.lifecycle import SupervisorConfig
from tierserve.runtime.local.cluster import (
    IDC_NODE,
    VIRTUAL_NODE,
    VirtualNodeSettings,
    default_nodes,
)
from tierserve.runtime.local.controllers import (
    CLOUD_COST,
    GPU_SECONDS,
    ControllerSettings,
    Reconciler,
)
from tierserve.runtime.local.health import ProbeTarget
from tierserve.runtime.local.runner import ReplicaRunner
from tierserve.runtime.local.store import SqliteStore
from tierserve.testing import seed_service_yaml
from tierserve.testing.fakes import FakeLauncher, FakeProcessTable

T0 = 1_800_000_000.0
COLD_START_S = 45.0
PRICE = 3.6  # per GPU-hour: 0.001 per GPU-second


class ManualClock:
    """Virtual time that moves only when the test says; sleeping just yields."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def set(self, now: float) -> None:
        self._now = now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.001)


class TableProbe:
    """Healthy while a fake process listens on the port."""

    def __init__(self, table: FakeProcessTable) -> None:
        self.table = table

    async def healthy(self, port: int, target: ProbeTarget) -> bool:
        return any(p.running and p.spec.port == port for p in self.table.processes.values())


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.clock = ManualClock(T0)
        self.store = SqliteStore(tmp / "state.db", clock=self.clock.now)
        self.table = FakeProcessTable()
        self.launcher = FakeLauncher(str(tmp), self.table, self.clock)
        self.runner = ReplicaRunner(
            self.launcher,
            TableProbe(self.table),
            self.clock,
            str(tmp),
            supervisor=SupervisorConfig(
                probe_interval_s=0.01,
                check_interval_s=0.01,
                start_timeout_s=5.0,
                grace_s=0.01,
                backoff_initial_s=0.01,
            ),
        )
        self.reconciler = Reconciler(
            self.store, self.runner, ControllerSettings(drain_grace_s=0, stop_grace_s=0.01, seed=7)
        )
        nodes = default_nodes(VirtualNodeSettings(COLD_START_S, PRICE, 8))
        docs = load_documents(
            seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml")
        )
        self.store.put_all([*nodes, *docs])

    def service(self, replicas: int) -> None:
        (svc,) = load_documents(seed_service_yaml(replicas))
        assert isinstance(svc, InferenceService)
        current = self.store.get(InferenceService, "default", "deepseek")
        if current is not None:
            svc = svc.model_copy(update={"status": current.status})
        self.store.put(svc)

    async def tick(self, at: float, settle: int = 20) -> list[Replica]:
        self.clock.set(at)
        self.reconciler.tick(at)
        for _ in range(settle):  # let supervisors and stop tasks run
            await asyncio.sleep(0.002)
        return self.store.list(Replica)

    def where(self) -> list[tuple[str | None, Phase]]:
        return sorted((r.node_name, r.phase) for r in self.store.list(Replica))

    async def close(self) -> None:
        await self.runner.shutdown(stop_processes=True, grace_s=0.01)
        self.store.close()


@pytest.fixture
async def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    yield harness  # type: ignore[misc]
    await harness.close()


async def test_seed_scale_out_spills_to_virtual_node_after_cold_start(h: Harness) -> None:
    h.service(replicas=1)
    await h.tick(T0)  # create
    await h.tick(T0)  # schedule + start
    await h.tick(T0 + 1)
    assert h.where() == [(IDC_NODE, Phase.READY)]

    h.service(replicas=3)
    await h.tick(T0 + 10)  # two new replicas, Pending
    await h.tick(T0 + 10)  # placed: idc001 is full (1 GPU), so unit 1 (eci)
    assert h.where() == [
        (IDC_NODE, Phase.READY),
        (VIRTUAL_NODE, Phase.PROVISIONING),
        (VIRTUAL_NODE, Phase.PROVISIONING),
    ]
    await h.tick(T0 + 10 + COLD_START_S - 1)  # still provisioning at 44 s
    assert [p for _, p in h.where()].count(Phase.PROVISIONING) == 2
    await h.tick(T0 + 10 + COLD_START_S)  # cold start over: processes start
    await h.tick(T0 + 10 + COLD_START_S + 1)
    assert h.where() == [
        (IDC_NODE, Phase.READY),
        (VIRTUAL_NODE, Phase.READY),
        (VIRTUAL_NODE, Phase.READY),
    ]
    virtual = [r for r in h.store.list(Replica) if r.node_name == VIRTUAL_NODE]
    assert {r.status.unit for r in virtual} == {1}
    assert all(r.labels["tierserve.io/tier"] == "cloud" for r in virtual)
    assert len(h.table.running()) == 3


async def test_scale_in_removes_cloud_replicas_first_and_bills_them(h: Harness) -> None:
    h.service(replicas=3)
    await h.tick(T0)
    await h.tick(T0)  # 1 on idc001, 2 provisioning on the virtual node since T0
    await h.tick(T0 + COLD_START_S)
    await h.tick(T0 + COLD_START_S + 1)
    idc = next(r for r in h.store.list(Replica) if r.node_name == IDC_NODE)

    h.service(replicas=1)
    await h.tick(T0 + 100)  # both virtual replicas Terminating (drain grace 0)
    await h.tick(T0 + 100)  # stopped and gone
    left = h.store.list(Replica)
    assert [r.name for r in left] == [idc.name]
    assert len(h.table.running()) == 1

    gpu_s = {dict(k)["tier"]: 0.0 for k in h.store.counters(GPU_SECONDS)}
    for labels, value in h.store.counters(GPU_SECONDS).items():
        gpu_s[dict(labels)["tier"]] += value
    # Each virtual replica billed from scheduling at T0 to its last tick at T0+100:
    # 2 replicas * 100 s * 1 GPU = 200 GPU-seconds; cost 200 * 3.6 / 3600 = 0.2.
    assert gpu_s["cloud"] == pytest.approx(200.0)
    cost = sum(h.store.counters(CLOUD_COST).values())
    assert cost == pytest.approx(0.2)


async def test_unschedulable_replica_stays_pending_with_reason_and_is_retried(
    h: Harness,
) -> None:
    h.store.delete(h.store.get(Node, "", VIRTUAL_NODE))  # type: ignore[arg-type]
    h.service(replicas=2)
    await h.tick(T0)
    await h.tick(T0)
    pending = [r for r in h.store.list(Replica) if r.phase == Phase.PENDING]
    assert len(pending) == 1
    assert pending[0].status.reason == "Unschedulable"
    assert "nvidia.com/gpu" in pending[0].status.message
    events = [e.reason for e in h.store.events(pending[0])]
    assert "FailedScheduling" in events

    h.store.put(default_nodes(VirtualNodeSettings(COLD_START_S, PRICE, 8))[1])
    await h.tick(T0 + 5)
    replica = h.store.get(Replica, "default", pending[0].name)
    assert replica is not None and replica.phase == Phase.PROVISIONING


async def test_crashed_process_restarts_and_counts(h: Harness) -> None:
    h.service(replicas=1)
    await h.tick(T0)
    await h.tick(T0)
    await h.tick(T0 + 1)
    (replica,) = h.store.list(Replica)
    assert replica.phase == Phase.READY and replica.status.pid is not None
    h.table.exit(replica.status.pid, code=1)
    for i in range(50):
        await h.tick(T0 + 2 + i, settle=5)  # the back-off runs on virtual time
        (replica,) = h.store.list(Replica)
        if replica.status.restarts and replica.phase == Phase.READY:
            break
    assert replica.status.restarts == 1
    assert replica.phase == Phase.READY
    assert len(h.table.running()) == 1


async def test_failed_start_is_replaced_by_a_new_replica(h: Harness) -> None:
    h.runner.probe = type("Never", (), {"healthy": staticmethod(_never)})()
    h.service(replicas=1)
    await h.tick(T0)
    await h.tick(T0)
    (first,) = h.store.list(Replica)
    h.clock.set(T0 + 10)  # past the 5 s start timeout
    for _ in range(50):
        await asyncio.sleep(0.002)
        current = h.store.get(Replica, "default", first.name)
        if current is not None and current.phase == Phase.FAILED:
            break
    await h.tick(T0 + 10)  # Failed: deleted, and a new one created
    names = [r.name for r in h.store.list(Replica)]
    assert first.name not in names and len(names) == 1
    svc = h.store.get(InferenceService, "default", "deepseek")
    assert svc is not None
    assert any(e.reason == "ReplicaFailed" for e in h.store.events(svc))
    assert not h.table.running() or all(
        p.spec.replica.endswith(names[0]) for p in h.table.running()
    )


async def _never(port: int, target: ProbeTarget) -> bool:
    return False


async def test_one_service_that_cannot_be_reconciled_stops_no_other(h: Harness) -> None:
    h.service(replicas=2)
    await h.tick(T0)
    await h.tick(T0)
    await h.tick(T0 + 1)
    assert h.where() == [(IDC_NODE, Phase.READY), (VIRTUAL_NODE, Phase.PROVISIONING)]
    # A service whose derived label is too long (stored before names were checked): its
    # replicas cannot be created. It must not stop the other service's controllers.
    (good,) = load_documents(seed_service_yaml(1))
    meta = good.metadata.model_copy(update={"name": "x" * 60})
    bad = good.model_copy(update={"metadata": meta})
    h.store.put(bad)
    h.service(replicas=1)  # the other service scales in: one replica must go
    await h.tick(T0 + 2)
    await h.tick(T0 + 3)
    replicas = h.store.list(Replica)
    assert [(r.spec.service, r.phase) for r in replicas] == [("deepseek", Phase.READY)]
    warnings = [e for e in h.store.events(bad) if e.reason == "FailedReconcile"]
    assert warnings and warnings[0].type == "Warning"
    assert "service controller" in warnings[0].message and len(warnings[0].message) < 400


async def test_changed_command_rolls_replicas_one_at_a_time(h: Harness) -> None:
    h.service(replicas=1)
    await h.tick(T0)
    await h.tick(T0)
    await h.tick(T0 + 1)
    [old] = h.store.list(Replica)
    assert old.ready and old.node_name == IDC_NODE
    # serve update kserve --command ...: a new template
    svc = h.store.get(InferenceService, "default", "deepseek")
    assert svc is not None
    spec = svc.spec.model_copy(update={"command": svc.spec.command + " --max-num-seqs 8"})
    h.store.put(svc.model_copy(update={"spec": spec}))
    await h.tick(T0 + 2)  # surge: a new replica (idc001 is full: the virtual node)
    await h.tick(T0 + 2)
    assert h.where() == [(IDC_NODE, Phase.READY), (VIRTUAL_NODE, Phase.PROVISIONING)]
    await h.tick(T0 + 2 + COLD_START_S)  # the new one starts; the old one still serves
    assert sum(1 for r in h.store.list(Replica) if r.ready) >= 1
    await h.tick(T0 + 3 + COLD_START_S)  # the new one is Ready: now the old one goes
    await h.tick(T0 + 4 + COLD_START_S)
    await h.tick(T0 + 5 + COLD_START_S)
    [new] = h.store.list(Replica)
    assert new.name != old.name and new.ready
    [process] = h.table.running()
    assert "--max-num-seqs" in " ".join(process.spec.argv)  # runs the new command
    deleted = [e.message for e in h.store.events(svc) if e.reason == "SuccessfulDelete"]
    assert deleted == [f"Deleted replica: {old.name} (rolling update)"]


async def test_changing_only_the_scale_target_rolls_nothing(h: Harness) -> None:
    h.service(replicas=1)
    await h.tick(T0)
    await h.tick(T0)
    [before] = h.store.list(Replica)
    svc = h.store.get(InferenceService, "default", "deepseek")
    assert svc is not None
    autoscaling = {"scale_metric": "tierserve:inflight_requests", "scale_target": 8.0}
    spec = svc.spec.model_copy(update={**autoscaling, "max_replicas": 5})
    h.store.put(svc.model_copy(update={"spec": spec}))
    await h.tick(T0 + 1)
    await h.tick(T0 + 2)
    assert [r.name for r in h.store.list(Replica)] == [before.name]


async def test_a_timeout_wait_is_one_event_naming_its_deadline(h: Harness) -> None:
    (policy,) = load_documents(
        seed_text("resourcepolicy.yaml").replace(
            "  - resource: ecs\n", "  - resource: ecs\n    max: 2\n"
        )
        + "  whenTryNextUnits: {policy: TimeoutOrExceedMax, timeout: 10m}\n"
    )
    h.store.put(policy)
    h.service(replicas=2)
    await h.tick(T0)
    for t in range(1, 60):  # the second replica waits for idc001 (unit 0 is under max 2)
        await h.tick(T0 + t, settle=0)
    waiting = [r for r in h.store.list(Replica) if r.phase == Phase.PENDING]
    assert len(waiting) == 1
    events = [e for e in h.store.events(waiting[0]) if e.reason == "FailedScheduling"]
    assert len(events) == 1, [e.message for e in events]  # folded, not one per tick
    assert events[0].count == 60  # T0 (created and tried at once) to T0 + 59
    # created at T0: the deadline is T0 + 10 min, the same words on every attempt
    assert "600s timeout ends at 2027-01-15T08:10:00Z" in events[0].message
