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

from tierserve.model import InferenceService, Replica
from tierserve.policy.autoscaling import AutoscalerConfig, due, evaluate, mine
from tierserve.runtime.local.isolation import each_object
from tierserve.runtime.local.scraper import MetricsScraper
from tierserve.runtime.local.store import Store

log = logging.getLogger("tierserve.autoscaler")

STATE_PREFIX = "autoscaler/"
"""Store keys of the autoscaler state: ``autoscaler/<namespace>/<service>``."""


def _state_key(namespace: str, name: str) -> str:
    return f"{STATE_PREFIX}{namespace}/{name}"


class Autoscaler:
    def __init__(
        self, store: Store, scraper: MetricsScraper, settings: AutoscalerConfig | None = None
    ) -> None:
        self.store = store
        self.scraper = scraper
        self.settings = settings or AutoscalerConfig()
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
        evaluation = evaluate(
            service,
            theirs,
            self._metrics(theirs, now),
            self.store.get_state(state_key),
            now,
            self.settings,
        )
        if evaluation is None:  # it does not autoscale
            return
        self._last_s[key] = now
        # The state goes with the change it led to: a restart sees both or neither, and
        # scales in no sooner than the window allows.
        with self.store.transaction():
            self.store.put_state(state_key, evaluation.state)
            if evaluation.message is None:
                return
            spec = service.spec.model_copy(update={"replicas": evaluation.desired})
            self.store.put(service.model_copy(update={"spec": spec}))
            self.store.record(service, "Normal", "SuccessfulRescale", evaluation.message, now)
        log.info("%s/%s: %s", service.namespace, service.name, evaluation.message)

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
