"""The autoscaler controller of the local runtime: read, ``policy.autoscaling``, apply.

Every tick, each service due for evaluation (every ``period_s``) gets a decision from
:func:`tierserve.policy.autoscaling.evaluate` over its replicas and their fresh scraped
metrics; a change is written to ``spec.replicas`` and recorded as a
``SuccessfulRescale`` event. The autoscaler's state (the HPA's recommendation history
and scale events) is kept per service in the store, in the same transaction as the
rescale it led to, so a restarted control plane keeps the stabilization window (the
Kubernetes controller keeps it in memory and forgets it).
"""

from __future__ import annotations

import logging

from tierserve.model import InferenceService, Node, Replica, ResourcePolicy
from tierserve.model.autoscaling import SLO
from tierserve.model.service import AutoscalerStatus
from tierserve.policy import rebalance
from tierserve.policy.autoscaling import AutoscalerConfig, due, evaluate, mine, policy_of
from tierserve.policy.planner import PlannerState, Tier
from tierserve.policy.tiers import tiers_for
from tierserve.runtime.local.costs import BUDGET_BLOCKED
from tierserve.runtime.local.isolation import each_object
from tierserve.runtime.local.scraper import MetricsScraper
from tierserve.runtime.local.store import Store
from tierserve.runtime.planner import PlannerInputs

log = logging.getLogger("tierserve.autoscaler")

STATE_PREFIX = "autoscaler/"
"""Store keys of the autoscaler state: ``autoscaler/<namespace>/<service>``."""


def _state_key(namespace: str, name: str) -> str:
    return f"{STATE_PREFIX}{namespace}/{name}"


class Autoscaler:
    def __init__(
        self,
        store: Store,
        scraper: MetricsScraper,
        settings: AutoscalerConfig | None = None,
        planner: PlannerInputs | None = None,
    ) -> None:
        self.store = store
        self.scraper = scraper
        self.settings = settings or AutoscalerConfig()
        self.planner = planner
        """The tier planner's inputs (``policy: slo`` services); None: they keep their size."""
        self._learned: set[tuple[str, str]] = set()
        self._world: tuple[dict[str, Node], list[ResourcePolicy]] = ({}, [])
        self._last_s: dict[tuple[str, str], float] = {}
        """When each service was last evaluated (a restart evaluates at once)."""

    def _metrics(self, replicas: list[Replica], now: float) -> dict[str, dict[str, float]]:
        """Fresh scraped values of Ready replicas, by replica name."""
        max_age = self.settings.metric_max_age_s
        return {
            r.name: self.scraper.fresh((r.namespace, r.name), now, max_age)
            for r in replicas
            if r.ready
        }

    def _service_tick(self, service: InferenceService, replicas: list[Replica], now: float) -> None:
        key = (service.namespace, service.name)
        if not due(self._last_s.get(key), now, self.settings):
            return
        theirs = mine(service, replicas)
        state_key = _state_key(*key)
        context = None
        if self.planner is not None and policy_of(service) == SLO:
            nodes, policies = self._world
            planned = PlannerState.from_json(self.store.get_state(state_key))
            context = self.planner.context(service, replicas, nodes, policies, now, planned)
        evaluation = evaluate(
            service,
            theirs,
            self._metrics(theirs, now),
            self.store.get_state(state_key),
            now,
            self.settings,
            context=context,
        )
        if evaluation is None:  # it does not autoscale
            return
        self._last_s[key] = now
        # The state goes with the change it led to: a restart sees both or neither, and
        # scales in no sooner than the window allows.
        plan = evaluation.plan
        if plan is not None:  # what describe isvc shows of the plan (this writer's field)
            status = service.status.model_copy(
                update={
                    "autoscaler": AutoscalerStatus(
                        policy=evaluation.policy,
                        at_s=now,
                        desired=plan.desired,
                        per_tier=dict(plan.per_tier),
                        forecast_rate=round(plan.forecast_rate, 3),
                        horizon_s=round(plan.horizon_s, 1),
                        capacity=round(plan.capacity, 3),
                        expected_cost_per_hour=round(plan.expected_cost_per_hour, 4),
                        budget_blocked=plan.budget_blocked,
                        reason=plan.reason,
                    )
                }
            )
            service = service.model_copy(update={"status": status})
        with self.store.transaction():
            self.store.put_state(state_key, evaluation.state)
            if plan is not None:
                self.store.put(service)
            if plan is not None and plan.budget_blocked:
                labels = {"namespace": service.namespace, "service": service.name}
                self.store.add_counter(BUDGET_BLOCKED, labels, 1.0)
                self.store.record(service, "Warning", "BudgetBlocked", plan.reason, now, fold=True)
            if evaluation.message is None:
                self._rebalance(service, replicas, context.tiers if context else None, now)
                return
            spec = service.spec.model_copy(update={"replicas": evaluation.desired})
            self.store.put(service.model_copy(update={"spec": spec}))
            self.store.record(service, "Normal", "SuccessfulRescale", evaluation.message, now)
        log.info("%s/%s: %s", service.namespace, service.name, evaluation.message)

    def _rebalance(
        self,
        service: InferenceService,
        replicas: list[Replica],
        tiers: tuple[Tier, ...] | None,
        now: float,
    ) -> None:
        """Move a cloud replica back to the IDC when it has room (``policy.rebalance``)."""
        if not rebalance.enabled(service):
            return
        nodes, policies = self._world
        if tiers is None:
            tiers = tuple(tiers_for(service, replicas, nodes, policies, now, 0.0, 1))
        victim = rebalance.move(service, replicas, nodes, tiers)
        if victim is None:
            return
        self.store.put(rebalance.moved(service, victim))
        self.store.record(service, "Normal", "Rebalance", rebalance.message(victim), now)

    def _learn(self, replicas: list[Replica], nodes: dict[str, Node]) -> None:
        """Tell the planner how long each new replica took from scheduled to Ready."""
        if self.planner is None:
            return
        live = set()
        for r in replicas:
            key = (r.namespace, r.name)
            live.add(key)
            node = nodes.get(r.node_name or "")
            s, ready = r.status.scheduled_s, r.status.ready_s
            if key in self._learned or node is None or s is None or ready is None:
                continue
            self._learned.add(key)
            self.planner.learn_cold_start(node.tier, ready - s)
        self._learned &= live

    def tick(self, now: float) -> None:
        services = self.store.list(InferenceService, None)
        replicas = self.store.list(Replica, None)
        if self.planner is not None and any(
            policy_of(s) == SLO or rebalance.enabled(s) for s in services
        ):
            nodes = {n.name: n for n in self.store.list(Node)}
            self._world = (nodes, self.store.list(ResourcePolicy))
            self._learn(replicas, nodes)
        keys = set()
        for service in services:
            key = (service.namespace, service.name)
            keys.add(key)
            if self.planner is not None and policy_of(service) == SLO:
                self.planner.sample(service, now)
            with each_object(self.store, service, "autoscaler", now, log):
                self._service_tick(service, replicas, now)
        for gone in set(self._last_s) - keys:
            del self._last_s[gone]
        live = {_state_key(*key) for key in keys}
        for state_key in self.store.state_items(STATE_PREFIX):
            if state_key not in live:  # the service is gone: so is its HPA
                self.store.put_state(state_key, None)
