"""tierserve's autoscaler on Kubernetes: the same ``policy/`` autoscalers as the local
runtime, for the services that ask for it (read, decide, apply).

A service rendered with ``--autoscaler tierserve`` has no HorizontalPodAutoscaler; its
Deployment carries ``autoscaling.tierserve.io/autoscaler: tierserve`` and the tierserve
InferenceService it was made from (``autoscaling.tierserve.io/service``). Every
``period_s`` :class:`KubeAutoscaler`, for each such Deployment:

* **reads** its pods (the Deployment's selector), and scrapes each Ready pod's
  ``/metrics`` itself (the custom metrics API's target: ``prometheus.io`` annotations,
  else the container port; vLLM's names and the DCGM-style gauges, parsed as the local
  scraper parses them), so no Prometheus or metrics adapter is needed;
* **decides** with :func:`~tierserve.policy.autoscaling.evaluate`, the function the local
  runtime and the simulator call (the HPA's arithmetic on several metrics, stabilisation
  window included; its state kept in the Deployment's
  ``autoscaling.tierserve.io/state`` annotation, so a restart or a new leader keeps it);
* **applies**: writes the Deployment's ``scale`` subresource and records a
  ``SuccessfulRescale`` Event in the local runtime's words (``New size: 3; reason: pods
  metric vllm:num_requests_running above target``).

A service of ``--autoscaler slo`` (``spec.autoscaling.policy: slo`` in the service
annotation) is sized by the tier planner instead: each period the autoscaler reads the
gateways' ``/metrics`` (``--gateway-url``), the cluster's Nodes, ResourcePolicies and
pods, and builds the planner's context (:mod:`tierserve.runtime.kube.planner`, on the
local runtime's own ``runtime.planner.PlannerInputs``) for the same ``evaluate``. The
``SuccessfulRescale`` Event is then the planner's (``New size: 3 (idc 1, cloud 2); reason:
load 3.00 req/s needs 3: ...``); a scale-out the cloud budget caps adds a ``BudgetBlocked``
Warning, and a period with no gateway answering keeps the size with a ``NoGatewayLoad``
Warning (both folded into one Event per Deployment, counted). The last plan is in the
``autoscaling.tierserve.io/plan`` annotation (what ``describe isvc`` shows locally).

With leader election (a Lease, :class:`~tierserve.runtime.kube.lease.LeaderElector`) only
the holder acts, so two replicas never fight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pydantic

from tierserve.errors import TierserveError
from tierserve.model.autoscaling import SLO
from tierserve.model.service import InferenceService
from tierserve.policy import rebalance
from tierserve.policy.autoscaling import (
    AutoscalerConfig,
    Evaluation,
    PlannerContext,
    evaluate,
    policy_of,
)
from tierserve.policy.planner import Plan, PlannerState
from tierserve.policy.tiers import tiers_for
from tierserve.runtime.kube.client import MERGE_PATCH, Api, Obj
from tierserve.runtime.kube.convert import replica_from_pod
from tierserve.runtime.kube.custom_metrics import HttpFetch, scrape_target
from tierserve.runtime.kube.events import record
from tierserve.runtime.kube.lease import LeaderElector
from tierserve.runtime.kube.planner import GatewayScrape, KubePlannerInputs
from tierserve.runtime.kube.rebalance import MOVE_ANNOTATION, Move, Step, moving_pods, next_step
from tierserve.runtime.kube.serving import AUTOSCALER_ANNOTATION, SERVICE_ANNOTATION, TIERSERVE
from tierserve.runtime.promtext import parse_metrics

log = logging.getLogger(__name__)

STATE_ANNOTATION = "autoscaling.tierserve.io/state"
"""The autoscaler's state for the service (JSON: the HPA's recommendations window, or the
tier planner's level, trend, correction and recent needs)."""
PLAN_ANNOTATION = "autoscaling.tierserve.io/plan"
"""The tier planner's last plan (JSON: size per tier, forecast, capacity, cost, reason)."""
COMPONENT = "tierserve-autoscaler"
STARTUP_OVERHEAD_S = 1.0
"""Wall seconds a container takes to start before its engine loads (the planner's prior
for a cold start, with the node's ``tierserve.io/cold-start-seconds`` and the engine's
load time; learned from the pods once they start)."""


def _selector(deployment: Obj) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _plan_view(plan: Plan, now: float) -> dict[str, Any]:
    """What the plan annotation holds (the local runtime's ``status.autoscaler``)."""
    return {
        "atS": round(now, 3),
        "desired": plan.desired,
        "perTier": dict(plan.per_tier),
        "forecastRate": round(plan.forecast_rate, 3),
        "horizonS": round(plan.horizon_s, 1),
        "capacity": round(plan.capacity, 3),
        "expectedCostPerHour": round(plan.expected_cost_per_hour, 4),
        "budgetBlocked": plan.budget_blocked,
        "reason": plan.reason,
    }


class KubeAutoscaler:
    """Evaluate and rescale every Deployment that asks for tierserve's autoscaler."""

    def __init__(
        self,
        kube: Api,
        config: AutoscalerConfig | None = None,
        clock: Callable[[], float] = time.time,
        gate: asyncio.Event | None = None,
        scrape_timeout_s: float = 2.0,
        gateways: tuple[str, ...] = (),
        time_scale: float = 1.0,
    ) -> None:
        self.kube = kube
        self.config = config or AutoscalerConfig(period_s=15.0)
        self.clock = clock
        self.gate = gate
        self.fetch = HttpFetch(scrape_timeout_s)
        """Each Ready pod's ``/metrics`` as the custom metrics API scrapes it (the same
        target: ``prometheus.io`` annotations, else the container port), and the
        gateways' ``/metrics``."""
        self.planner = KubePlannerInputs(
            GatewayScrape(gateways, self.fetch),
            time_scale=time_scale,
            startup_overhead_s=STARTUP_OVERHEAD_S,
            metric_max_age_s=self.config.metric_max_age_s,
        )
        """The tier planner's read (``--autoscaler slo`` services)."""
        self.rescaled = 0
        self._blind: set[tuple[str, str]] = set()
        """Services whose last period had no gateway answering (one Warning a spell)."""

    async def _scrape(self, url: str) -> dict[str, float]:
        text = await self.fetch(url)
        try:
            return parse_metrics(text) if text is not None else {}
        except ValueError:
            return {}  # no sample this period: the HPA treats the pod as missing

    async def step(self) -> int:
        """One period over every such Deployment; returns how many were evaluated."""
        listed = await self.kube.request("GET", "/apis/apps/v1/deployments")
        now = self.clock()
        wanted: list[tuple[Obj, dict[str, str], InferenceService]] = []
        for deployment in listed.get("items") or []:
            meta = deployment.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if annotations.get(AUTOSCALER_ANNOTATION) != TIERSERVE:
                continue
            try:
                service = InferenceService.model_validate(
                    json.loads(annotations[SERVICE_ANNOTATION])
                )
            except (KeyError, pydantic.ValidationError, ValueError) as exc:
                where = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
                log.warning("deployment %s: %s %s", where, SERVICE_ANNOTATION, exc)
                continue
            wanted.append((deployment, annotations, service))
        if any(policy_of(s) == SLO or rebalance.enabled(s) for _, _, s in wanted):
            await self.planner.observe(self.kube, now)
        evaluated = 0
        for deployment, annotations, service in wanted:
            meta = deployment["metadata"]
            try:
                await self._one(deployment, annotations, service, now)
                evaluated += 1
            except TierserveError as exc:
                where = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
                log.warning("deployment %s: %s", where, exc)
        return evaluated

    async def _one(
        self, deployment: Obj, annotations: dict[str, str], service: InferenceService, now: float
    ) -> None:
        meta = deployment["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        service = service.model_copy(
            update={"spec": service.spec.model_copy(update={"replicas": current})}
        )
        pods_path = f"/api/v1/namespaces/{namespace}/pods"
        pods = (
            await self.kube.request(
                "GET", pods_path, params={"labelSelector": _selector(deployment)}
            )
        ).get("items") or []
        if MOVE_ANNOTATION in annotations:  # a move back to the IDC is under way
            await self._move(deployment, annotations[MOVE_ANNOTATION], current, pods, now)
            return
        replicas = [replica_from_pod(p) for p in pods]
        ready = {r.name for r in replicas if r.ready}
        targets = {
            p["metadata"]["name"]: url
            for p in pods
            if p["metadata"]["name"] in ready
            and (url := scrape_target(p, service.spec.port)) is not None
        }
        scraped = await asyncio.gather(*(self._scrape(url) for url in targets.values()))
        metrics = {n: values for n, values in zip(targets, scraped, strict=True) if values}
        state = (
            json.loads(annotations[STATE_ANNOTATION]) if STATE_ANNOTATION in annotations else None
        )
        context = None
        if policy_of(service) == SLO:
            for pod_name, values in metrics.items():
                self.planner.scraped((namespace, pod_name), values, now)
            context = await self._context(deployment, service, now, PlannerState.from_json(state))
        evaluation = evaluate(service, replicas, metrics, state, now, self.config, context=context)
        if evaluation is None:
            return
        await self._keep(deployment, annotations, evaluation, now)
        plan = evaluation.plan
        if plan is not None and plan.budget_blocked:
            await self._event(deployment, "BudgetBlocked", plan.reason, now, "Warning")
        if evaluation.message is None or evaluation.desired == current:
            if rebalance.enabled(service):
                await self._rebalance(deployment, service, context, now)
            return
        await self._scale(deployment, evaluation.desired)
        self.rescaled += 1
        log.info("deployment %s/%s: %s", namespace, name, evaluation.message)
        await self._event(deployment, "SuccessfulRescale", evaluation.message, now)

    async def _scale(self, deployment: Obj, replicas: int, annotations: Any = None) -> None:
        meta = deployment["metadata"]
        path = f"/apis/apps/v1/namespaces/{meta.get('namespace', 'default')}/deployments"
        path += f"/{meta['name']}"
        if annotations is not None:
            patch = {"metadata": {"annotations": annotations}}
            await self.kube.request("PATCH", path, patch, content_type=MERGE_PATCH)
        body = {"spec": {"replicas": replicas}}
        await self.kube.request("PATCH", f"{path}/scale", body, content_type=MERGE_PATCH)

    async def _rebalance(
        self,
        deployment: Obj,
        service: InferenceService,
        context: PlannerContext | None,
        now: float,
    ) -> None:
        """Start moving a cloud pod back to the IDC when it has room (``policy.rebalance``;
        how, on Kubernetes: ``runtime.kube.rebalance``)."""
        world = self.planner.world
        if not world.nodes:
            return
        tiers = (
            context.tiers
            if context is not None
            else tuple(tiers_for(service, world.replicas, world.nodes, world.policies, now, 0, 1))
        )
        victim = rebalance.move(service, world.replicas, world.nodes, tiers)
        if victim is None:
            return
        current = service.spec.replicas
        move = Move(victim.name, current, now)
        await self._scale(deployment, current + 1, {MOVE_ANNOTATION: move.to_text()})
        message = rebalance.message(victim)
        log.info("%s/%s: %s", service.namespace, service.name, message)
        await self._event(deployment, "Rebalance", message, now)

    async def _move(
        self, deployment: Obj, text: str, current: int, pods: list[Obj], now: float
    ) -> None:
        """The next step of a move under way (``policy.rebalance.next_step``)."""
        move = Move.from_text(text)
        step = Step.DONE if move is None else next_step(move, current, moving_pods(pods), now)
        if step is Step.WAIT:
            return
        meta = deployment["metadata"]
        where = f"{meta.get('namespace', 'default')}/{meta['name']}"
        if step is Step.SCALE_IN and move is not None:
            log.info("deployment %s: the IDC replica is Ready; %s goes", where, move.pod)
            await self._scale(deployment, move.size)
            return
        if step is Step.ABANDON and move is not None:
            why = (
                f"moving {move.pod} back to the IDC gave no Ready replacement; back to {move.size}"
            )
            log.warning("deployment %s: %s", where, why)
            await self._scale(deployment, move.size)
            await self._event(deployment, "RebalanceAbandoned", why, now, "Warning")
        clear = {"metadata": {"annotations": {MOVE_ANNOTATION: None}}}
        path = f"/apis/apps/v1/namespaces/{meta.get('namespace', 'default')}/deployments"
        await self.kube.request("PATCH", f"{path}/{meta['name']}", clear, content_type=MERGE_PATCH)

    async def _context(
        self,
        deployment: Obj,
        service: InferenceService,
        now: float,
        planned: PlannerState | None = None,
    ) -> PlannerContext | None:
        """The tier planner's context, or None (keep the size) when no gateway answered:
        then there is no load to plan on, and a rate of 0 would give replicas back."""
        key = (service.namespace, service.name)
        gateways = self.planner.gateways
        if not gateways.answered:
            why = (
                f"no gateway answered ({', '.join(gateways.urls) or 'none given: --gateway-url'}"
                "): keeping the size until the load is known"
            )
            if key not in self._blind:
                self._blind.add(key)
                log.warning("%s/%s: %s", *key, why)
                await self._event(deployment, "NoGatewayLoad", why, now, "Warning")
            return None
        self._blind.discard(key)
        self.planner.sample(service, now)
        return self.planner.context(service, now, planned)

    async def _keep(
        self, deployment: Obj, annotations: dict[str, str], evaluation: Evaluation, now: float
    ) -> None:
        """The state (and the tier planner's plan) in the Deployment's annotations."""
        meta = deployment["metadata"]
        namespace = meta.get("namespace", "default")
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{meta['name']}"
        text = json.dumps(evaluation.state, sort_keys=True, separators=(",", ":"))
        kept: dict[str, str] = {}
        if evaluation.state is not None and text != annotations.get(STATE_ANNOTATION):
            kept[STATE_ANNOTATION] = text
        if evaluation.plan is not None:
            view = json.dumps(_plan_view(evaluation.plan, now), separators=(",", ":"))
            if view != annotations.get(PLAN_ANNOTATION):
                kept[PLAN_ANNOTATION] = view
        if kept:
            patch = {"metadata": {"annotations": kept}}
            await self.kube.request("PATCH", path, patch, content_type=MERGE_PATCH)

    async def _event(
        self, deployment: Obj, reason: str, message: str, now: float, kind: str = "Normal"
    ) -> None:
        await record(self.kube, deployment, reason, message, now, kind, COMPONENT)

    async def run(self) -> None:
        try:
            while True:
                if self.gate is not None:
                    await self.gate.wait()
                try:
                    await self.step()
                except TierserveError as exc:
                    log.warning("autoscaler: %s", exc)
                await asyncio.sleep(self.config.period_s)
        finally:
            await self.fetch.close()
            self.planner.close()


async def run_autoscaler(
    kube: Api,
    config: AutoscalerConfig,
    elector: LeaderElector | None = None,
    gateways: tuple[str, ...] = (),
    scrape_timeout_s: float = 2.0,
    time_scale: float = 1.0,
) -> None:
    """Run the autoscaler until cancelled; with ``elector``, only while it leads.
    ``gateways``: the gateways' ``/metrics`` URLs (the tier planner's load)."""
    gate = elector.leading if elector is not None else None
    scaler = KubeAutoscaler(
        kube, config, gate=gate, scrape_timeout_s=scrape_timeout_s, gateways=gateways,
        time_scale=time_scale,
    )  # fmt: skip
    tasks = [asyncio.create_task(scaler.run())]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run()))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


__all__ = ["PLAN_ANNOTATION", "STATE_ANNOTATION", "KubeAutoscaler", "run_autoscaler"]
