"""Leader election on a ``coordination.k8s.io/v1`` Lease (read, decide, apply).

:class:`LeaderElector` reads the Lease every ``renew_s``, asks the pure
:func:`~tierserve.policy.lease.decide` what to do, and writes with the Lease's
``resourceVersion`` (optimistic concurrency: of two replicas taking over at once, one
gets 409 Conflict and follows). ``leading`` is set while this replica holds the Lease
and its last renewal is younger than the lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from tierserve.errors import ConflictError, NotFoundError, TierserveError
from tierserve.policy.lease import (
    LeaseAction,
    LeaseRecord,
    Observed,
    decide,
    observe,
    still_leading,
)
from tierserve.runtime.kube.client import Api, Obj

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(obj: Obj) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        renew_time=spec.get("renewTime"),
        duration_s=float(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


class LeaderElector:
    """Hold ``namespace/name`` as ``identity`` while alive; ``leading`` says when."""

    def __init__(
        self,
        kube: Api,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float = 15.0,
        renew_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_lead: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.kube = kube
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.renew_s = renew_s if renew_s is not None else duration_s / 3
        self.clock = clock
        self.on_lead = on_lead
        """Awaited once each time leadership is won, before ``leading`` is set (e.g. to
        catch up on what the last leader did)."""
        self.leading = asyncio.Event()
        self._observed: Observed | None = None
        self._renewed_s = float("-inf")

    def _spec(self, record: LeaseRecord | None, now: str) -> Obj:
        """The spec to write: a renewal keeps the count of holders, a take-over adds one."""
        spec: Obj = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration_s)),
            "renewTime": now,
            "leaseTransitions": 0 if record is None else record.transitions,
        }
        if record is None or record.holder != self.identity:
            spec["acquireTime"] = now
            if record is not None and record.holder:
                spec["leaseTransitions"] = record.transitions + 1
        return spec

    async def step(self) -> None:
        """One read-decide-write round."""
        now_s = self.clock()
        try:
            obj: Obj | None = await self.kube.request("GET", self.path)
        except NotFoundError:
            obj = None
        record = record_of(obj) if obj is not None else None
        self._observed = None if record is None else observe(self._observed, record, now_s)
        decision = decide(self._observed, self.identity, now_s)
        if decision.action is LeaseAction.FOLLOW:
            self._lose(decision.reason)
            return
        stamp = _micro_time()
        if obj is None:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": self._spec(None, stamp),
            }
            await self.kube.request("POST", self.collection, body)
        else:
            spec = {**(obj.get("spec") or {}), **self._spec(record, stamp)}
            body = {**obj, "spec": spec}  # with its resourceVersion: 409 if someone wrote
            await self.kube.request("PUT", self.path, body)
        self._renewed_s = now_s
        if not self.leading.is_set():
            log.info("lease %s: leading as %s (%s)", self.name, self.identity, decision.reason)
            if self.on_lead is not None:
                await self.on_lead()
            self.leading.set()

    def _lose(self, why: str) -> None:
        if self.leading.is_set():
            log.warning("lease %s: no longer leading (%s)", self.name, why)
            self.leading.clear()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except ConflictError:
                self._lose("another replica wrote the lease first")
            except TierserveError as exc:
                log.warning("lease %s: %s", self.name, exc)
            if self.leading.is_set() and not still_leading(
                self._renewed_s, self.clock(), self.duration_s
            ):
                self._lose(f"not renewed for {self.duration_s:g}s")
            await asyncio.sleep(self.renew_s)


__all__ = ["LeaderElector", "record_of"]
