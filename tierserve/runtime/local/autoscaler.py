"""The autoscaler controller: the pure Kubernetes HPA algorithm on scraped replica metrics.

Every ``period_s`` (Kubernetes' ``--horizontal-pod-autoscaler-sync-period``; 15 s there,
5 s by default here) each service with a scale metric and ``maxReplicas`` gets a decision
from ``policy.hpa.decide``; a change is written to ``spec.replicas`` and recorded as a
``SuccessfulRescale`` event in Kubernetes' words (``New size: 3; reason: pods metric
DCGM_CUSTOM_PROCESS_SM_UTIL above target``). Replica phases map to pod phases the way the
HPA sees them: Pending/Provisioning are ``Pending`` (no runaway scale-out during a cold
start: on scale-up they count as 0, else they are left out), Starting/Ready are
``Running`` (a Starting one has no metric yet: *missing*), Terminating is deleting.
HPA state (recommendation history, scale events) is kept per service in the store, in
the same transaction as the rescale it led to, so a restarted control plane keeps the
stabilization window (the Kubernetes controller keeps it in memory and forgets it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tierserve.model import InferenceService, Phase, Replica
from tierserve.policy.hpa import (
    HPAControllerConfig,
    HPASpec,
    HPAState,
    MetricSpec,
    PodPhase,
    PodSample,
    decide,
    event_message,
)
from tierserve.runtime.local.isolation import each_object
from tierserve.runtime.local.scraper import MetricsScraper
from tierserve.runtime.local.store import Store

log = logging.getLogger("tierserve.autoscaler")

_POD_PHASE = {
    Phase.PENDING: PodPhase.PENDING,
    Phase.PROVISIONING: PodPhase.PENDING,
    Phase.STARTING: PodPhase.RUNNING,
    Phase.READY: PodPhase.RUNNING,
    Phase.TERMINATING: PodPhase.RUNNING,
    Phase.FAILED: PodPhase.FAILED,
}


@dataclass
class AutoscalerSettings:
    period_s: float = 5.0
    """How often each service is evaluated (Kubernetes: 15 s)."""
    tolerance: float = 0.1
    downscale_stabilization_s: float = 300.0
    """Kubernetes' --horizontal-pod-autoscaler-downscale-stabilization (5 min)."""
    metric_max_age_s: float = 30.0
    """A sample older than this counts as missing."""


STATE_PREFIX = "autoscaler/"
"""Store keys of the HPA state: ``autoscaler/<namespace>/<service>``."""


def _state_key(namespace: str, name: str) -> str:
    return f"{STATE_PREFIX}{namespace}/{name}"


def hpa_spec(service: InferenceService) -> HPASpec | None:
    """The service's HPA, or None when it does not autoscale (no metric or no max)."""
    metrics = service.scale_metrics()
    if not metrics or service.spec.max_replicas is None:
        return None
    return HPASpec(
        min_replicas=service.spec.min_replicas if service.spec.min_replicas is not None else 1,
        max_replicas=service.spec.max_replicas,
        metrics=tuple(MetricSpec(name=m.name, target_average_value=m.target) for m in metrics),
    )


class Autoscaler:
    def __init__(
        self, store: Store, scraper: MetricsScraper, settings: AutoscalerSettings | None = None
    ) -> None:
        self.store = store
        self.scraper = scraper
        self.settings = settings or AutoscalerSettings()
        self._last_s: dict[tuple[str, str], float] = {}
        """When each service was last evaluated (a restart evaluates at once)."""
        self._config = HPAControllerConfig(
            tolerance=self.settings.tolerance,
            downscale_stabilization_window_s=self.settings.downscale_stabilization_s,
        )

    def _samples(self, replicas: list[Replica], spec: HPASpec, now: float) -> list[PodSample]:
        out = []
        for r in replicas:
            metrics: dict[str, float] = {}
            if r.ready:
                for m in spec.metrics:
                    value = self.scraper.latest(
                        (r.namespace, r.name), m.name, now, self.settings.metric_max_age_s
                    )
                    if value is not None:
                        metrics[m.name] = value
            out.append(
                PodSample(
                    name=r.name,
                    phase=_POD_PHASE[r.phase],
                    ready=r.ready,
                    deleting=r.terminating,
                    start_time_s=r.status.started_s,
                    metrics=metrics,
                )
            )
        return out

    def _service_tick(self, service: InferenceService, replicas: list[Replica], now: float) -> None:
        key = (service.namespace, service.name)
        spec = hpa_spec(service)
        if spec is None:
            return
        last = self._last_s.get(key)
        if last is not None and now - last < self.settings.period_s:
            return
        self._last_s[key] = now
        mine = [
            r
            for r in replicas
            if r.namespace == service.namespace and r.spec.service == service.name
        ]
        state_key = _state_key(*key)
        state = HPAState.from_json(self.store.get_state(state_key))
        current = service.spec.replicas
        decision = decide(spec, current, self._samples(mine, spec, now), state, now, self._config)
        message = event_message(decision)
        # The recommendations and scale events go with the change they led to: a restart
        # sees both or neither, and scales in no sooner than the window allows.
        with self.store.transaction():
            self.store.put_state(state_key, decision.state.to_json())
            if message is None:
                return
            updated = service.model_copy(
                update={
                    "spec": service.spec.model_copy(update={"replicas": decision.desired_replicas})
                }
            )
            self.store.put(updated)
            self.store.record(service, "Normal", "SuccessfulRescale", message, now)
        log.info("%s/%s: %s", service.namespace, service.name, message)

    def tick(self, now: float) -> None:
        services = self.store.list(InferenceService, None)
        replicas = self.store.list(Replica, None)
        keys = set()
        for service in services:
            key = (service.namespace, service.name)
            keys.add(key)
            with each_object(self.store, service, "autoscaler", now, log):
                self._service_tick(service, replicas, now)
        for gone in set(self._last_s) - keys:
            del self._last_s[gone]
        live = {_state_key(*key) for key in keys}
        for state_key in self.store.state_items(STATE_PREFIX):
            if state_key not in live:  # the service is gone: so is its HPA
                self.store.put_state(state_key, None)
