"""One HPA derivation for every body, and the autoscaler's decision per service."""

from __future__ import annotations

from typing import Any

import pytest
from builders import idc, pod

from tierserve.model import InferenceService, Replica
from tierserve.policy.autoscaling import AUTOSCALERS, AutoscalerConfig, due, evaluate
from tierserve.policy.hpa.target import hpa_spec_for
from tierserve.runtime.kube.serving import hpa as kube_hpa

SM = "DCGM_CUSTOM_PROCESS_SM_UTIL"


def service(**spec: Any) -> InferenceService:
    svc: InferenceService = InferenceService.new(
        "deepseek", "default", spec={"gpus": 1, "command": "vllm serve m", **spec}
    )
    return svc


@pytest.mark.parametrize(
    ("spec", "bounds"),
    [
        ({}, None),  # no scale metric
        ({"scaleMetric": SM, "scaleTarget": 50}, None),  # no maxReplicas: does not autoscale
        ({"scaleMetric": SM, "scaleTarget": 50, "maxReplicas": 3}, (1, 3)),  # min: HPA's 1
        ({"scaleMetric": SM, "scaleTarget": 50, "maxReplicas": 3, "replicas": 2}, (1, 3)),
        ({"scaleMetric": SM, "scaleTarget": 50, "minReplicas": 2, "maxReplicas": 3}, (2, 3)),
        ({"scaleMetric": SM, "scaleTarget": 50, "minReplicas": 0, "maxReplicas": 3}, (1, 3)),
    ],
)
def test_hpa_bounds_are_the_same_locally_and_on_kubernetes(
    spec: dict[str, Any], bounds: tuple[int, int] | None
) -> None:
    svc = service(**spec)
    local = hpa_spec_for(svc)
    manifest = kube_hpa(svc)
    if bounds is None:
        assert local is None and manifest is None
        return
    assert local is not None and manifest is not None
    assert (local.min_replicas, local.max_replicas) == bounds
    assert (manifest["spec"]["minReplicas"], manifest["spec"]["maxReplicas"]) == bounds


def ready(name: str) -> Replica:
    r: Replica = pod(name).on("idc001").build().with_status(started_s=0.0, ready_s=1.0)
    return r


def test_evaluate_scales_out_on_the_metric_with_kubernetes_words() -> None:
    svc = service(scaleMetric=SM, scaleTarget=50, maxReplicas=3)
    out = evaluate(svc, [ready("a")], {"a": {SM: 100.0}}, None, 1000.0, AutoscalerConfig())
    assert out is not None
    assert out.desired == 2
    assert out.message == f"New size: 2; reason: pods metric {SM} above target"
    # the state it returns is plain JSON the next evaluation reads back: after the
    # rescale, at the target, the stabilization window keeps 2 and nothing is said
    grown = service(scaleMetric=SM, scaleTarget=50, maxReplicas=3, replicas=2)
    pods = [ready("a"), ready("b")]
    metrics = {"a": {SM: 10.0}, "b": {SM: 10.0}}
    again = evaluate(grown, pods, metrics, out.state, 1005.0, AutoscalerConfig())
    assert again is not None and again.message is None and again.desired == 2


def test_evaluate_missing_metric_and_not_autoscaled() -> None:
    svc = service(scaleMetric=SM, scaleTarget=50, maxReplicas=3)
    out = evaluate(svc, [ready("a")], {}, None, 1000.0, AutoscalerConfig())
    assert out is not None and out.message is None
    assert evaluate(service(), [ready("a")], {}, None, 1000.0, AutoscalerConfig()) is None
    assert "hpa" in AUTOSCALERS


def test_due_every_period() -> None:
    config = AutoscalerConfig(period_s=15)
    assert due(None, 0.0, config)
    assert not due(100.0, 114.9, config)
    assert due(100.0, 115.0, config)


def test_idc_builder_is_used() -> None:  # keeps the builders import honest
    assert idc().build().tier == "idc"
