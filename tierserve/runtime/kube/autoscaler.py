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

With leader election (a Lease, :class:`~tierserve.runtime.kube.lease.LeaderElector`) only
the holder acts, so two replicas never fight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pydantic

from tierserve.errors import TierserveError
from tierserve.model.service import InferenceService
from tierserve.policy.autoscaling import AutoscalerConfig, evaluate
from tierserve.runtime.kube.client import MERGE_PATCH, Api, Obj
from tierserve.runtime.kube.convert import replica_from_pod
from tierserve.runtime.kube.custom_metrics import HttpFetch, scrape_target
from tierserve.runtime.kube.lease import LeaderElector
from tierserve.runtime.kube.serving import AUTOSCALER_ANNOTATION, SERVICE_ANNOTATION, TIERSERVE
from tierserve.runtime.promtext import parse_metrics

log = logging.getLogger(__name__)

STATE_ANNOTATION = "autoscaling.tierserve.io/state"
"""The autoscaler's state for the service (JSON: the HPA's recommendations window)."""
COMPONENT = "tierserve-autoscaler"


def _selector(deployment: Obj) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeAutoscaler:
    """Evaluate and rescale every Deployment that asks for tierserve's autoscaler."""

    def __init__(
        self,
        kube: Api,
        config: AutoscalerConfig | None = None,
        clock: Callable[[], float] = time.time,
        gate: asyncio.Event | None = None,
        scrape_timeout_s: float = 2.0,
    ) -> None:
        self.kube = kube
        self.config = config or AutoscalerConfig(period_s=15.0)
        self.clock = clock
        self.gate = gate
        self.fetch = HttpFetch(scrape_timeout_s)
        """Each Ready pod's ``/metrics`` as the custom metrics API scrapes it (the same
        target: ``prometheus.io`` annotations, else the container port)."""
        self.rescaled = 0

    async def _scrape(self, url: str) -> dict[str, float]:
        text = await self.fetch(url)
        try:
            return parse_metrics(text) if text is not None else {}
        except ValueError:
            return {}  # no sample this period: the HPA treats the pod as missing

    async def step(self) -> int:
        """One period over every such Deployment; returns how many were evaluated."""
        listed = await self.kube.request("GET", "/apis/apps/v1/deployments")
        evaluated = 0
        for deployment in listed.get("items") or []:
            meta = deployment.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if annotations.get(AUTOSCALER_ANNOTATION) != TIERSERVE:
                continue
            where = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
            try:
                await self._one(deployment, annotations)
                evaluated += 1
            except (pydantic.ValidationError, ValueError) as exc:
                log.warning("deployment %s: %s %s", where, SERVICE_ANNOTATION, exc)
            except TierserveError as exc:
                log.warning("deployment %s: %s", where, exc)
        return evaluated

    async def _one(self, deployment: Obj, annotations: dict[str, str]) -> None:
        meta = deployment["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        service = InferenceService.model_validate(json.loads(annotations[SERVICE_ANNOTATION]))
        service = service.model_copy(
            update={"spec": service.spec.model_copy(update={"replicas": current})}
        )
        pods_path = f"/api/v1/namespaces/{namespace}/pods"
        pods = (
            await self.kube.request(
                "GET", pods_path, params={"labelSelector": _selector(deployment)}
            )
        ).get("items") or []
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
        now = self.clock()
        evaluation = evaluate(service, replicas, metrics, state, now, self.config)
        if evaluation is None:
            return
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        text = json.dumps(evaluation.state, sort_keys=True, separators=(",", ":"))
        if text != annotations.get(STATE_ANNOTATION):
            patch = {"metadata": {"annotations": {STATE_ANNOTATION: text}}}
            await self.kube.request("PATCH", path, patch, content_type=MERGE_PATCH)
        if evaluation.message is None or evaluation.desired == current:
            return
        await self.kube.request(
            "PATCH",
            f"{path}/scale",
            {"spec": {"replicas": evaluation.desired}},
            content_type=MERGE_PATCH,
        )
        self.rescaled += 1
        log.info("deployment %s/%s: %s", namespace, name, evaluation.message)
        await self._event(deployment, evaluation.message, now)

    async def _event(self, deployment: Obj, message: str, now: float) -> None:
        meta = deployment["metadata"]
        namespace = meta.get("namespace", "default")
        stamp = _stamp(now)
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid", ""),
            },
            "reason": "SuccessfulRescale",
            "message": message,
            "type": "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", event)
        except TierserveError as exc:
            log.warning("event for %s/%s: %s", namespace, meta["name"], exc)

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


async def run_autoscaler(
    kube: Api,
    config: AutoscalerConfig,
    elector: LeaderElector | None = None,
) -> None:
    """Run the autoscaler until cancelled; with ``elector``, only while it leads."""
    gate = elector.leading if elector is not None else None
    scaler = KubeAutoscaler(kube, config, gate=gate)
    tasks = [asyncio.create_task(scaler.run())]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run()))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


__all__ = ["STATE_ANNOTATION", "KubeAutoscaler", "run_autoscaler"]
