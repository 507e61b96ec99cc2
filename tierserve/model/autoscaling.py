"""``spec.autoscaling``: which autoscaler sizes a service, and the tier planner's settings.

::

    spec:
      autoscaling:
        policy: slo                   # hpa (default: scaleMetric/scaleTarget) | slo
        slo: {ttftSeconds: 2, tpotSeconds: 0.1, attainment: 0.95}
        budget: {cloudCostPerHour: 12}
        headroom: 0.1                 # plan for 10 % more load than forecast
        rebalance: true               # move work back to the IDC (default: on for slo)

Without ``spec.autoscaling`` (or with ``policy: hpa``) the service scales with the
Kubernetes HPA on ``scaleMetric``/``metrics``, unchanged.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, model_validator

from tierserve.model.base import Strict

HPA: Final = "hpa"
SLO: Final = "slo"


class SloTarget(Strict):
    """The latency objective: a request meets it when its TTFT and TPOT are within."""

    ttft_seconds: float = Field(gt=0, le=3600)
    tpot_seconds: float | None = Field(default=None, gt=0, le=60)
    attainment: float = Field(default=0.95, gt=0, le=1)
    """Share of requests that must meet the objective (0.95: 95 %)."""


class Budget(Strict):
    cloud_cost_per_hour: float = Field(gt=0)
    """The cloud may cost at most this much per hour (the nodes' price units)."""


class Autoscaling(Strict):
    policy: Literal["hpa", "slo"] = HPA
    slo: SloTarget | None = None
    budget: Budget | None = None
    headroom: float = Field(default=0.0, ge=0, le=10)
    """Plan for ``(1 + headroom)`` times the forecast load."""
    rebalance: bool | None = None
    """Move replicas from the cloud back to the IDC when it frees up (make before
    break); default on for ``slo``, off for ``hpa`` (Kubernetes' behaviour)."""

    @model_validator(mode="after")
    def _slo_needs_objective(self) -> Autoscaling:
        if self.policy == SLO and self.slo is None:
            raise ValueError(
                "policy slo needs slo: {ttftSeconds: ..., tpotSeconds: ...} (the objective "
                "the planner sizes the service for)"
            )
        return self

    @property
    def rebalances(self) -> bool:
        return self.rebalance if self.rebalance is not None else self.policy == SLO
