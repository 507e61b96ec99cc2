"""The local controllers: services → replicas → placement → processes, level-triggered.

Every tick reads the whole state once (``now`` read once, at the edge), then:

1. **service controller** — creates Pending replicas up to ``spec.replicas`` and marks the
   surplus Terminating in the pure scale-in order (last unit first: cloud before IDC);
   replaces replicas of an older template one at a time (surge one, wait Ready, then one
   old goes: ``policy.rollout``); replicas of deleted services or vanished nodes are
   terminated, Failed ones replaced;
2. **scheduler** — places Pending replicas with the pure ResourcePolicy placement,
   applying the unit's ``podLabels``/``podAnnotations``; a replica that cannot be placed
   stays Pending with the reason (event ``FailedScheduling``) and is retried next tick;
3. **virtual-node provider** — a replica bound to a virtual node is Provisioning for the
   node's cold start, then its process starts;
4. **runtime** — ``ReplicaProcesses`` starts and supervises processes; a Terminating
   replica leaves routing at once, is drained up to ``drain_grace_s`` and then stopped
   (SIGTERM, SIGKILL after ``stop_grace_s``) and deleted;
5. **billing** — GPU-seconds of every replica accrue per tier from the start of
   provisioning (virtual) or scheduling (IDC) to its end; cloud ones at the node's price.

One object that cannot be reconciled stops nothing else: each step handles each object
on its own, and a failure becomes a ``FailedReconcile`` Warning event on that object
(and a logged traceback) while the others go on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from tierserve.errors import TierserveError
from tierserve.model import (
    GPU,
    InferenceService,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Phase,
    Replica,
    ResourcePolicy,
)
from tierserve.model.base import TypedObject
from tierserve.model.replica import TIER_LABEL
from tierserve.policy.decisions import Placement
from tierserve.policy.placement import bind, place
from tierserve.policy.rollout import ROLLING_UPDATE, TEMPLATE_HASH_LABEL, plan
from tierserve.policy.scalein import virtual_node_names
from tierserve.policy.snapshot import Snapshot
from tierserve.runtime.local.isolation import each_object
from tierserve.runtime.local.naming import replica_name, template_hash
from tierserve.runtime.local.runner import ReplicaRunner
from tierserve.runtime.local.store import Store

log = logging.getLogger("tierserve.controllers")

GPU_SECONDS = "gpu_seconds"
CLOUD_COST = "cloud_cost"

InflightFn = Callable[[Replica], int]


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


@dataclass
class _World:
    nodes: dict[str, Node]
    policies: list[ResourcePolicy]
    services: dict[tuple[str, str], InferenceService]
    replicas: list[Replica]
    claims: list[PersistentVolumeClaim] = field(default_factory=list)
    volumes: list[PersistentVolume] = field(default_factory=list)


class Reconciler:
    """Runs one tick of every controller against the store."""

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
        self.inflight = inflight
        self._rng = random.Random(self.settings.seed)

    def _each(self, obj: TypedObject, step: str, now: float) -> AbstractContextManager[None]:
        return each_object(self.store, obj, step, now, log)

    def _read(self) -> _World:
        return _World(
            nodes={n.name: n for n in self.store.list(Node)},
            policies=self.store.list(ResourcePolicy),
            services={(s.namespace, s.name): s for s in self.store.list(InferenceService)},
            replicas=self.store.list(Replica),
            claims=self.store.list(PersistentVolumeClaim),
            volumes=self.store.list(PersistentVolume),
        )

    def _reread_replicas(self, world: _World) -> _World:
        return replace(world, replicas=self.store.list(Replica))

    def tick(self, now: float) -> None:
        world = self._read()
        self._bill(world, now)
        # Each step reads the replicas the previous one wrote: objects are replaced whole, so
        # writing a copy read before another step's write would undo that write. Replicas
        # are all the steps write before ``_status``, and the tick never awaits (no API
        # write can come in between), so the rest of the world is read once.
        world = self._reread_replicas(world)
        self._services(world, now)
        world = self._reread_replicas(world)
        self._schedule(world, now)
        world = self._reread_replicas(world)
        self._provision_and_start(world, now)
        self._terminate(world, now)
        self._status(self._reread_replicas(world), now)

    # -- 1. service controller --------------------------------------------------------------

    def _services(self, world: _World, now: float) -> None:
        by_service: dict[tuple[str, str], list[Replica]] = {}
        for replica in world.replicas:
            with self._each(replica, "service controller", now):
                key = (replica.namespace, replica.spec.service)
                service = world.services.get(key)
                if service is None:
                    self._start_terminating(replica, now, "ServiceDeleted")
                    continue
                node = replica.status.node_name
                if node is not None and node not in world.nodes and not replica.terminating:
                    self._start_terminating(replica, now, "NodeDeleted")
                    continue
                if replica.phase == Phase.FAILED:
                    self.store.delete(replica)
                    self.store.record(
                        service,
                        "Warning",
                        "ReplicaFailed",
                        f"Replica {replica.name} failed: {replica.status.message}; replacing it",
                        now,
                    )
                    continue
                by_service.setdefault(key, []).append(replica)
        virtual = virtual_node_names(world.nodes.values())
        taken = {r.name for r in world.replicas}
        for key, service in world.services.items():
            with self._each(service, "service controller", now):
                self._scale(service, by_service.get(key, []), virtual, taken, now)

    def _scale(
        self,
        service: InferenceService,
        replicas: list[Replica],
        virtual: frozenset[str],
        taken: set[str],
        now: float,
    ) -> None:
        """Create or terminate replicas of ``service``: to ``spec.replicas``, and onto its
        current template one at a time (the pure :func:`~tierserve.policy.rollout.plan`)."""
        live = [r for r in replicas if not r.terminating]
        template = template_hash(service)
        decision = plan(live, service.spec.replicas, template, virtual)
        for _ in range(decision.create):
            name = replica_name(service, self._rng, taken)
            taken.add(name)
            self._create(service, name, template, now)
        for victim in decision.terminate:
            self._start_terminating(victim, now, decision.reason)
            self.store.record(
                service,
                "Normal",
                "SuccessfulDelete",
                f"Deleted replica: {victim.name}"
                + (" (rolling update)" if decision.reason == ROLLING_UPDATE else ""),
                now,
            )

    def _create(self, service: InferenceService, name: str, template: str, now: float) -> None:
        replica: Replica = Replica.new(
            name,
            service.namespace,
            metadata={
                "labels": {**service.replica_labels(), TEMPLATE_HASH_LABEL: template},
                "annotations": dict(service.spec.annotations),
            },
            spec={
                "service": service.name,
                "requests": {k: f"{v}m" for k, v in service.requests().items()},
                "tolerations": [t.to_dict() for t in service.spec.tolerations],
                "nodeSelector": dict(service.spec.node_selector),
            },
            status={"phase": "Pending", "createdS": now},
        )
        self.store.put(replica)
        self.store.record(service, "Normal", "SuccessfulCreate", f"Created replica: {name}", now)

    def _start_terminating(self, replica: Replica, now: float, reason: str) -> None:
        if replica.terminating:
            return
        self.store.put(
            replica.with_status(
                phase=Phase.TERMINATING, terminating_s=now, reason=reason, message=""
            )
        )
        self.store.record(replica, "Normal", "Killing", f"Stopping replica ({reason})", now)

    # -- 2. scheduler -----------------------------------------------------------------------

    def _schedule(self, world: _World, now: float) -> None:
        pending = sorted(
            (r for r in world.replicas if r.phase == Phase.PENDING and r.node_name is None),
            key=lambda r: (r.status.created_s, r.name),
        )
        if not pending:
            return
        snapshot = Snapshot.build(world.nodes.values(), world.replicas)
        for replica in pending:
            with self._each(replica, "scheduler", now):
                snapshot = self._place(replica, snapshot, world, now)

    def _place(self, replica: Replica, snapshot: Snapshot, world: _World, now: float) -> Snapshot:
        """Bind ``replica`` to a node, or say why not; the snapshot with it placed."""
        decision = place(replica, snapshot, world.policies, now)
        if not isinstance(decision, Placement):
            message = "; ".join(decision.messages()) or "no node fits"
            if replica.status.message != message:
                self.store.put(replica.with_status(reason="Unschedulable", message=message))
            # One event per waiting replica: a TimeoutOrExceedMax countdown changes the
            # message every tick; the newest is kept and the count goes up.
            self.store.record(replica, "Warning", "FailedScheduling", message, now, fold=True)
            return snapshot
        node = world.nodes[decision.node]
        bound = bind(replica, decision)
        labels = {**bound.metadata.labels, TIER_LABEL: node.tier}
        bound = bound.model_copy(
            update={"metadata": bound.metadata.model_copy(update={"labels": labels})}
        )
        phase = Phase.PROVISIONING if node.virtual else Phase.STARTING
        bound = bound.with_status(phase=phase, scheduled_s=now, reason="", message="")
        self.store.put(bound)
        unit = f" (unit {decision.unit})" if decision.unit is not None else ""
        self.store.record(
            replica,
            "Normal",
            "Scheduled",
            f"Successfully assigned {replica.namespace}/{replica.name} to {node.name}{unit}",
            now,
        )
        return snapshot.with_pod(bound)

    # -- 3/4. virtual-node provider and runtime ----------------------------------------------

    def _provision_and_start(self, world: _World, now: float) -> None:
        for replica in world.replicas:
            if replica.terminating or replica.node_name is None:
                continue
            with self._each(replica, "runtime", now):
                self._provision_and_start_one(replica, world, now)

    def _provision_and_start_one(self, replica: Replica, world: _World, now: float) -> None:
        node = world.nodes.get(replica.node_name or "")
        service = world.services.get((replica.namespace, replica.spec.service))
        if node is None or service is None:
            return
        if replica.phase == Phase.PROVISIONING:
            cold = node.spec.virtual.cold_start_seconds if node.spec.virtual else 0.0
            ready_at = (replica.status.scheduled_s or now) + cold
            if now < ready_at:
                return
            replica = replica.with_status(phase=Phase.STARTING, reason="", message="")
            self.store.put(replica)
            self.store.record(
                replica,
                "Normal",
                "Provisioned",
                f"Virtual node {node.name} provisioned the replica after {cold:g}s cold start",
                now,
            )
        if replica.phase in (Phase.STARTING, Phase.READY) and not self.processes.has(replica):
            try:
                self.processes.launch(replica, service, node, world.claims, world.volumes)
            except TierserveError as exc:
                self.store.put(replica.with_status(reason="FailedStart", message=str(exc)))
                self.store.record(replica, "Warning", "FailedStart", str(exc), now)

    def _terminate(self, world: _World, now: float) -> None:
        for replica in world.replicas:
            if not replica.terminating or self.processes.stopping(replica):
                continue
            since = replica.status.terminating_s or now
            if self.inflight(replica) > 0 and now - since < self.settings.drain_grace_s:
                continue  # still draining
            with self._each(replica, "runtime", now):
                self.processes.stop(replica, self.settings.stop_grace_s, on_gone=self._gone)

    def _gone(self, replica: Replica) -> None:
        self.store.delete(replica)

    # -- 5. billing and status ----------------------------------------------------------------

    def _bill(self, world: _World, now: float) -> None:
        for replica in world.replicas:
            with self._each(replica, "billing", now):
                self._bill_one(replica, world, now)

    def _bill_one(self, replica: Replica, world: _World, now: float) -> None:
        start = replica.status.scheduled_s
        node = world.nodes.get(replica.node_name or "")
        if start is None or node is None:
            return
        since = replica.status.billed_until_s or start
        if now <= since:
            return
        gpus = replica.spec.requests.get(GPU, 0) / 1000
        gpu_s = (now - since) * gpus
        labels = {
            "namespace": replica.namespace,
            "service": replica.spec.service,
            "tier": node.tier,
            "node": node.name,
        }
        self.store.add_counter(GPU_SECONDS, labels, gpu_s)
        if node.spec.virtual is not None:
            price = node.spec.virtual.price_per_gpu_hour
            self.store.add_counter(CLOUD_COST, labels, gpu_s / 3600 * price)
        self.store.put(replica.with_status(billed_until_s=now))

    def _status(self, world: _World, now: float) -> None:
        for key, service in world.services.items():
            with self._each(service, "status", now):
                self._status_one(key, service, world)

    def _status_one(self, key: tuple[str, str], service: InferenceService, world: _World) -> None:
        mine = [r for r in world.replicas if (r.namespace, r.spec.service) == key]
        available = sum(1 for r in mine if r.ready)
        desired = service.spec.replicas
        status = service.status
        if status.desired_replicas != desired or status.available_replicas != available:
            self.store.put(
                service.model_copy(
                    update={
                        "status": status.model_copy(
                            update={
                                "desired_replicas": desired,
                                "available_replicas": available,
                            }
                        )
                    }
                )
            )
