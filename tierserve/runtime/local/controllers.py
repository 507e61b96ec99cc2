"""The local controllers: read → decide → apply, level-triggered, once per tick.

Every tick reads the whole state once (``now`` read once, at the edge), asks the pure
decisions in ``policy/`` what to do and applies their actions, all in one store
transaction (a crash mid-tick leaves the store as it was before the tick):

1. **billing** (``policy.billing``) — the GPU-seconds of every replica since it was
   last billed, per tier, cloud ones at the node's price; counters and ``billedUntilS``
   move together;
2. **service controller** (``policy.replicaset``) — Pending replicas up to
   ``spec.replicas``, the surplus Terminating in the scale-in order (cloud before IDC),
   rolling updates one at a time, Failed replicas replaced, replicas of deleted
   services or vanished nodes (or deleted by a user) terminated;
3. **scheduler** (``policy.provisioning`` over ``policy.placement``) — places Pending
   replicas; one that cannot be placed stays Pending with the reason (event
   ``FailedScheduling``) and is tried again next tick;
4. **virtual-node provider** (``policy.provisioning``) — a replica bound to a virtual
   node is Provisioning for the node's cold start, then Starting;
5. **runtime** — ``ReplicaRunner`` starts the processes of Starting replicas; a
   Terminating replica leaves routing at once and its process is stopped once drained
   or after ``drain_grace_s`` (``policy.drain``), then the replica is deleted;
6. **status** — each service's desired and available replicas.

Each controller writes only its own fields; what a replica's process reports (Ready,
restarts, pid, Failed) comes in through :meth:`Reconciler.observe`, the one writer of
those, with ``policy.lifecycle`` saying what each report changes. One object that
cannot be reconciled stops nothing else: a failure becomes a ``FailedReconcile``
Warning event on that object (and a logged traceback) while the others go on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from tierserve.errors import TierserveError
from tierserve.model import (
    InferenceService,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Phase,
    Replica,
    ResourcePolicy,
)
from tierserve.model.base import TypedObject
from tierserve.policy import billing, drain, lifecycle, provisioning, replicaset
from tierserve.policy.billing import CLOUD_COST, GPU_SECONDS
from tierserve.policy.devices import held_gpus
from tierserve.policy.naming import replica_name
from tierserve.policy.snapshot import Snapshot
from tierserve.runtime.local.isolation import each_object
from tierserve.runtime.local.runner import ReplicaRunner
from tierserve.runtime.local.store import Store

log = logging.getLogger("tierserve.controllers")

__all__ = ["CLOUD_COST", "GPU_SECONDS", "ControllerSettings", "Reconciler"]

InflightFn = Callable[[Replica], int]
Key = tuple[str, str]


def _no_inflight(_: Replica) -> int:
    return 0


@dataclass
class ControllerSettings:
    drain_grace_s: float = 30.0
    """A Terminating replica gets this long to finish its in-flight requests."""
    stop_grace_s: float = 10.0
    """SIGTERM → SIGKILL grace when its process is stopped."""
    seed: int | None = None
    """Seed of replica-name suffixes (tests); None = random."""


def _key(obj: TypedObject) -> Key:
    return (obj.namespace, obj.name)


@dataclass
class World:
    """What one tick read; each write goes to the store and here, so the next step sees
    it without reading the store again."""

    nodes: dict[str, Node]
    policies: list[ResourcePolicy]
    services: dict[Key, InferenceService]
    replicas_by_key: dict[Key, Replica]
    claims: list[PersistentVolumeClaim] = field(default_factory=list)
    volumes: list[PersistentVolume] = field(default_factory=list)

    @property
    def replicas(self) -> list[Replica]:
        return list(self.replicas_by_key.values())

    def service_of(self, replica: Replica) -> InferenceService | None:
        return self.services.get(replicaset.service_key(replica))

    def node_of(self, replica: Replica) -> Node | None:
        return self.nodes.get(replica.node_name or "")


class _Writer:
    """Applies actions: the store and the tick's world, events with them."""

    def __init__(self, store: Store, world: World, now: float) -> None:
        self.store = store
        self.world = world
        self.now = now

    def put(self, replica: Replica) -> Replica:
        self.store.put(replica)
        self.world.replicas_by_key[_key(replica)] = replica
        return replica

    def delete(self, replica: Replica) -> None:
        self.store.delete(replica)
        self.world.replicas_by_key.pop(_key(replica), None)

    def put_service(self, service: InferenceService) -> None:
        self.store.put(service)
        self.world.services[_key(service)] = service

    def event(
        self, obj: TypedObject, kind: str, reason: str, message: str, *, fold: bool = False
    ) -> None:
        self.store.record(obj, kind, reason, message, self.now, fold=fold)

    def terminate(self, replica: Replica, reason: str) -> None:
        if replica.terminating:
            return
        self.put(
            replica.with_status(
                phase=Phase.TERMINATING, terminating_s=self.now, reason=reason, message=""
            )
        )
        self.event(replica, "Normal", "Killing", f"Stopping replica ({reason})")


class _Controller:
    """One controller: ``tick`` decides over the world and applies through the writer."""

    step = ""

    def __init__(self, store: Store) -> None:
        self.store = store

    def tick(self, w: _Writer) -> None:
        raise NotImplementedError

    def each(self, obj: TypedObject, now: float) -> AbstractContextManager[None]:
        return each_object(self.store, obj, self.step, now, log)


class Billing(_Controller):
    step = "billing"

    def tick(self, w: _Writer) -> None:
        for replica in w.world.replicas:
            with self.each(replica, w.now):
                charge = billing.bill(replica, w.world.node_of(replica), w.now)
                if charge is None:
                    continue
                labels = dict(charge.labels)
                self.store.add_counter(GPU_SECONDS, labels, charge.gpu_seconds)
                if charge.cloud:
                    self.store.add_counter(CLOUD_COST, labels, charge.cloud_cost)
                w.put(replica.with_status(billed_until_s=charge.until_s))


class ServiceController(_Controller):
    step = "service controller"

    def __init__(self, store: Store, rng: random.Random) -> None:
        super().__init__(store)
        self.rng = rng

    def tick(self, w: _Writer) -> None:
        world = w.world
        taken = {name for _, name in world.replicas_by_key}
        for action in replicaset.decide(world.services, world.replicas, world.nodes):
            subject = action.service if isinstance(action, replicaset.Create) else action.replica
            with self.each(subject, w.now):
                self._apply(action, w, taken)

    def _apply(self, action: replicaset.Action, w: _Writer, taken: set[str]) -> None:
        if isinstance(action, replicaset.Create):
            name = replica_name(action.service, self.rng, taken)
            taken.add(name)
            w.put(replicaset.new_replica(action.service, name, action.template, w.now))
            w.event(action.service, "Normal", "SuccessfulCreate", f"Created replica: {name}")
        elif isinstance(action, replicaset.Replace):
            w.delete(action.replica)
            w.event(action.service, "Warning", "ReplicaFailed", action.message)
        else:
            w.terminate(action.replica, action.reason)
            service = w.world.service_of(action.replica)
            if action.service_event is not None and service is not None:
                w.event(service, "Normal", "SuccessfulDelete", action.service_event)




class Scheduler(_Controller):
    step = "scheduler"

    def tick(self, w: _Writer) -> None:
        world = w.world
        queue = provisioning.pending(world.replicas)
        if not queue:
            return
        snapshot = Snapshot.build(world.nodes.values(), world.replicas)
        for replica in queue:
            with self.each(replica, w.now):
                action, snapshot = provisioning.schedule_one(
                    replica, snapshot, world.nodes, world.policies, w.now
                )
                if isinstance(action, provisioning.Wait):
                    if replica.status.message != action.message:
                        w.put(replica.with_status(reason="Unschedulable", message=action.message))
                    # One event per waiting replica: a TimeoutOrExceedMax countdown changes
                    # the message every tick; the newest is kept and the count goes up.
                    w.event(replica, "Warning", "FailedScheduling", action.message, fold=True)
                    continue
                w.put(action.replica)
                w.event(replica, "Normal", "Scheduled", provisioning.bind_message(replica, action))


class Runtime(_Controller):
    """The virtual-node provider and the process runtime."""

    step = "runtime"

    def __init__(
        self,
        store: Store,
        processes: ReplicaRunner,
        settings: ControllerSettings,
        inflight: InflightFn,
        gone: Callable[[Replica], None],
    ) -> None:
        super().__init__(store)
        self.processes = processes
        self.settings = settings
        self.inflight = inflight
        self.gone = gone

    def tick(self, w: _Writer) -> None:
        for replica in w.world.replicas:
            if replica.terminating or replica.node_name is None:
                continue
            with self.each(replica, w.now):
                self._provision_and_start(replica, w)
        for replica in w.world.replicas:
            if not replica.terminating or self.processes.stopping(replica):
                continue
            if not drain.stop_due(
                replica, self.inflight(replica), w.now, self.settings.drain_grace_s
            ):
                continue  # still draining
            with self.each(replica, w.now):
                self.processes.stop(replica, self.settings.stop_grace_s, on_gone=self.gone)

    def _provision_and_start(self, replica: Replica, w: _Writer) -> None:
        node = w.world.node_of(replica)
        service = w.world.service_of(replica)
        if node is None or service is None:
            return
        if replica.phase == Phase.PROVISIONING:
            if not provisioning.provisioned(replica, node, w.now):
                return
            replica = w.put(replica.with_status(phase=Phase.STARTING, reason="", message=""))
            w.event(
                replica,
                "Normal",
                "Provisioned",
                f"Virtual node {node.name} provisioned the replica after "
                f"{provisioning.cold_start_s(node):g}s cold start",
            )
        if replica.phase in (Phase.STARTING, Phase.READY) and not self.processes.has(replica):
            held = held_gpus(w.world.replicas, node.name, except_replica=_key(replica))
            try:
                port, gpus = self.processes.launch(
                    replica, service, node, w.world.claims, w.world.volumes, held=held
                )
            except TierserveError as exc:
                w.put(replica.with_status(reason="FailedStart", message=str(exc)))
                w.event(replica, "Warning", "FailedStart", str(exc))
                return
            w.put(replica.with_status(port=port, gpus=list(gpus)))


class StatusController(_Controller):
    step = "status"

    def tick(self, w: _Writer) -> None:
        available: dict[Key, int] = {}
        for r in w.world.replicas:
            key = replicaset.service_key(r)
            available[key] = available.get(key, 0) + (1 if r.ready else 0)
        for key, service in list(w.world.services.items()):
            with self.each(service, w.now):
                status = service.status
                desired, ready = service.spec.replicas, available.get(key, 0)
                if status.desired_replicas == desired and status.available_replicas == ready:
                    continue
                w.put_service(
                    service.model_copy(
                        update={
                            "status": status.model_copy(
                                update={"desired_replicas": desired, "available_replicas": ready}
                            )
                        }
                    )
                )


class Reconciler:
    """Runs one tick of every controller against the store, and takes the reports of
    replica processes."""

    def __init__(
        self,
        store: Store,
        processes: ReplicaRunner,
        settings: ControllerSettings | None = None,
        inflight: InflightFn = _no_inflight,
    ) -> None:
        self.store = store
        self.processes = processes
        self.settings = settings or ControllerSettings()
        self.on_change: Callable[[], None] = lambda: None
        """Called after a report changed a replica (the control plane refreshes routes)."""
        processes.on_event = self.observe
        self.billing = Billing(store)
        self.services = ServiceController(store, random.Random(self.settings.seed))
        self.scheduler = Scheduler(store)
        self.runtime = Runtime(store, processes, self.settings, inflight, self._gone)
        self.status = StatusController(store)

    def read(self) -> World:
        store = self.store
        return World(
            nodes={n.name: n for n in store.list(Node)},
            policies=store.list(ResourcePolicy),
            services={_key(s): s for s in store.list(InferenceService)},
            replicas_by_key={_key(r): r for r in store.list(Replica)},
            claims=store.list(PersistentVolumeClaim),
            volumes=store.list(PersistentVolume),
        )

    def controllers(self) -> Iterator[_Controller]:
        yield from (self.billing, self.services, self.scheduler, self.runtime, self.status)

    def tick(self, now: float) -> None:
        world = self.read()
        # The tick never awaits: no API write comes in between, and every write of the
        # tick commits together.
        with self.store.transaction():
            writer = _Writer(self.store, world, now)
            for controller in self.controllers():
                controller.tick(writer)

    # -- reports of replica processes (the runner's supervisors) ------------------------------

    def observe(self, event: lifecycle.ReplicaEvent) -> None:
        """Record what a replica's supervisor reported (phase, restarts, pid)."""
        namespace, _, name = event.replica.partition("/")
        replica = self.store.get(Replica, namespace, name)
        if replica is None:
            return
        kind, reason, message = lifecycle.event_record(event)
        with self.store.transaction():
            self.store.put(replica.with_status(**lifecycle.status_changes(replica, event)))
            self.store.record(replica, kind, reason, message, event.at_s)
        self.on_change()

    def not_adopted(self, replica: Replica, now: float) -> None:
        """A replica whose process a restarted control plane could not take over."""
        if replica.terminating:
            self.store.delete(replica)
            return
        changes, warning = lifecycle.not_adopted(replica)
        with self.store.transaction():
            self.store.put(replica.with_status(**changes))
            if warning is not None:
                self.store.record(replica, "Warning", "NotAdopted", warning, now)

    def processes_stopped(self) -> None:
        """``tierserve down`` stopped every process: no replica keeps a pid, port or GPU."""
        with self.store.transaction():
            for replica in self.store.list(Replica):
                self.store.put(
                    replica.with_status(pid=None, pid_start_time=None, port=None, gpus=[])
                )

    def _gone(self, replica: Replica) -> None:
        self.store.delete(replica)
