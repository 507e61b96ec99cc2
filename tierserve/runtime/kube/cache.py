"""A watch-driven cache of nodes, pods and ResourcePolicies, and the Snapshot built from it.

Detect: one list-then-watch loop per resource (relisting on ``410 Gone`` or a broken
watch). The cache holds typed objects; :meth:`ClusterCache.snapshot` builds a
:class:`~tierserve.policy.snapshot.Snapshot` only when something changed since the last
one, and a pod added or updated is folded in with ``Snapshot.with_pod`` instead of a
rebuild. ``assume`` records a placement the extender just decided or made, from the pod
object kube-scheduler sent (so before the watch has delivered that pod at all), keyed by
name and checked by UID; the watch confirms it once it shows the pod bound, and an
assumption the API never confirms lapses (kube-scheduler does the same in its own cache).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pydantic

from tierserve.errors import NotFoundError, TierserveError
from tierserve.model.node import Node
from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.policy.scalein import virtual_node_names
from tierserve.policy.snapshot import PodKey, Snapshot
from tierserve.runtime.kube.client import Api, Obj, list_then_watch
from tierserve.runtime.kube.convert import node_from_k8s, policy_from_k8s, replica_from_pod
from tierserve.runtime.kube.crd import ACK_GROUP, TIERSERVE_GROUP, VERSION, policies_path

log = logging.getLogger(__name__)

PolicyKey = tuple[str, str, str]
"""(group, namespace, name) of a ResourcePolicy."""


@dataclass
class ClusterCache:
    """Nodes, pods and policies as typed objects; fed by :meth:`run` or by tests directly."""

    nodes: dict[str, Node] = field(default_factory=dict)
    node_objects: dict[str, Obj] = field(default_factory=dict)
    pods: dict[PodKey, Replica] = field(default_factory=dict)
    policy_map: dict[PolicyKey, ResourcePolicy] = field(default_factory=dict)
    generation: int = 0
    """Bumped on every change (the controller reconciles when it moves)."""
    _snapshot: Snapshot | None = None
    _policies: tuple[ResourcePolicy, ...] | None = None
    _changed: asyncio.Event | None = None
    _synced: dict[str, asyncio.Event] = field(default_factory=dict)
    listeners: list[Callable[[], None]] = field(default_factory=list)
    assume_ttl_s: float = 30.0
    """How long an assumed placement outlives watch events that do not show it yet."""
    clock: Callable[[], float] = time.monotonic
    _assumed: dict[PodKey, float] = field(default_factory=dict)
    """Assumed pods and when the assumption lapses (monotonic seconds)."""
    _observed: dict[PodKey, Replica] = field(default_factory=dict)
    """The last watched state of each assumed pod, restored when its assumption lapses."""
    _deleted: dict[str, float] = field(default_factory=dict)
    """UIDs of pods the watch showed deleted, until when (a filter of a pod that is
    already gone, racing its deletion, must not assume it back)."""

    # --- updates -----------------------------------------------------------------------

    def _touch(self, rebuild: bool) -> None:
        self.generation += 1
        if rebuild:
            self._snapshot = None
        if self._changed is not None:
            self._changed.set()
        for listener in self.listeners:
            listener()

    def set_node(self, obj: Obj, deleted: bool = False) -> None:
        name = obj["metadata"]["name"]
        if deleted:
            self.nodes.pop(name, None)
            self.node_objects.pop(name, None)
        else:
            self.nodes[name] = node_from_k8s(obj)
            self.node_objects[name] = obj
        self._touch(rebuild=True)

    def set_pod(self, obj: Obj, deleted: bool = False) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        if deleted:
            if self._other_incarnation(key, meta.get("uid")):
                self._observed.pop(key, None)  # an older pod of that name went; keep the new
                return
            if self._drop_pod(key):
                self._touch(rebuild=True)
            return
        self.put_replica(replica_from_pod(obj))

    def _other_incarnation(self, key: PodKey, uid: str | None) -> bool:
        """True when ``key`` is assumed for a pod with another UID than ``uid`` (a pod
        recreated under the same name, as a StatefulSet does)."""
        held = self.pods.get(key)
        return (
            key in self._assumed
            and held is not None
            and uid is not None
            and held.metadata.uid is not None
            and held.metadata.uid != uid
        )

    def _drop_pod(self, key: PodKey) -> bool:
        """Forget a deleted pod, its assumption included (else the assumption's lapse
        would restore the stale copy). True if the pod was known."""
        self._assumed.pop(key, None)
        self._observed.pop(key, None)
        gone = self.pods.pop(key, None)
        if gone is not None and gone.metadata.uid:
            now = self.clock()
            if len(self._deleted) > 4096:
                self._deleted = {u: t for u, t in self._deleted.items() if t > now}
            self._deleted[gone.metadata.uid] = now + self.assume_ttl_s
        return gone is not None

    def put_replica(self, replica: Replica) -> None:
        """A pod as watched: replaces an assumption once it shows a node (or is gone)."""
        key = (replica.namespace, replica.name)
        if key in self._assumed:
            if self._other_incarnation(key, replica.metadata.uid):
                # the watch is behind: this is the old pod of that name, or the assumed
                # one is gone and a new one came; the newer by creation time wins
                held = self.pods[key]
                if held.status.created_s > replica.status.created_s:
                    self._observed.pop(key, None)
                    return
            elif not replica.status.node_name and self._assumed[key] > self.clock():
                self._observed[key] = replica  # not bound yet as far as the API says
                return
            self._assumed.pop(key, None)
            self._observed.pop(key, None)
        self._store(key, replica)

    def _store(self, key: PodKey, replica: Replica) -> None:
        self.pods[key] = replica
        if self._snapshot is not None:
            self._snapshot = self._snapshot.with_pod(replica)
        self._touch(rebuild=False)

    def assumed(self, replica: Replica) -> bool:
        """True when ``replica``'s node and unit are already assumed (nothing to redo)."""
        key = (replica.namespace, replica.name)
        held = self.pods.get(key)
        return (
            key in self._assumed
            and held is not None
            and held.status.node_name == replica.status.node_name
            and held.status.unit == replica.status.unit
            and held.metadata.labels == replica.metadata.labels
        )

    def assume(self, replica: Replica) -> None:
        """Count ``replica`` as placed (node, unit) now, ahead of its watch event.

        The extender assumes a pod at filter time (kube-scheduler filters the next pod
        before it binds this one, and ``max`` must count it) and again at bind time,
        from the pod in the request: the watch may not have delivered it yet. An
        assumption lapses after ``assume_ttl_s`` if the API never shows the pod bound:
        the last watched state comes back, or, for a pod the watch never showed, the pod
        is forgotten.
        """
        key = (replica.namespace, replica.name)
        uid = replica.metadata.uid
        if uid is not None and self._deleted.get(uid, 0.0) > self.clock():
            return  # the pod is already gone: nothing to count
        held = self.pods.get(key)
        same = held is not None and replica.metadata.uid in (None, held.metadata.uid)
        if key not in self._assumed and held is not None and same:
            self._observed[key] = held
        self._assumed[key] = self.clock() + self.assume_ttl_s
        self._store(key, replica)

    def unassume(self, namespace: str, name: str) -> None:
        """Drop the assumption for a pod the extender no longer places (a later filter
        found no room): its last watched state comes back."""
        key = (namespace, name)
        if key in self._assumed:
            self._lapse(key)

    def _lapse(self, key: PodKey) -> None:
        self._assumed.pop(key)
        observed = self._observed.pop(key, None)
        if observed is not None:
            self._store(key, observed)
        elif self.pods.pop(key, None) is not None:
            self._touch(rebuild=True)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, until in self._assumed.items() if until <= now]:
            self._lapse(key)

    def set_policy(self, group: str, obj: Obj, deleted: bool = False) -> None:
        meta = obj["metadata"]
        key = (group, meta.get("namespace", "default"), meta["name"])
        if deleted:
            self.policy_map.pop(key, None)
        else:
            try:
                self.policy_map[key] = policy_from_k8s(obj)
            except (pydantic.ValidationError, TierserveError) as exc:
                log.warning("ignoring ResourcePolicy %s/%s: %s", key[1], key[2], exc)
                self.policy_map.pop(key, None)
        self._policies = None
        self._touch(rebuild=False)

    # --- reads -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        if self._assumed:
            self._expire()
        if self._snapshot is None:
            self._snapshot = Snapshot.build(self.nodes.values(), self.pods.values())
        return self._snapshot

    def policies(self) -> tuple[ResourcePolicy, ...]:
        """The policies as one tuple whose identity changes only when they do (placement
        memoises its policy index on it)."""
        if self._policies is None:
            self._policies = tuple(self.policy_map[k] for k in sorted(self.policy_map))
        return self._policies

    def virtual_nodes(self) -> frozenset[str]:
        return virtual_node_names(self.nodes.values())

    # --- detect: list and watch --------------------------------------------------------

    def changed(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def synced(self) -> bool:
        """Every watch has listed once (the extender's readiness)."""
        return bool(self._synced) and all(e.is_set() for e in self._synced.values())

    async def wait_synced(self, timeout_s: float = 30.0) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(e.wait() for e in self._synced.values())), timeout_s
        )

    async def run(self, kube: Api, groups: Iterable[str] | None = None) -> None:
        """List and watch nodes, pods and policies forever (cancel to stop)."""
        self.changed()
        watches: list[tuple[str, str, Callable[[Obj, bool], None]]] = [
            ("nodes", "/api/v1/nodes", self.set_node),
            ("pods", "/api/v1/pods", self.set_pod),
        ]
        for group in groups if groups is not None else await installed_groups(kube):
            watches.append((group, policies_path(group), self._policy_setter(group)))
        for name, _, _ in watches:
            self._synced[name] = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            for name, path, apply in watches:
                tasks.create_task(self._list_watch(kube, name, path, apply))

    def _policy_setter(self, group: str) -> Callable[[Obj, bool], None]:
        def apply(obj: Obj, deleted: bool) -> None:
            self.set_policy(group, obj, deleted)

        return apply

    def _applier(self, name: str) -> Callable[[Obj, bool], None]:
        setters: dict[str, Callable[[Obj, bool], None]] = {
            "nodes": self.set_node,
            "pods": self.set_pod,
        }
        return setters.get(name) or self._policy_setter(name)

    def _fold(self, name: str, items: list[Obj]) -> None:
        """A full list of ``name`` folded in: what it no longer has is forgotten."""
        apply = self._applier(name)
        seen = set()
        for obj in items:
            apply(obj, False)
            meta = obj["metadata"]
            seen.add((meta.get("namespace", ""), meta["name"]))
        self._forget_missing(name, seen)

    async def relist(self, kube: Api, name: str, path: str) -> None:
        """List ``path`` and fold it in at once (a new leader catching up)."""
        listed = await kube.request("GET", path)
        self._fold(name, listed.get("items") or [])

    async def _list_watch(
        self, kube: Api, name: str, path: str, apply: Callable[[Obj, bool], None]
    ) -> None:
        def listed(items: list[Obj]) -> None:
            self._fold(name, items)
            self._synced[name].set()

        await list_then_watch(kube, path, listed, apply)

    def _forget_missing(self, name: str, seen: set[tuple[str, str]]) -> None:
        """After a relist, drop what disappeared while the watch was down."""
        if name == "nodes":
            for node in set(self.nodes) - {n for _, n in seen}:
                self.nodes.pop(node, None)
                self.node_objects.pop(node, None)
            self._touch(rebuild=True)
        elif name == "pods":
            for key in set(self.pods) - seen:
                self._drop_pod(key)
            self._touch(rebuild=True)
        else:
            for policy in [k for k in self.policy_map if k[0] == name and k[1:] not in seen]:
                self.policy_map.pop(policy, None)
            self._policies = None
            self._touch(rebuild=False)


async def installed_groups(kube: Api) -> list[str]:
    """The ResourcePolicy groups whose CRD is installed (ours and/or ACK's)."""
    found = []
    for group in (TIERSERVE_GROUP, ACK_GROUP):
        try:
            await kube.request("GET", f"/apis/{group}/{VERSION}")
        except NotFoundError:
            continue
        found.append(group)
    return found


__all__ = ["ClusterCache", "installed_groups"]
